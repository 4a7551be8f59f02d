#include "common/checks.h"
#include "reward/gae_row_cpu.h"
#include "reward/reward.h"

namespace fbk {

void gae_cpu(const TensorView& rewards, const Opt& values, const Opt& mask, const Opt& bootstrap,
             const GaeParams& params, const Opt& advantages, const TensorView& returns) {
  check_ndim(rewards, "rewards", 2);
  const int64_t batch = rewards.sizes[0], length = rewards.sizes[1];
  dispatch_tokens(rewards, "rewards", mask, [&](auto tt, auto mt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    using M = typename decltype(mt)::type;
    const auto r = matrix<const T>(rewards);
    const auto v = matrix<const T>(opt_ptr(values));
    const auto m = matrix<const M>(opt_ptr(mask));
    const auto boot = matrix<const A>(opt_ptr(bootstrap));
    const auto adv = matrix<A>(opt_ptr(advantages));
    const auto ret = matrix<A>(returns);
    const bool contiguous = r.s1 == 1 && (!v || v.s1 == 1) && (!m || m.s1 == 1) && (!adv || adv.s1 == 1) &&
                            ret.s1 == 1;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t last = last_valid(m, b, length);
      const A bootstrap_b = boot ? boot(b, 0) : A(0);
      if (contiguous) {
        // Unit-stride rows through raw pointers: no index arithmetic in the recursion.
        const T* r_row = &r(b, 0);
        const T* v_row = v ? &v(b, 0) : nullptr;
        const M* m_row = m ? &m(b, 0) : nullptr;
        A* adv_row = adv ? &adv(b, 0) : nullptr;
        A* ret_row = &ret(b, 0);
        gae_row<A>(
            length, last, params, bootstrap_b, [&](int64_t t) { return m_row == nullptr || m_row[t] != M(0); },
            [&](int64_t t) { return to_acc<A>(r_row[t]); },
            [&](int64_t t) { return v_row ? to_acc<A>(v_row[t]) : A(0); },
            [&](int64_t t, bool on, A a, A value) {
              if (adv_row) adv_row[t] = on ? a : A(0);
              ret_row[t] = on ? a + value : A(0);
            });
        continue;
      }
      gae_row<A>(
          length, last, params, bootstrap_b, [&](int64_t t) { return valid_at(m, b, t); },
          [&](int64_t t) { return to_acc<A>(r(b, t)); },
          [&](int64_t t) { return v ? to_acc<A>(v(b, t)) : A(0); },
          [&](int64_t t, bool on, A a, A value) {
            if (adv) adv(b, t) = on ? a : A(0);
            ret(b, t) = on ? a + value : A(0);
          });
    }
  });
}

}  // namespace fbk
