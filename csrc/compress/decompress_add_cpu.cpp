// out[indices[w, j]] += scale · values[w, j], worker by worker in rank order, so every rank
// that decompresses the same messages gets the same bits. Indices within a row are distinct
// (as TopK produces them), so the entries of one row are added in parallel.
#include "common/checks.h"
#include "compress/compress.h"
#include "compress/radix_select_cpu.h"

namespace fbk {

void decompress_add_cpu(const TensorView& out, const TensorView& indices, const TensorView& values, double scale) {
  const int64_t workers = indices.sizes[0], k = indices.sizes[1];
  dispatch_message(out.dtype, indices.dtype, [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    T* dst = flat<T>(out);
    const acc_t<T> s = static_cast<acc_t<T>>(scale);
    const int64_t n = out.numel();
    for (int64_t w = 0; w < workers; ++w)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t i = static_cast<int64_t>(flat<const I>(indices)[w * indices.strides[0] + j * indices.strides[1]]);
        FBK_CHECK(i >= 0 && i < n, "indices: expected values in [0, ", n, "), got ", i, " at [", w, ", ", j, "]");
      }
    for (int64_t w = 0; w < workers; ++w) {
      const I* idx = flat<const I>(indices) + w * indices.strides[0];
      const T* val = flat<const T>(values) + w * values.strides[0];
#pragma omp parallel for schedule(static) if (k > 32768)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t i = static_cast<int64_t>(idx[j * indices.strides[1]]);
        dst[i] = scaled_add(dst[i], val[j * values.strides[1]], s);
      }
    }
  });
}

}  // namespace fbk
