#include "common/checks.h"
#include "reward/gae_row_cpu.h"
#include "reward/reward.h"

namespace fbk {

void gae_cpu(const TensorView& rewards, const Opt& values, const Opt& mask, const Opt& bootstrap,
             const GaeParams& params, const Opt& advantages, const TensorView& returns) {
  check_ndim(rewards, "rewards", 2);
  const int64_t batch = rewards.sizes[0], length = rewards.sizes[1];
  dispatch_float(rewards.dtype, "rewards", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      const auto r = matrix<const T>(rewards);
      const auto v = matrix<const T>(opt_ptr(values));
      const auto m = matrix<const M>(opt_ptr(mask));
      const auto boot = matrix<const A>(opt_ptr(bootstrap));
      const auto adv = matrix<A>(opt_ptr(advantages));
      const auto ret = matrix<A>(returns);
#pragma omp parallel for schedule(dynamic, 4)
      for (int64_t b = 0; b < batch; ++b) {
        gae_row<A>(
            m, b, length, params, boot ? boot(b, 0) : A(0), [&](int64_t t) { return to_acc<A>(r(b, t)); },
            [&](int64_t t) { return v ? to_acc<A>(v(b, t)) : A(0); },
            [&](int64_t t, bool on, A a, A value) {
              if (adv) adv(b, t) = on ? a : A(0);
              ret(b, t) = on ? a + value : A(0);
            });
      }
    });
  });
}

}  // namespace fbk
