#include "common/checks.h"
#include "reward/reward.h"

namespace fbk {

void kl_penalty_cpu(const TensorView& logp, const TensorView& ref_logp, const Opt& mask, const Opt& reward,
                    const KLParams& params, double beta, const TensorView& kl, const Opt& shaped,
                    const TensorView& row_sum, const TensorView& row_count) {
  check_ndim(logp, "logp", 2);
  const int64_t batch = logp.sizes[0], length = logp.sizes[1];
  dispatch_float(logp.dtype, "logp", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      const auto lp = matrix<const T>(logp), ref = matrix<const T>(ref_logp);
      const auto m = matrix<const M>(opt_ptr(mask));
      const auto rw = matrix<const T>(opt_ptr(reward));
      const auto out = matrix<A>(kl), shaped_out = matrix<A>(opt_ptr(shaped));
      const auto sums = matrix<A>(row_sum);
      const auto counts = matrix<int64_t>(row_count);
      const A beta_a = A(beta);
#pragma omp parallel for schedule(static)
      for (int64_t b = 0; b < batch; ++b) {
        A total = 0;
        int64_t count = 0;
        for (int64_t t = 0; t < length; ++t) {
          const bool on = valid_at(m, b, t);
          const A value = on ? kl_value(params, to_acc<A>(lp(b, t)) - to_acc<A>(ref(b, t))) : A(0);
          out(b, t) = value;
          if (shaped_out) shaped_out(b, t) = to_acc<A>(rw(b, t)) - beta_a * value;
          total += value;
          count += on;
        }
        sums(b, 0) = total;
        counts(b, 0) = count;
      }
    });
  });
}

void kl_penalty_backward_cpu(const TensorView& logp, const TensorView& ref_logp, const Opt& mask,
                             const KLParams& params, double beta, const Opt& grad_kl, const Opt& grad_shaped,
                             const Opt& grad_row_sum, const TensorView& grad_logp, const TensorView& grad_ref_logp) {
  check_ndim(logp, "logp", 2);
  const int64_t batch = logp.sizes[0], length = logp.sizes[1];
  dispatch_float(logp.dtype, "logp", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(mask, [&](auto mt) {
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
  });
}

}  // namespace fbk
