#include <cmath>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "reward/reward.h"
#include "reward/reward_cuda.cuh"

namespace fbk {
namespace {

// Block per source: two passes (sum, then centred M2) over the non-NaN entries, in double.
template <class T, class A>
__global__ void reward_source_stats_kernel(Matrix<const T> r, int64_t entries, Matrix<A> s) {
  const int64_t k = blockIdx.x;
  __shared__ double mean_shared;
  double sum = 0;
  int64_t n = 0;
  for (int64_t i = threadIdx.x; i < entries; i += blockDim.x) {
    const double x = to_acc<double>(r(k, i));
    if (!std::isnan(x)) sum += x, ++n;
  }
  sum = block_sum(sum);
  n = block_sum(n);
  if (threadIdx.x == 0) mean_shared = n > 0 ? sum / double(n) : 0.0;
  __syncthreads();
  const double mean = mean_shared;
  double m2 = 0;
  for (int64_t i = threadIdx.x; i < entries; i += blockDim.x) {
    const double x = to_acc<double>(r(k, i));
    if (!std::isnan(x)) m2 += (x - mean) * (x - mean);
  }
  m2 = block_sum(m2);
  if (threadIdx.x != 0) return;
  s(k, 0) = A(mean);
  s(k, 1) = A(n > 0 ? std::sqrt(m2 / double(n)) : 0.0);
}

// Thread per entry, the arithmetic of combine_rewards_cpu.
template <class T, class A>
__global__ void combine_rewards_kernel(Matrix<const T> r, int64_t sources, int64_t entries, Matrix<const A> w,
                                       Matrix<const A> s, Normalize normalize, A eps, bool renormalize, Matrix<A> o,
                                       Matrix<uint8_t> ok) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < entries; i += stride) {
    A total = 0, weight = 0;
    bool any = false;
    for (int64_t k = 0; k < sources; ++k) {
      const A x = to_acc<A>(r(k, i));
      if (std::isnan(x)) continue;
      total += w(k, 0) * normalized_reward(x, normalize, s, k, eps);
      weight += w(k, 0);
      any = true;
    }
    o(i, 0) = !any ? A(0) : (renormalize ? total / weight : total);
    ok(i, 0) = any;
  }
}

}  // namespace

void reward_source_stats_cuda(const TensorView& rewards, const TensorView& stats, uintptr_t stream) {
  check_ndim(rewards, "rewards", 2);
  const int64_t sources = rewards.sizes[0], entries = rewards.sizes[1];
  if (sources == 0) return;
  check_grid_rows(sources, "rewards");
  dispatch_float(rewards.dtype, "rewards", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    reward_source_stats_kernel<T, A><<<unsigned(sources), threads_for(entries), 0, as_stream(stream)>>>(
        matrix<const T>(rewards), entries, matrix<A>(stats));
    check_launch("reward_source_stats");
  });
}

void combine_rewards_cuda(const TensorView& rewards, const TensorView& weights, const Opt& stats, Normalize normalize,
                          double eps, bool renormalize, const TensorView& out, const TensorView& valid,
                          uintptr_t stream) {
  check_ndim(rewards, "rewards", 2);
  const int64_t sources = rewards.sizes[0], entries = rewards.sizes[1];
  if (entries == 0) return;
  constexpr int threads = 256;
  const int64_t blocks = (entries + threads - 1) / threads;
  dispatch_float(rewards.dtype, "rewards", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    combine_rewards_kernel<T, A><<<unsigned(blocks < 65535 ? blocks : 65535), threads, 0, as_stream(stream)>>>(
        matrix<const T>(rewards), sources, entries, matrix<const A>(weights), matrix<const A>(opt_ptr(stats)),
        normalize, A(eps), renormalize, matrix<A>(out), matrix<uint8_t>(valid));
    check_launch("combine_rewards");
  });
}

}  // namespace fbk
