#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "reward/reward.h"
#include "reward/reward_cuda.cuh"

namespace fbk {
namespace {

// Block per row: two passes (sum and count, then centred M2) in double.
template <class T, class M>
__global__ void row_moments_kernel(Matrix<const T> x, Matrix<const M> m, int64_t length, Matrix<double> out) {
  const int64_t b = blockIdx.x;
  __shared__ double mean_shared;
  double sum = 0, count = 0;
  for (int64_t t = threadIdx.x; t < length; t += blockDim.x) {
    if (!valid_at(m, b, t)) continue;
    sum += to_acc<double>(x(b, t));
    count += 1;
  }
  sum = block_sum(sum);
  count = block_sum(count);
  if (threadIdx.x == 0) mean_shared = count > 0 ? sum / count : 0.0;
  __syncthreads();
  const double mean = mean_shared;
  double m2 = 0;
  for (int64_t t = threadIdx.x; t < length; t += blockDim.x) {
    if (!valid_at(m, b, t)) continue;
    const double d = to_acc<double>(x(b, t)) - mean;
    m2 += d * d;
  }
  m2 = block_sum(m2);
  if (threadIdx.x == 0) store_moments(out, b, count > 0 ? Moments{count, mean, m2} : Moments{});
}

// One block: each thread merges a contiguous run of rows in order, then the block merges the runs
// in thread order.
__global__ void merge_moments_kernel(Matrix<const double> in, int64_t rows, Matrix<double> merged) {
  const int64_t chunk = (rows + blockDim.x - 1) / blockDim.x;
  const int64_t begin = threadIdx.x * chunk < rows ? threadIdx.x * chunk : rows;
  const int64_t end = begin + chunk < rows ? begin + chunk : rows;
  Moments total;
  for (int64_t r = begin; r < end; ++r) total.merge(load_moments(in, r));
  total = block_merge(total);
  if (threadIdx.x == 0) store_moments(merged, 0, total);
}

// Elementwise over grid (rows, column blocks). Stats row `row` (b per row, 0 for the batch) is
// written to stats_out as sums by one thread: the first of row b's blocks, or of block row 0.
template <class T, class M, class A>
__global__ void whiten_apply_kernel(Matrix<const T> x, Matrix<const M> m, Matrix<const double> s, bool stats_are_sums,
                                    bool per_row, bool shift_mean, bool unbiased, double eps, Matrix<A> o,
                                    Matrix<double> s_out, int64_t batch, int64_t length) {
  const int64_t b = blockIdx.x;
  const int64_t row = per_row ? b : 0;
  const Moments mo = stats_are_sums ? Moments::from_sums(s(row, 0), s(row, 1), s(row, 2)) : load_moments(s, row);
  if (blockIdx.y == 0 && threadIdx.x == 0 && (per_row || b == 0)) {
    s_out(row, 0) = mo.n;
    s_out(row, 1) = mo.sum();
    s_out(row, 2) = mo.sum_sq();
  }
  if (b >= batch) return;
  const Whitening w = Whitening::of(mo, unbiased, eps, shift_mean);
  const int64_t stride = int64_t(gridDim.y) * blockDim.x;
  for (int64_t t = int64_t(blockIdx.y) * blockDim.x + threadIdx.x; t < length; t += stride)
    o(b, t) = valid_at(m, b, t) ? w.apply(to_acc<A>(x(b, t))) : A(0);
}

}  // namespace

void row_moments_cuda(const TensorView& x, const Opt& mask, const TensorView& moments, uintptr_t stream) {
  check_ndim(x, "x", 2);
  const int64_t batch = x.sizes[0], length = x.sizes[1];
  if (batch == 0) return;
  check_grid_rows(batch, "x");
  dispatch_float(x.dtype, "x", [&](auto tt) {
    using T = typename decltype(tt)::type;
    dispatch_optional_mask(mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      row_moments_kernel<T, M><<<unsigned(batch), threads_for(length), 0, as_stream(stream)>>>(
          matrix<const T>(x), matrix<const M>(opt_ptr(mask)), length, matrix<double>(moments));
      check_launch("row_moments");
    });
  });
}

void merge_moments_cuda(const TensorView& moments, const TensorView& merged, uintptr_t stream) {
  merge_moments_kernel<<<1, 256, 0, as_stream(stream)>>>(matrix<const double>(moments), moments.sizes[0],
                                                         matrix<double>(merged));
  check_launch("merge_moments");
}

void whiten_apply_cuda(const TensorView& x, const Opt& mask, const TensorView& stats, bool stats_are_sums,
                       bool shift_mean, bool unbiased, double eps, const TensorView& out,
                       const TensorView& stats_out, uintptr_t stream) {
  check_ndim(x, "x", 2);
  const int64_t batch = x.sizes[0], length = x.sizes[1];
  const bool per_row = stats.sizes[0] != 1 || batch == 1;
  if (batch == 0 && per_row) return;
  check_grid_rows(batch, "x");
  const int threads = threads_for(length);
  // At least one block row, so the batch stats are written even for an empty batch.
  const dim3 grid(unsigned(batch > 0 ? batch : 1), column_blocks(length, threads));
  dispatch_float(x.dtype, "x", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      whiten_apply_kernel<T, M, A><<<grid, threads, 0, as_stream(stream)>>>(
          matrix<const T>(x), matrix<const M>(opt_ptr(mask)), matrix<const double>(stats), stats_are_sums, per_row,
          shift_mean, unbiased, eps, matrix<A>(out), matrix<double>(stats_out), batch, length);
      check_launch("whiten_apply");
    });
  });
}

}  // namespace fbk
