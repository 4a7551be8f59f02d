#include <algorithm>
#include <cmath>

#include "common/checks.h"
#include "common/dtype.h"
#include "common/math.h"
#include "logprob/sequence_reduce.h"

namespace fbk {
namespace {

template <class I>
void validate_cu_seqlens_typed(const TensorView& cu, int64_t n) {
  const I* c = cu.ptr<const I>();
  const int64_t s = cu.strides[0];
  const int64_t batch = cu.sizes[0] - 1;
  FBK_CHECK(c[0] == 0, "'cu_seqlens' must start at 0; got cu_seqlens[0]=", c[0]);
  for (int64_t b = 0; b < batch; ++b)
    FBK_CHECK(c[b * s] <= c[(b + 1) * s], "'cu_seqlens' must be non-decreasing; got cu_seqlens[", b, "]=", c[b * s],
              " > cu_seqlens[", b + 1, "]=", c[(b + 1) * s]);
  FBK_CHECK(c[batch * s] == n, "'cu_seqlens' must end at N=", n, " (the length of 'values'); got cu_seqlens[", batch,
            "]=", c[batch * s]);
}

constexpr int64_t kParallelMinElements = 1 << 15;
constexpr int kLanes = 8;        // independent accumulators: vectorisable, shorter error chains
constexpr int64_t kBlock = 1024;  // partial sums per block, then a sum of blocks: error grows with
                                  // len/kBlock + kBlock/lanes, not len/lanes (and counts fit int32)

// Sum of a whole row (no mask).
template <class T, class A, int64_t kStride>
FBK_CPU_CLONES A dense_sum(const T* v, int64_t stride, int64_t len) {
  const int64_t vs = kStride != 0 ? kStride : stride;
  A total = 0;
  for (int64_t start = 0; start < len; start += kBlock) {
    const int64_t end = std::min(len, start + kBlock);
    A acc[kLanes] = {};
    int64_t i = start;
    for (; i + kLanes <= end; i += kLanes)
      for (int l = 0; l < kLanes; ++l) acc[l] += to_acc<A>(v[(i + l) * vs]);
    for (; i < end; ++i) acc[0] += to_acc<A>(v[i * vs]);
    A block = 0;
    for (int l = 0; l < kLanes; ++l) block += acc[l];
    total += block;
  }
  return total;
}

// Sum and count of the valid elements of a masked row. Masked-out elements are dropped by a
// bitwise select, so NaN or inf padding never leaks into a row.
template <class T, class M, class A, int64_t kStride>
FBK_CPU_CLONES A masked_sum(const T* v, int64_t stride, const M* m, int64_t mask_stride, int64_t len, int64_t* count) {
  const int64_t vs = kStride != 0 ? kStride : stride;
  const int64_t ms = kStride != 0 ? kStride : mask_stride;
  A total = 0;
  int64_t n = 0;
  for (int64_t start = 0; start < len; start += kBlock) {
    const int64_t end = std::min(len, start + kBlock);
    A acc = 0;
    int32_t cnt = 0;
#pragma omp simd reduction(+ : acc, cnt)
    for (int64_t i = start; i < end; ++i) {
      const bool on = m[i * ms] != M(0);
      acc += select_or_zero(on, to_acc<A>(v[i * vs]));
      cnt += int32_t(on);
    }
    total += acc;
    n += cnt;
  }
  *count = n;
  return total;
}

template <class M, int64_t kStride>
FBK_CPU_CLONES int64_t masked_count(const M* m, int64_t stride, int64_t len) {
  const int64_t ms = kStride != 0 ? kStride : stride;
  int64_t n = 0;
  for (int64_t start = 0; start < len; start += kBlock) {
    const int64_t end = std::min(len, start + kBlock);
    int32_t cnt = 0;
#pragma omp simd reduction(+ : cnt)
    for (int64_t i = start; i < end; ++i) cnt += int32_t(m[i * ms] != M(0));
    n += cnt;
  }
  return n;
}

// Row sum and valid count; contiguous rows take loops specialised for unit stride.
template <class T, class M, class A>
A row_sum(const RowSpan<T, M>& row, int64_t* count) {
  const bool contiguous = row.stride == 1 && (row.mask == nullptr || row.mask_stride == 1);
  if (row.mask == nullptr) {
    *count = row.len;
    return contiguous ? dense_sum<T, A, 1>(row.values, 1, row.len) : dense_sum<T, A, 0>(row.values, row.stride, row.len);
  }
  return contiguous ? masked_sum<T, M, A, 1>(row.values, 1, row.mask, 1, row.len, count)
                    : masked_sum<T, M, A, 0>(row.values, row.stride, row.mask, row.mask_stride, row.len, count);
}

// Writes `on` at valid positions of a row and `off` elsewhere.
template <class T, class M, int64_t kStride>
FBK_CPU_CLONES void fill_row(T* v, int64_t stride, const M* m, int64_t mask_stride, int64_t len, T on, T off) {
  const int64_t vs = kStride != 0 ? kStride : stride;
  const int64_t ms = kStride != 0 ? kStride : mask_stride;
  if (m == nullptr) {
    for (int64_t i = 0; i < len; ++i) v[i * vs] = on;
  } else {
    for (int64_t i = 0; i < len; ++i) v[i * vs] = m[i * ms] != M(0) ? on : off;
  }
}

// Calls body(b, RowSpan) for every row, in parallel when the input is large enough.
template <class T, class M, class I, class Body>
void for_each_row(const TensorView& values, const std::optional<TensorView>& mask,
                  const std::optional<TensorView>& cu_seqlens, int64_t batch, Body body) {
  T* v = values.ptr<T>();
  const bool parallel = values.numel() >= kParallelMinElements;
  if (mask) {
    const M* m = mask->ptr<const M>();
    const int64_t len = values.sizes[1];
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t b = 0; b < batch; ++b)
      body(b, RowSpan<T, M>{v + b * values.strides[0], values.strides[1], m + b * mask->strides[0],
                            mask->strides[1], len});
  } else {
    const I* c = cu_seqlens->ptr<const I>();
    const int64_t cs = cu_seqlens->strides[0];
#pragma omp parallel for schedule(guided) if (parallel)
    for (int64_t b = 0; b < batch; ++b)
      body(b, RowSpan<T, M>{v + int64_t(c[b * cs]) * values.strides[0], values.strides[0], nullptr, 0,
                            int64_t(c[(b + 1) * cs]) - int64_t(c[b * cs])});
  }
}

}  // namespace

void validate_cu_seqlens(const TensorView& cu, int64_t n) {
  check_ndim(cu, "cu_seqlens", 1);
  FBK_CHECK(cu.sizes[0] >= 1, "cu_seqlens: expected at least one entry");
  dispatch_index(cu.dtype, "cu_seqlens", [&](auto it) { validate_cu_seqlens_typed<typename decltype(it)::type>(cu, n); });
}

void sequence_reduce_cpu(const TensorView& values, const std::optional<TensorView>& mask,
                         const std::optional<TensorView>& cu_seqlens, ReduceMode mode, const TensorView& out) {
  const int64_t batch = check_sequence_reduce_args(values, mask, cu_seqlens, out);
  if (cu_seqlens) validate_cu_seqlens(*cu_seqlens, values.sizes[0]);
  dispatch_rows(values, mask, cu_seqlens, [&](auto vt, auto mt, auto it) {
    using T = typename decltype(vt)::type;
    using M = typename decltype(mt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    FBK_CHECK(out.dtype == (std::is_same_v<A, double> ? DType::Float64 : DType::Float32),
              "out: expected ", std::is_same_v<A, double> ? "float64" : "float32");
    A* o = out.ptr<A>();
    const int64_t os = out.strides[0];
    for_each_row<const T, M, I>(values, mask, cu_seqlens, batch, [&](int64_t b, const RowSpan<const T, M>& row) {
      int64_t count = 0;
      const A sum = row_sum<const T, M, A>(row, &count);
      o[b * os] = reduce_finish<A>(mode, sum, count);
    });
  });
}

void sequence_reduce_backward_cpu(const TensorView& grad_out, const std::optional<TensorView>& mask,
                                  const std::optional<TensorView>& cu_seqlens, ReduceMode mode,
                                  const TensorView& grad_values) {
  const int64_t batch = check_sequence_reduce_args(grad_values, mask, cu_seqlens, grad_out);
  if (cu_seqlens) validate_cu_seqlens(*cu_seqlens, grad_values.sizes[0]);
  dispatch_rows(grad_values, mask, cu_seqlens, [&](auto vt, auto mt, auto it) {
    using T = typename decltype(vt)::type;
    using M = typename decltype(mt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    FBK_CHECK(grad_out.dtype == (std::is_same_v<A, double> ? DType::Float64 : DType::Float32),
              "grad_out: expected ", std::is_same_v<A, double> ? "float64" : "float32");
    const A* g = grad_out.ptr<const A>();
    const int64_t gs = grad_out.strides[0];
    for_each_row<T, M, I>(grad_values, mask, cu_seqlens, batch, [&](int64_t b, const RowSpan<T, M>& row) {
      const bool contiguous = row.stride == 1 && (row.mask == nullptr || row.mask_stride == 1);
      int64_t count = row.len;
      if (mode == ReduceMode::Mean && row.mask != nullptr)
        count = contiguous ? masked_count<M, 1>(row.mask, 1, row.len) : masked_count<M, 0>(row.mask, row.mask_stride, row.len);
      const T on = from_acc<T>(reduce_finish<A>(mode, g[b * gs], count)), off = from_acc<T>(A(0));
      // Filled through the storage bits: selects of 16-bit float structs do not vectorise.
      using R = bits_t<T>;
      R* dst = reinterpret_cast<R*>(row.values);
      if (contiguous)
        fill_row<R, M, 1>(dst, 1, row.mask, 1, row.len, as_bits(on), as_bits(off));
      else
        fill_row<R, M, 0>(dst, row.stride, row.mask, row.mask_stride, row.len, as_bits(on), as_bits(off));
    });
  });
}

}  // namespace fbk
