#include "common/checks.h"
#include "reward/gae_row_cpu.h"
#include "reward/reward.h"
#include "reward/row_moments_cpu.h"

namespace fbk {

void rlhf_rows_cpu(const RlhfInputs& in, const KLParams& kl, double beta, const GaeParams& gae,
                   const RlhfOutputs& out) {
  check_ndim(in.logp, "logp", 2);
  const int64_t batch = in.logp.sizes[0], length = in.logp.sizes[1];
  dispatch_float(in.logp.dtype, "logp", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(in.mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      const auto lp = matrix<const T>(in.logp), ref = matrix<const T>(in.ref_logp);
      const auto values = matrix<const T>(in.values);
      const auto m = matrix<const M>(opt_ptr(in.mask));
      const auto scores = matrix<const A>(opt_ptr(in.scores));
      const auto token_in = matrix<const T>(opt_ptr(in.token_rewards));
      const auto boot = matrix<const A>(opt_ptr(in.bootstrap));
      const auto token_out = matrix<A>(out.token_rewards), adv = matrix<A>(out.advantages);
      const auto ret = matrix<A>(out.returns), kl_sum = matrix<A>(out.kl_row_sum);
      const auto kl_count = matrix<int64_t>(out.kl_row_count);
      const auto moments = matrix<double>(opt_ptr(out.moments));
      const A beta_a = A(beta);
#pragma omp parallel for schedule(dynamic, 4)
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t last = last_valid(m, b, length);
        A total = 0;
        int64_t count = 0;
        auto reward = [&](int64_t t) {
          const A k = kl_value(kl, to_acc<A>(lp(b, t)) - to_acc<A>(ref(b, t)));
          total += k;
          ++count;
          A r = (token_in ? to_acc<A>(token_in(b, t)) : A(0)) - beta_a * k;
          if (scores && t == last) r += scores(b, 0);
          token_out(b, t) = r;
          return r;
        };
        gae_row<A>(
            length, last, gae, boot ? boot(b, 0) : A(0), [&](int64_t t) { return valid_at(m, b, t); }, reward,
            [&](int64_t t) { return to_acc<A>(values(b, t)); },
            [&](int64_t t, bool on, A a, A value) {
              if (!on) token_out(b, t) = A(0);
              adv(b, t) = on ? a : A(0);
              ret(b, t) = on ? a + value : A(0);
            });
        kl_sum(b, 0) = total;
        kl_count(b, 0) = count;
        if (moments) store_moments(moments, b, row_moments(Matrix<const A>{adv.data, adv.s0, adv.s1}, m, b, length));
      }
    });
  });
}

}  // namespace fbk
