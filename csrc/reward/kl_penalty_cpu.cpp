#include <type_traits>

#include "common/checks.h"
#include "common/math.h"
#include "reward/reward.h"

namespace fbk {

namespace {

// One row's element strides: every token input, the mask and the outputs.
struct KLRowStrides {
  int64_t logp, ref, mask, reward, out, shaped;
};

// Row b of the forward: kl (0 outside the mask), shaped rewards, the row's sum and valid count.
// The estimator and the presence of a mask are template arguments and contiguous rows drop their
// strides, so the loop has no control flow and vectorises (masked-out entries are read but dropped
// by a bitwise select).
template <KLEstimator E, bool kContiguous, bool kMasked, class T, class M, class A>
FBK_CPU_CLONES void kl_row(const T* lp, const T* ref, const M* m, const T* rw, KLParams params, A beta,
                           const KLRowStrides& st, int64_t length, A* out, A* shaped, A* sum, int64_t* count) {
  params.estimator = E;
  const int64_t s_lp = kContiguous ? 1 : st.logp, s_ref = kContiguous ? 1 : st.ref;
  const int64_t s_m = kContiguous ? 1 : st.mask, s_out = kContiguous ? 1 : st.out;
  A total = 0;
  int64_t valid = 0;
#pragma omp simd reduction(+ : total, valid)
  for (int64_t t = 0; t < length; ++t) {
    const bool on = !kMasked || m[t * s_m] != M(0);
    const A value = select_or_zero(on, kl_value(params, to_acc<A>(lp[t * s_lp]) - to_acc<A>(ref[t * s_ref])));
    out[t * s_out] = value;
    total += value;
    valid += on;
  }
  if (shaped != nullptr) {
    const int64_t s_rw = kContiguous ? 1 : st.reward, s_shaped = kContiguous ? 1 : st.shaped;
    for (int64_t t = 0; t < length; ++t) shaped[t * s_shaped] = to_acc<A>(rw[t * s_rw]) - beta * out[t * s_out];
  }
  *sum = total;
  *count = valid;
}

template <KLEstimator E>
using KLEstimatorTag = std::integral_constant<KLEstimator, E>;

template <class F>
void dispatch_estimator(KLEstimator e, F&& f) {
  switch (e) {
    case KLEstimator::K1: return f(KLEstimatorTag<KLEstimator::K1>{});
    case KLEstimator::Abs: return f(KLEstimatorTag<KLEstimator::Abs>{});
    case KLEstimator::K2: return f(KLEstimatorTag<KLEstimator::K2>{});
    case KLEstimator::K3: return f(KLEstimatorTag<KLEstimator::K3>{});
  }
  fail("kl_penalty: unknown estimator code ", int(e));
}

}  // namespace

void kl_penalty_cpu(const TensorView& logp, const TensorView& ref_logp, const Opt& mask, const Opt& reward,
                    const KLParams& params, double beta, const TensorView& kl, const Opt& shaped,
                    const TensorView& row_sum, const TensorView& row_count) {
  check_ndim(logp, "logp", 2);
  const int64_t batch = logp.sizes[0], length = logp.sizes[1];
  dispatch_tokens(logp, "logp", mask, [&](auto tt, auto mt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    using M = typename decltype(mt)::type;
    const auto lp = matrix<const T>(logp), ref = matrix<const T>(ref_logp);
    const auto m = matrix<const M>(opt_ptr(mask));
    const auto rw = matrix<const T>(opt_ptr(reward));
    const auto out = matrix<A>(kl), shaped_out = matrix<A>(opt_ptr(shaped));
    const auto sums = matrix<A>(row_sum);
    const auto counts = matrix<int64_t>(row_count);
    const KLRowStrides st{lp.s1, ref.s1, m.s1, rw.s1, out.s1, shaped_out.s1};
    const bool contiguous = st.logp == 1 && st.ref == 1 && (!m || st.mask == 1) && (!rw || st.reward == 1) &&
                            st.out == 1 && (!shaped_out || st.shaped == 1);
    dispatch_estimator(params.estimator, [&](auto et) {
      constexpr KLEstimator E = decltype(et)::value;
#pragma omp parallel for schedule(static)
      for (int64_t b = 0; b < batch; ++b) {
        const M* m_row = m ? &m(b, 0) : nullptr;
        const T* rw_row = rw ? &rw(b, 0) : nullptr;
        A* shaped_row = shaped_out ? &shaped_out(b, 0) : nullptr;
        auto row = contiguous ? (m ? kl_row<E, true, true, T, M, A> : kl_row<E, true, false, T, M, A>)
                              : (m ? kl_row<E, false, true, T, M, A> : kl_row<E, false, false, T, M, A>);
        row(&lp(b, 0), &ref(b, 0), m_row, rw_row, params, A(beta), st, length, &out(b, 0), shaped_row, &sums(b, 0),
            &counts(b, 0));
      }
    });
  });
}

void kl_penalty_backward_cpu(const TensorView& logp, const TensorView& ref_logp, const Opt& mask,
                             const KLParams& params, double beta, const Opt& grad_kl, const Opt& grad_shaped,
                             const Opt& grad_row_sum, const TensorView& grad_logp, const TensorView& grad_ref_logp) {
  check_ndim(logp, "logp", 2);
  const int64_t batch = logp.sizes[0], length = logp.sizes[1];
  dispatch_tokens(logp, "logp", mask, [&](auto tt, auto mt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    using M = typename decltype(mt)::type;
    const auto lp = matrix<const T>(logp), ref = matrix<const T>(ref_logp);
    const auto m = matrix<const M>(opt_ptr(mask));
    const auto g_kl = matrix<const A>(opt_ptr(grad_kl)), g_shaped = matrix<const A>(opt_ptr(grad_shaped));
    const auto g_sum = matrix<const A>(opt_ptr(grad_row_sum));
    const auto g_lp = matrix<T>(grad_logp), g_ref = matrix<T>(grad_ref_logp);
    const A beta_a = A(beta);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
      const A row_grad = g_sum ? g_sum(b, 0) : A(0);
      for (int64_t t = 0; t < length; ++t) {
        const A g = valid_at(m, b, t) ? kl_token_gradient(params, beta_a, to_acc<A>(lp(b, t)) - to_acc<A>(ref(b, t)),
                                                          row_grad, g_kl, g_shaped, b, t)
                                      : A(0);
        g_lp(b, t) = from_acc<T>(g);
        g_ref(b, t) = from_acc<T>(-g);
      }
    }
  });
}

}  // namespace fbk
