#include "common/checks.h"
#include "reward/reward.h"

namespace fbk {

void group_advantage_cpu(const TensorView& scores, const TensorView& order, const TensorView& starts, GroupMode mode,
                         bool unbiased, double eps, Singleton singleton, const TensorView& out) {
  check_ndim(scores, "scores", 1);
  const int64_t n = scores.sizes[0];
  check_size(order, "order", 0, n);
  check_size(starts, "starts", 0, n + 2);
  dispatch_float(scores.dtype, "scores", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    const auto x = matrix<const T>(scores);
    const auto perm = matrix<const int64_t>(order), first = matrix<const int64_t>(starts);
    const auto o = matrix<A>(out);
#pragma omp parallel for schedule(dynamic, 64)
    for (int64_t g = 0; g < n; ++g) {
      const int64_t begin = first(g, 0), end = first(g + 1, 0);
      if (begin >= n) continue;  // past the last group
      const Moments stats = group_moments(begin, end, [&](int64_t i) { return to_acc<double>(x(perm(i, 0), 0)); });
      for (int64_t i = begin; i < end; ++i) {
        const int64_t j = perm(i, 0);
        o(j, 0) = group_advantage_of(to_acc<A>(x(j, 0)), stats, mode, unbiased, eps, singleton);
      }
    }
  });
}

}  // namespace fbk
