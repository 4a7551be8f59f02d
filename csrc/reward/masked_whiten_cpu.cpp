#include "common/checks.h"
#include "reward/reward.h"
#include "reward/row_moments_cpu.h"

namespace fbk {

void row_moments_cpu(const TensorView& x, const Opt& mask, const TensorView& moments) {
  check_ndim(x, "x", 2);
  const int64_t batch = x.sizes[0], length = x.sizes[1];
  dispatch_float(x.dtype, "x", [&](auto tt) {
    using T = typename decltype(tt)::type;
    dispatch_optional_mask(mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      const auto values = matrix<const T>(x);
      const auto m = matrix<const M>(opt_ptr(mask));
      const auto out = matrix<double>(moments);
#pragma omp parallel for schedule(static)
      for (int64_t b = 0; b < batch; ++b) store_moments(out, b, row_moments(values, m, b, length));
    });
  });
}

void merge_moments_cpu(const TensorView& moments, const TensorView& merged) {
  const auto in = matrix<const double>(moments);
  Moments total;
  for (int64_t b = 0; b < moments.sizes[0]; ++b) total.merge(load_moments(in, b));
  store_moments(matrix<double>(merged), 0, total);
}

void whiten_apply_cpu(const TensorView& x, const Opt& mask, const TensorView& stats, bool stats_are_sums,
                      bool shift_mean, bool unbiased, double eps, const TensorView& out, const TensorView& stats_out) {
  check_ndim(x, "x", 2);
  const int64_t batch = x.sizes[0], length = x.sizes[1];
  const bool per_row = stats.sizes[0] != 1 || batch == 1;
  dispatch_float(x.dtype, "x", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      const auto values = matrix<const T>(x);
      const auto m = matrix<const M>(opt_ptr(mask));
      const auto s = matrix<const double>(stats);
      const auto s_out = matrix<double>(stats_out);
      const auto o = matrix<A>(out);
      auto moments_of = [&](int64_t row) {
        const Moments mo = stats_are_sums ? Moments::from_sums(s(row, 0), s(row, 1), s(row, 2)) : load_moments(s, row);
        s_out(row, 0) = mo.n;
        s_out(row, 1) = mo.sum();
        s_out(row, 2) = mo.sum_sq();
        return mo;
      };
      const Moments batch_moments = per_row ? Moments{} : moments_of(0);
#pragma omp parallel for schedule(static)
      for (int64_t b = 0; b < batch; ++b) {
        const Whitening w = Whitening::of(per_row ? moments_of(b) : batch_moments, unbiased, eps, shift_mean);
        for (int64_t t = 0; t < length; ++t) o(b, t) = valid_at(m, b, t) ? w.apply(to_acc<A>(values(b, t))) : A(0);
      }
    });
  });
}

}  // namespace fbk
