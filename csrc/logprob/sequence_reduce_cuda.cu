#include <cmath>

#include "common/cuda_utils.cuh"
#include "common/dtype.h"
#include "logprob/sequence_reduce.h"

namespace fbk {
namespace {

// Builds row b's span. With cu_seqlens, a malformed segment yields valid = false and an
// empty span, so nothing outside [0, N) is ever read or written.
template <class T, class M, class I>
__device__ RowSpan<T, M> row_span(T* values, int64_t vs0, int64_t vs1, const M* mask, int64_t ms0, int64_t ms1,
                                  int64_t len, const I* cu, int64_t cs, int64_t batch, int64_t b, bool* valid) {
  if (cu == nullptr) {
    *valid = true;
    return RowSpan<T, M>{values + b * vs0, vs1, mask + b * ms0, ms1, len};
  }
  const bool ok = cu[0] == 0 && cu[batch * cs] == len && cu[b * cs] <= cu[(b + 1) * cs];
  *valid = ok;
  if (!ok) return RowSpan<T, M>{values, vs0, nullptr, 0, 0};
  const int64_t start = cu[b * cs];
  return RowSpan<T, M>{values + start * vs0, vs0, nullptr, 0, int64_t(cu[(b + 1) * cs]) - start};
}

// Kernel arguments are the same for both passes; `len` is T (mask) or N (cu_seqlens).
template <class T, class M, class I>
struct RowArgs {
  T* values;
  int64_t vs0, vs1;
  const M* mask;
  int64_t ms0, ms1;
  int64_t len;
  const I* cu;
  int64_t cs;
  int64_t batch;
  __device__ RowSpan<T, M> row(int64_t b, bool* valid) const {
    return row_span(values, vs0, vs1, mask, ms0, ms1, len, cu, cs, batch, b, valid);
  }
};

template <class T, class M, class I, class A>
__global__ void sequence_reduce_kernel(RowArgs<const T, M, I> args, ReduceMode mode, A* out, int64_t os) {
  const int64_t b = blockIdx.x;
  bool valid;
  const RowSpan<const T, M> row = args.row(b, &valid);
  A acc = 0;
  long long count = 0;
  for (int64_t i = threadIdx.x; i < row.len; i += blockDim.x) {
    const bool on = row.on(i);
    acc += on ? to_acc<A>(row.values[i * row.stride]) : A(0);
    count += on;
  }
  acc = block_sum(acc);
  count = block_sum(count);
  if (threadIdx.x == 0) out[b * os] = valid ? reduce_finish<A>(mode, acc, count) : A(NAN);
}

template <class T>
__device__ void fill_nan(T* values, int64_t stride, int64_t lo, int64_t hi) {
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) values[i * stride] = from_float<T>(NAN);
}

// With a malformed cu_seqlens every position still gets written: the clamped path
// cu[0] -> cu[1] -> ... -> cu[B] covers every position between its ends, so each invalid step
// and both end gaps are filled with NaN (the forward already returned NaN for those rows).
template <class T, class I>
__device__ void poison_malformed(T* values, int64_t stride, const I* cu, int64_t cs, int64_t batch, int64_t n,
                                 int64_t b) {
  auto clamp = [n](int64_t x) { return x < 0 ? int64_t(0) : (x > n ? n : x); };
  const int64_t s = clamp(cu[b * cs]);
  const int64_t e = clamp(cu[(b + 1) * cs]);
  fill_nan(values, stride, s < e ? s : e, s < e ? e : s);
  if (b == 0) fill_nan(values, stride, int64_t(0), clamp(cu[0]));
  if (b + 1 == batch) fill_nan(values, stride, clamp(cu[batch * cs]), n);
}

template <class T, class M, class I, class A>
__global__ void sequence_reduce_backward_kernel(RowArgs<T, M, I> args, ReduceMode mode, const A* grad, int64_t gs) {
  const int64_t b = blockIdx.x;
  bool valid;
  const RowSpan<T, M> row = args.row(b, &valid);
  if (!valid) {
    poison_malformed(args.values, args.vs0, args.cu, args.cs, args.batch, args.len, b);
    return;
  }
  long long count = 0;
  if (mode == ReduceMode::Mean) {
    for (int64_t i = threadIdx.x; i < row.len; i += blockDim.x) count += row.on(i);
    count = block_sum(count);
  }
  __shared__ A scale;
  if (threadIdx.x == 0) scale = reduce_finish<A>(mode, grad[b * gs], count);
  __syncthreads();
  const T on = from_acc<T>(scale), off = from_acc<T>(A(0));
  for (int64_t i = threadIdx.x; i < row.len; i += blockDim.x) row.values[i * row.stride] = row.on(i) ? on : off;
}

template <class T, class M, class I>
RowArgs<T, M, I> make_args(const TensorView& values, const std::optional<TensorView>& mask,
                           const std::optional<TensorView>& cu_seqlens, int64_t batch) {
  RowArgs<T, M, I> a{};
  a.values = values.ptr<T>();
  a.vs0 = values.strides[0];
  a.batch = batch;
  if (mask) {
    a.vs1 = values.strides[1];
    a.mask = mask->ptr<const M>();
    a.ms0 = mask->strides[0];
    a.ms1 = mask->strides[1];
    a.len = values.sizes[1];
  } else {
    a.len = values.sizes[0];
    a.cu = cu_seqlens->ptr<const I>();
    a.cs = cu_seqlens->strides[0];
  }
  return a;
}

int threads_per_row(const TensorView& values, const std::optional<TensorView>& mask, int64_t batch) {
  const int64_t per_row = mask ? values.sizes[1] : (batch > 0 ? values.sizes[0] / batch : 0);
  return threads_for(per_row);
}

}  // namespace

void sequence_reduce_cuda(const TensorView& values, const std::optional<TensorView>& mask,
                          const std::optional<TensorView>& cu_seqlens, ReduceMode mode, const TensorView& out,
                          uintptr_t stream) {
  const int64_t batch = check_sequence_reduce_args(values, mask, cu_seqlens, out);
  if (batch == 0) return;
  FBK_CHECK(batch <= 0x7FFFFFFF, "values: at most 2^31-1 rows are supported, got ", batch);
  dispatch_rows(values, mask, cu_seqlens, [&](auto vt, auto mt, auto it) {
    using T = typename decltype(vt)::type;
    using M = typename decltype(mt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    const auto args = make_args<const T, M, I>(values, mask, cu_seqlens, batch);
    sequence_reduce_kernel<T, M, I, A><<<unsigned(batch), threads_per_row(values, mask, batch), 0, as_stream(stream)>>>(
        args, mode, out.ptr<A>(), out.strides[0]);
    check_launch("sequence_reduce");
  });
}

void sequence_reduce_backward_cuda(const TensorView& grad_out, const std::optional<TensorView>& mask,
                                   const std::optional<TensorView>& cu_seqlens, ReduceMode mode,
                                   const TensorView& grad_values, uintptr_t stream) {
  const int64_t batch = check_sequence_reduce_args(grad_values, mask, cu_seqlens, grad_out);
  if (batch == 0) return;
  FBK_CHECK(batch <= 0x7FFFFFFF, "values: at most 2^31-1 rows are supported, got ", batch);
  dispatch_rows(grad_values, mask, cu_seqlens, [&](auto vt, auto mt, auto it) {
    using T = typename decltype(vt)::type;
    using M = typename decltype(mt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    const auto args = make_args<T, M, I>(grad_values, mask, cu_seqlens, batch);
    sequence_reduce_backward_kernel<T, M, I, A>
        <<<unsigned(batch), threads_per_row(grad_values, mask, batch), 0, as_stream(stream)>>>(
            args, mode, grad_out.ptr<const A>(), grad_out.strides[0]);
    check_launch("sequence_reduce_backward");
  });
}

}  // namespace fbk
