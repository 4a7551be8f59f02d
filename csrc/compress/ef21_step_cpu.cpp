// Fused EF21 step on the CPU: c = TopK(grad − g_i) without materialising the difference,
// written to the message, and g_i += c at the selected entries.
#include "compress/compress.h"
#include "compress/radix_select_cpu.h"

namespace fbk {

void ef21_step_cpu(const TensorView& grad, const TensorView& g_i, int64_t k, bool allow_nan,
                   const TensorView& values, const TensorView& indices, const TensorView& status) {
  const int64_t n = grad.numel();
  dispatch_message(grad.dtype, indices.dtype, [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    const T* gr = flat<const T>(grad);
    T* state = flat<T>(g_i);
    T* out_values = flat<T>(values);
    I* out_indices = flat<I>(indices);
    flat<int64_t>(status)[0] = radix_select_cpu<key_t<acc_t<T>>>(
        n, k, allow_nan, [gr, state](int64_t i) { return magnitude_key(ef21_difference(gr[i], state[i])); },
        NoSweep{},
        [&](int64_t slot, int64_t i) {
          const T c = from_acc<T>(ef21_difference(gr[i], state[i]));
          out_values[slot] = c;
          out_indices[slot] = static_cast<I>(i);
          state[i] = from_acc<T>(to_acc<acc_t<T>>(state[i]) + to_acc<acc_t<T>>(c));
        });
  });
}

}  // namespace fbk
