// Fused EF14 step on the CPU: t = e + lr·grad, v = TopK(t) into the message, e = t − v
// (t everywhere, 0 at the selected entries), without materialising t.
#include "compress/compress.h"
#include "compress/radix_select_cpu.h"

namespace fbk {

void ef14_step_cpu(const TensorView& grad, const TensorView& error, int64_t k, double lr, bool allow_nan,
                   const TensorView& values, const TensorView& indices, const TensorView& status) {
  const int64_t n = grad.numel();
  dispatch_message(grad.dtype, indices.dtype, [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using A = acc_t<T>;
    using I = typename decltype(it)::type;
    const T* gr = flat<const T>(grad);
    T* state = flat<T>(error);
    T* out_values = flat<T>(values);
    I* out_indices = flat<I>(indices);
    const A step = static_cast<A>(lr);
    // The final pass overwrites e with t, so take() reads t back from e.
    flat<int64_t>(status)[0] = radix_select_cpu<key_t<T>>(
        n, k, allow_nan,
        [gr, state, step](int64_t i) { return magnitude_key(from_acc<T>(ef14_accumulate(gr[i], state[i], step))); },
        [gr, state, step](int64_t i) { state[i] = from_acc<T>(ef14_accumulate(gr[i], state[i], step)); },
        [&](int64_t slot, int64_t i) {
          out_values[slot] = state[i];
          out_indices[slot] = static_cast<I>(i);
          state[i] = from_acc<T>(A(0));
        });
  });
}

}  // namespace fbk
