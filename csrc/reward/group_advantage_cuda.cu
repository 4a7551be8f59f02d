#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "reward/reward.h"

namespace fbk {
namespace {

// Warp per group slot g (grid-stride): two-pass centred moments in double, lanes striding over the
// group and warp_sum combining them in a fixed order, then each member's advantage through order[].
template <class T, class A>
__global__ void group_advantage_kernel(Matrix<const T> x, Matrix<const int64_t> perm, Matrix<const int64_t> first,
                                       int64_t n, GroupMode mode, bool unbiased, double eps, Singleton singleton,
                                       Matrix<A> out) {
  constexpr unsigned all = 0xffffffffu;
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t g = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; g < n; g += warps) {
    const int64_t begin = first(g, 0), end = first(g + 1, 0);
    if (begin >= n) continue;  // past the last group
    if (begin < 0 || end <= begin || end > n) continue;  // never produced by group_runs; never read out of bounds
    double sum = 0;
    for (int64_t i = begin + lane; i < end; i += 32) sum += to_acc<double>(x(perm(i, 0), 0));
    Moments stats;
    stats.n = double(end - begin);
    stats.mean = __shfl_sync(all, warp_sum(sum), 0) / stats.n;
    double m2 = 0;
    for (int64_t i = begin + lane; i < end; i += 32) {
      const double d = to_acc<double>(x(perm(i, 0), 0)) - stats.mean;
      m2 += d * d;
    }
    stats.m2 = __shfl_sync(all, warp_sum(m2), 0);
    for (int64_t i = begin + lane; i < end; i += 32) {
      const int64_t j = perm(i, 0);
      out(j, 0) = group_advantage_of(to_acc<A>(x(j, 0)), stats, mode, unbiased, eps, singleton);
    }
  }
}

}  // namespace

void group_advantage_cuda(const TensorView& scores, const TensorView& order, const TensorView& starts,
                          GroupMode mode, bool unbiased, double eps, Singleton singleton, const TensorView& out,
                          uintptr_t stream) {
  check_ndim(scores, "scores", 1);
  const int64_t n = scores.sizes[0];
  check_size(order, "order", 0, n);
  check_size(starts, "starts", 0, n + 2);
  if (n == 0) return;
  constexpr int threads = 256, warps_per_block = threads / 32;
  const int64_t blocks = (n + warps_per_block - 1) / warps_per_block;
  dispatch_float(scores.dtype, "scores", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    group_advantage_kernel<T, A><<<unsigned(blocks < 65535 ? blocks : 65535), threads, 0, as_stream(stream)>>>(
        matrix<const T>(scores), matrix<const int64_t>(order), matrix<const int64_t>(starts), n, mode, unbiased, eps,
        singleton, matrix<A>(out));
    check_launch("group_advantage");
  });
}

}  // namespace fbk
