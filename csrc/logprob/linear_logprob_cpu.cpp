#include "logprob/linear_logprob.h"

#include "common/checks.h"
#include "common/dtype.h"
#include "common/math.h"
#include "logprob/softmax_rows_cpu.h"

namespace fbk {

void linear_logprob_tile_forward_cpu(const TensorView& tile, const TensorView& labels, int64_t v0, int64_t ignore_index,
                                     double temperature, const TensorView& m, const TensorView& s,
                                     const TensorView& t, const TensorView& label_logit) {
  const TileArgs a = check_tile_args(tile, labels, v0, ignore_index, temperature);
  dispatch_float_index(tile.dtype, "tile", labels.dtype, "labels", [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    const T* x = tile.ptr<const T>();
    const I* y = labels.ptr<const I>();
    A *pm = m.ptr<A>(), *ps = s.ptr<A>(), *pt = t.ptr<A>(), *pl = label_logit.ptr<A>();
    const A inv_t = A(1) / A(temperature);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < a.rows; ++r) {
      const int64_t label = int64_t(y[r * labels.strides[0]]);
      if (label == ignore_index) continue;  // ignored tokens cost nothing here
      const T* row = x + r * tile.strides[0];
      SoftmaxStats<A> st{pm[r], ps[r], pt[r]};
      st.merge(row_stats(row, tile.strides[1], a.width, inv_t));
      pm[r] = st.m;
      ps[r] = st.s;
      pt[r] = st.t;
      if (label >= v0 && label < v0 + a.width) pl[r] = to_acc<A>(row[(label - v0) * tile.strides[1]]) * inv_t;
    }
  });
}

void linear_logprob_tile_backward_cpu(const TensorView& tile, const TensorView& labels, int64_t v0,
                                      int64_t ignore_index, double temperature, const TensorView& lse,
                                      const TensorView& entropy, const TensorView& coef, const TensorView& grad_entropy,
                                      const TensorView& grad_logp, const TensorView& grad_tile) {
  const TileArgs a = check_tile_args(tile, labels, v0, ignore_index, temperature);
  dispatch_float_index(tile.dtype, "tile", labels.dtype, "labels", [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    const T* x = tile.ptr<const T>();
    T* dx = grad_tile.ptr<T>();
    const I* y = labels.ptr<const I>();
    const A *pl = lse.ptr<const A>(), *ph = entropy.ptr<const A>(), *pc = coef.ptr<const A>();
    const A *pgh = grad_entropy.ptr<const A>(), *pg = grad_logp.ptr<const A>();
    const A inv_t = A(1) / A(temperature);
    const int64_t xs = tile.strides[1], ds = grad_tile.strides[1];
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < a.rows; ++r) {
      const int64_t label = int64_t(y[r * labels.strides[0]]);
      const T* row = x + r * tile.strides[0];
      T* drow = dx + r * grad_tile.strides[0];
      if (label == ignore_index) {
        for (int64_t j = 0; j < a.width; ++j) drow[j * ds] = from_acc<T>(A(0));
        continue;
      }
      row_grad(row, xs, drow, ds, a.width, inv_t, pl[r], pc[r], pgh[r], ph[r]);
      if (label >= v0 && label < v0 + a.width) {
        const int64_t j = label - v0;
        const A base = softmax_grad(to_acc<A>(row[j * xs]) * inv_t - pl[r], pc[r], pgh[r], ph[r]);
        drow[j * ds] = from_acc<T>((base + pg[r]) * inv_t);
      }
    }
  });
}

}  // namespace fbk
