#include <algorithm>
#include <cmath>

#include "common/checks.h"
#include "common/dtype.h"
#include "common/math.h"
#include "logprob/sequence_logprob.h"

namespace fbk {
namespace {

constexpr int64_t kBlock = 1024;  // blocked partial sums keep fp32 error independent of V
constexpr int kLanes = 8;

// The labels of one token: label(i) for i < k, strided.
template <class I>
struct TokenLabels {
  const I* base;
  int64_t stride;
  int64_t k;
  int64_t at(int64_t i) const { return int64_t(base[i * stride]); }
};

// Max, then blocked sums of exp(z - m) and exp(z - m) * (z - m), z = x / temperature.
template <class T, class A, int64_t kStride>
FBK_CPU_CLONES SoftmaxStats<A> row_stats(const T* x, int64_t stride, int64_t vocab, A inv_t) {
  const int64_t vs = kStride != 0 ? kStride : stride;
  A lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = -INFINITY;
  int64_t j = 0;
  for (; j + kLanes <= vocab; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const A z = to_acc<A>(x[(j + l) * vs]);
      lanes[l] = z > lanes[l] ? z : lanes[l];
    }
  A m = -INFINITY;
  for (; j < vocab; ++j) {
    const A z = to_acc<A>(x[j * vs]);
    m = z > m ? z : m;
  }
  for (int l = 0; l < kLanes; ++l) m = lanes[l] > m ? lanes[l] : m;
  m *= inv_t;
  A s = 0, t = 0;
  for (int64_t start = 0; start < vocab; start += kBlock) {
    const int64_t end = std::min(vocab, start + kBlock);
    A bs = 0, bt = 0;
#pragma omp simd reduction(+ : bs, bt)
    for (int64_t j = start; j < end; ++j) {
      const A d = softmax_floor(to_acc<A>(x[j * vs]) * inv_t - m);
      const A e = softmax_exp(d);
      bs += e;
      bt += e * d;
    }
    s += bs;
    t += bt;
  }
  return SoftmaxStats<A>{m, s, t};
}

template <class T, class A, int64_t kStride>
FBK_CPU_CLONES void row_grad(const T* x, int64_t stride, T* dx, int64_t dstride, int64_t vocab, A inv_t, A lse, A coef, A g_entropy,
              A entropy) {
  const int64_t vs = kStride != 0 ? kStride : stride;
  const int64_t ds = kStride != 0 ? kStride : dstride;
#pragma omp simd
  for (int64_t j = 0; j < vocab; ++j)
    dx[j * ds] = from_acc<T>(softmax_grad(to_acc<A>(x[j * vs]) * inv_t - lse, coef, g_entropy, entropy) * inv_t);
}

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
  dispatch_float(logits.dtype, "logits", [&](auto vt) {
    dispatch_index(labels.dtype, "labels", [&](auto it) {
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
        const SoftmaxStats<A> st = vs == 1 ? row_stats<T, A, 1>(x, 1, a.vocab, inv_t)
                                           : row_stats<T, A, 0>(x, vs, a.vocab, inv_t);
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
  dispatch_float(logits.dtype, "logits", [&](auto vt) {
    dispatch_index(labels.dtype, "labels", [&](auto it) {
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
        if (vs == 1 && ds == 1)
          row_grad<T, A, 1>(x, 1, dx, 1, a.vocab, inv_t, row_lse, coef, g_entropy, row_entropy);
        else
          row_grad<T, A, 0>(x, vs, dx, ds, a.vocab, inv_t, row_lse, coef, g_entropy, row_entropy);
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
  });
}

}  // namespace fbk
