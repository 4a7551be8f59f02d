#include <cmath>

#include "common/checks.h"
#include "reward/reward.h"

namespace fbk {

void reward_source_stats_cpu(const TensorView& rewards, const TensorView& stats) {
  check_ndim(rewards, "rewards", 2);
  const int64_t sources = rewards.sizes[0], entries = rewards.sizes[1];
  dispatch_float(rewards.dtype, "rewards", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    const auto r = matrix<const T>(rewards);
    const auto s = matrix<A>(stats);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < sources; ++k) {
      double sum = 0;
      int64_t n = 0;
      for (int64_t i = 0; i < entries; ++i) {
        const double x = to_acc<double>(r(k, i));
        if (!std::isnan(x)) sum += x, ++n;
      }
      const double mean = n > 0 ? sum / double(n) : 0.0;
      double m2 = 0;
      for (int64_t i = 0; i < entries; ++i) {
        const double x = to_acc<double>(r(k, i));
        if (!std::isnan(x)) m2 += (x - mean) * (x - mean);
      }
      s(k, 0) = A(mean);
      s(k, 1) = A(n > 0 ? std::sqrt(m2 / double(n)) : 0.0);
    }
  });
}

void combine_rewards_cpu(const TensorView& rewards, const TensorView& weights, const Opt& stats, Normalize normalize,
                         double eps, bool renormalize, const TensorView& out, const TensorView& valid) {
  check_ndim(rewards, "rewards", 2);
  const int64_t sources = rewards.sizes[0], entries = rewards.sizes[1];
  dispatch_float(rewards.dtype, "rewards", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    const auto r = matrix<const T>(rewards);
    const auto w = matrix<const A>(weights);
    const auto s = matrix<const A>(opt_ptr(stats));
    const auto o = matrix<A>(out);
    const auto ok = matrix<uint8_t>(valid);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < entries; ++i) {
      A total = 0, weight = 0;
      bool any = false;
      for (int64_t k = 0; k < sources; ++k) {
        const A x = to_acc<A>(r(k, i));
        if (std::isnan(x)) continue;
        total += w(k, 0) * normalized_reward(x, normalize, s, k, A(eps));
        weight += w(k, 0);
        any = true;
      }
      o(i, 0) = !any ? A(0) : (renormalize ? total / weight : total);
      ok(i, 0) = any;
    }
  });
}

}  // namespace fbk
