// Exact top-k of a contiguous 1-D tensor by magnitude or value, on the CPU.
#include "compress/compress.h"
#include "compress/radix_select_cpu.h"

namespace fbk {

void topk_cpu(const TensorView& x, int64_t k, TopKBy by, bool allow_nan, const TensorView& values,
              const TensorView& indices, const TensorView& status) {
  const int64_t n = x.numel();
  dispatch_message(x.dtype, indices.dtype, [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    const T* in = flat<const T>(x);
    T* out_values = flat<T>(values);
    I* out_indices = flat<I>(indices);
    const auto take = [&](int64_t slot, int64_t i) {
      out_values[slot] = in[i];
      out_indices[slot] = static_cast<I>(i);
    };
    flat<int64_t>(status)[0] =
        by == TopKBy::Abs
            ? radix_select_cpu<key_t<T>>(n, k, allow_nan, [in](int64_t i) { return magnitude_key(in[i]); },
                                         NoSweep{}, take)
            : radix_select_cpu<key_t<T>>(n, k, allow_nan, [in](int64_t i) { return order_key(in[i], TopKBy::Value); },
                                         NoSweep{}, take);
  });
}

}  // namespace fbk
