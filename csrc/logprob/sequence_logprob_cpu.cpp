#include <algorithm>
#include <cmath>

#include "common/checks.h"
#include "common/dtype.h"
#include "common/math.h"
#include "logprob/sequence_logprob.h"
#include "logprob/softmax_rows_cpu.h"

namespace fbk {
namespace {


// The labels of one token: label(i) for i < k, strided.
template <class I>
struct TokenLabels {
  const I* base;
  int64_t stride;
  int64_t k;
  int64_t at(int64_t i) const { return int64_t(base[i * stride]); }
};

template <class I>
void validate_labels_typed(const TensorView& labels, int64_t vocab, int64_t ignore_index) {
  const RowIndexer idx = row_indexer(labels, labels.ndim);
  const I* y = labels.ptr<const I>();
  const int64_t n = labels.numel();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = int64_t(y[idx.offset(i)]);
    FBK_CHECK(label == ignore_index || (label >= 0 && label < vocab), "'labels' must lie in [0, V=", vocab,
              ") or equal ignore_index=", ignore_index, "; got ", label, " at flat position ", i);
  }
}

}  // namespace

void validate_labels(const TensorView& labels, int64_t vocab, int64_t ignore_index) {
  dispatch_index(labels.dtype, "labels", [&](auto it) {
    validate_labels_typed<typename decltype(it)::type>(labels, vocab, ignore_index);
  });
}

void sequence_logprob_cpu(const TensorView& logits, const TensorView& labels, int64_t ignore_index, double temperature,
                          const TensorView& logp, const TensorView& entropy, const TensorView& lse) {
  const LogprobArgs a = check_sequence_logprob_args(logits, labels, ignore_index, temperature);
  validate_labels(labels, a.vocab, ignore_index);
  const int lead = logits.ndim - 1;
  const RowIndexer xrows = row_indexer(logits, lead), yrows = row_indexer(labels, lead);
  const int64_t vs = logits.strides[lead];
  const int64_t ks = labels.ndim > lead ? labels.strides[lead] : 0;
  dispatch_float_index(logits.dtype, "logits", labels.dtype, "labels", [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    A* out_logp = logp.ptr<A>();
    A* out_entropy = entropy.ptr<A>();
    A* out_lse = lse.ptr<A>();
    const A inv_t = A(1) / A(temperature);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < a.rows; ++r) {
      const T* x = logits.ptr<const T>() + xrows.offset(r);
      const TokenLabels<I> y{labels.ptr<const I>() + yrows.offset(r), ks, a.k};
      bool any = false;
      for (int64_t i = 0; i < a.k; ++i) any = any || y.at(i) != ignore_index;
      if (!any) {
        for (int64_t i = 0; i < a.k; ++i) out_logp[r * a.k + i] = 0;
        out_entropy[r] = out_lse[r] = 0;
        continue;
      }
      const SoftmaxStats<A> st = row_stats(x, vs, a.vocab, inv_t);
      const A row_lse = st.lse();
      out_lse[r] = row_lse;
      out_entropy[r] = st.entropy();
      for (int64_t i = 0; i < a.k; ++i) {
        const int64_t label = y.at(i);
        const A lp = label == ignore_index ? A(0) : to_acc<A>(x[label * vs]) * inv_t - row_lse;
        out_logp[r * a.k + i] = lp < A(0) ? lp : A(0);  // clamped <= 0 (NaN passes through)
      }
    }
  });
}

void sequence_logprob_backward_cpu(const TensorView& grad_logp, const std::optional<TensorView>& grad_entropy,
                                   const std::optional<TensorView>& grad_lse, const TensorView& logits,
                                   const TensorView& labels, const TensorView& entropy, const TensorView& lse,
                                   int64_t ignore_index, double temperature, const TensorView& grad_logits) {
  const LogprobArgs a = check_sequence_logprob_args(logits, labels, ignore_index, temperature);
  const int lead = logits.ndim - 1;
  const RowIndexer xrows = row_indexer(logits, lead), yrows = row_indexer(labels, lead);
  const RowIndexer drows = row_indexer(grad_logits, lead), grows = row_indexer(grad_logp, lead);
  const RowIndexer hrows = grad_entropy ? row_indexer(*grad_entropy, lead) : RowIndexer{};
  const RowIndexer lrows = grad_lse ? row_indexer(*grad_lse, lead) : RowIndexer{};
  const int64_t vs = logits.strides[lead], ds = grad_logits.strides[lead];
  const int64_t ks = labels.ndim > lead ? labels.strides[lead] : 0;
  const int64_t gks = grad_logp.ndim > lead ? grad_logp.strides[lead] : 0;
  dispatch_float_index(logits.dtype, "logits", labels.dtype, "labels", [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    const A inv_t = A(1) / A(temperature);
    const A* g = grad_logp.ptr<const A>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < a.rows; ++r) {
      const T* x = logits.ptr<const T>() + xrows.offset(r);
      T* dx = grad_logits.ptr<T>() + drows.offset(r);
      const TokenLabels<I> y{labels.ptr<const I>() + yrows.offset(r), ks, a.k};
      const A* gr = g + grows.offset(r);
      A coef = 0;
      bool any = false;
      for (int64_t i = 0; i < a.k; ++i) {
        if (y.at(i) == ignore_index) continue;
        any = true;
        coef += gr[i * gks];
      }
      if (!any) {
        for (int64_t j = 0; j < a.vocab; ++j) dx[j * ds] = from_acc<T>(A(0));
        continue;
      }
      const A g_entropy = grad_entropy ? grad_entropy->ptr<const A>()[hrows.offset(r)] : A(0);
      if (grad_lse) coef -= grad_lse->ptr<const A>()[lrows.offset(r)];
      const A row_lse = lse.ptr<const A>()[r], row_entropy = entropy.ptr<const A>()[r];
      row_grad(x, vs, dx, ds, a.vocab, inv_t, row_lse, coef, g_entropy, row_entropy);
      // Label entries get their one-hot terms, recomputed in full precision (several k may
      // share a label).
      for (int64_t i = 0; i < a.k; ++i) {
        const int64_t label = y.at(i);
        if (label == ignore_index) continue;
        A onehot = 0;
        for (int64_t j = 0; j < a.k; ++j)
          if (y.at(j) == label) onehot += gr[j * gks];
        const A base = softmax_grad(to_acc<A>(x[label * vs]) * inv_t - row_lse, coef, g_entropy, row_entropy);
        dx[label * ds] = from_acc<T>((base + onehot) * inv_t);
      }
    }
  });
}

}  // namespace fbk
