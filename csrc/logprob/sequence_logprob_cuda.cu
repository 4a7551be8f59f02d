#include <cmath>

#include "common/cuda_utils.cuh"
#include "common/dtype.h"
#include "common/math.h"
#include "logprob/sequence_logprob.h"
#include "logprob/softmax_rows_cuda.cuh"

namespace fbk {
namespace {

// What a token's labels say: whether any is used, whether any is out of range, and the sum of
// their upstream gradients (when `g` is given).
struct LabelSummary {
  bool any = false;
  bool bad = false;
};

template <class I>
__device__ LabelSummary summarise_labels(const I* y, int64_t ks, const LogprobArgs& a) {
  LabelSummary out;
  for (int64_t i = 0; i < a.k; ++i) {
    const int64_t label = int64_t(y[i * ks]);
    if (label == a.ignore_index) continue;
    out.any = true;
    out.bad = out.bad || label < 0 || label >= a.vocab;
  }
  return out;
}

template <class T, class I>
struct LogprobViews {
  const T* logits;
  RowIndexer xrows;
  int64_t vs;
  const I* labels;
  RowIndexer yrows;
  int64_t ks;
};

template <class T, class I, class A>
__global__ void sequence_logprob_kernel(LogprobViews<T, I> v, LogprobArgs a, A* logp, A* entropy, A* lse) {
  const int64_t r = blockIdx.x;
  const T* x = v.logits + v.xrows.offset(r);
  const I* y = v.labels + v.yrows.offset(r);
  const LabelSummary labels = summarise_labels(y, v.ks, a);
  if (!labels.any) {
    if (threadIdx.x == 0) {
      for (int64_t i = 0; i < a.k; ++i) logp[r * a.k + i] = 0;
      entropy[r] = lse[r] = 0;
    }
    return;
  }
  const A inv_t = a.inv_temperature;
  SoftmaxStats<A> st;
  for (int64_t j = threadIdx.x; j < a.vocab; j += blockDim.x)
    st.merge(SoftmaxStats<A>{to_acc<A>(x[j * v.vs]) * inv_t, A(1), A(0)});
  st = block_merge(st);
  if (threadIdx.x != 0) return;
  const A row_lse = st.lse();
  lse[r] = row_lse;
  entropy[r] = st.entropy();
  for (int64_t i = 0; i < a.k; ++i) {
    const int64_t label = int64_t(y[i * v.ks]);
    A lp = 0;
    if (label != a.ignore_index)
      lp = label < 0 || label >= a.vocab ? A(NAN) : to_acc<A>(x[label * v.vs]) * inv_t - row_lse;
    logp[r * a.k + i] = lp < A(0) ? lp : (lp != lp ? lp : A(0));
  }
}

template <class A>
struct GradViews {
  const A* grad_logp;
  RowIndexer grows;
  int64_t gks;
  const A* grad_entropy;  // nullptr when absent
  RowIndexer hrows;
  const A* grad_lse;  // nullptr when absent
  RowIndexer lrows;
  const A* entropy;
  const A* lse;
};

template <class T, class I, class A>
__global__ void sequence_logprob_backward_kernel(LogprobViews<T, I> v, GradViews<A> g, LogprobArgs a, T* dx_base,
                                                 RowIndexer drows, int64_t ds) {
  const int64_t r = blockIdx.x;
  const T* x = v.logits + v.xrows.offset(r);
  const I* y = v.labels + v.yrows.offset(r);
  T* dx = dx_base + drows.offset(r);
  const A* gr = g.grad_logp + g.grows.offset(r);
  const LabelSummary labels = summarise_labels(y, v.ks, a);
  if (!labels.any || labels.bad) {
    const T fill = from_acc<T>(labels.bad ? A(NAN) : A(0));
    for (int64_t j = threadIdx.x; j < a.vocab; j += blockDim.x) dx[j * ds] = fill;
    return;
  }
  A coef = 0;
  for (int64_t i = 0; i < a.k; ++i)
    if (int64_t(y[i * v.ks]) != a.ignore_index) coef += gr[i * g.gks];
  if (g.grad_lse != nullptr) coef -= g.grad_lse[g.lrows.offset(r)];
  const A g_entropy = g.grad_entropy != nullptr ? g.grad_entropy[g.hrows.offset(r)] : A(0);
  const A inv_t = a.inv_temperature, row_lse = g.lse[r], row_entropy = g.entropy[r];
  for (int64_t j = threadIdx.x; j < a.vocab; j += blockDim.x)
    dx[j * ds] = from_acc<T>(softmax_grad(to_acc<A>(x[j * v.vs]) * inv_t - row_lse, coef, g_entropy, row_entropy) * inv_t);
  __syncthreads();  // label entries are rewritten below, after the whole row is written
  if (threadIdx.x != 0) return;
  for (int64_t i = 0; i < a.k; ++i) {
    const int64_t label = int64_t(y[i * v.ks]);
    if (label == a.ignore_index) continue;
    A onehot = 0;
    for (int64_t j = 0; j < a.k; ++j)
      if (int64_t(y[j * v.ks]) == label) onehot += gr[j * g.gks];
    const A base = softmax_grad(to_acc<A>(x[label * v.vs]) * inv_t - row_lse, coef, g_entropy, row_entropy);
    dx[label * ds] = from_acc<T>((base + onehot) * inv_t);
  }
}

template <class T, class I>
LogprobViews<T, I> logprob_views(const TensorView& logits, const TensorView& labels) {
  const int lead = logits.ndim - 1;
  return LogprobViews<T, I>{logits.ptr<const T>(), row_indexer(logits, lead), logits.strides[lead],
                            labels.ptr<const I>(), row_indexer(labels, lead),
                            labels.ndim > lead ? labels.strides[lead] : 0};
}

}  // namespace

void sequence_logprob_cuda(const TensorView& logits, const TensorView& labels, int64_t ignore_index,
                           double temperature, const TensorView& logp, const TensorView& entropy,
                           const TensorView& lse, uintptr_t stream) {
  const LogprobArgs a = check_sequence_logprob_args(logits, labels, ignore_index, temperature);
  if (a.rows == 0) return;
  FBK_CHECK(a.rows <= 0x7FFFFFFF, "logits: at most 2^31-1 tokens per call are supported, got ", a.rows);
  dispatch_float_index(logits.dtype, "logits", labels.dtype, "labels", [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    sequence_logprob_kernel<T, I, A><<<unsigned(a.rows), threads_for(a.vocab), 0, as_stream(stream)>>>(
        logprob_views<T, I>(logits, labels), a, logp.ptr<A>(), entropy.ptr<A>(), lse.ptr<A>());
    check_launch("sequence_logprob");
  });
}

void sequence_logprob_backward_cuda(const TensorView& grad_logp, const std::optional<TensorView>& grad_entropy,
                                    const std::optional<TensorView>& grad_lse, const TensorView& logits,
                                    const TensorView& labels, const TensorView& entropy, const TensorView& lse,
                                    int64_t ignore_index, double temperature, const TensorView& grad_logits,
                                    uintptr_t stream) {
  const LogprobArgs a = check_sequence_logprob_args(logits, labels, ignore_index, temperature);
  if (a.rows == 0) return;
  FBK_CHECK(a.rows <= 0x7FFFFFFF, "logits: at most 2^31-1 tokens per call are supported, got ", a.rows);
  const int lead = logits.ndim - 1;
  dispatch_float_index(logits.dtype, "logits", labels.dtype, "labels", [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    GradViews<A> g{};
    g.grad_logp = grad_logp.ptr<const A>();
    g.grows = row_indexer(grad_logp, lead);
    g.gks = grad_logp.ndim > lead ? grad_logp.strides[lead] : 0;
    if (grad_entropy) {
      g.grad_entropy = grad_entropy->ptr<const A>();
      g.hrows = row_indexer(*grad_entropy, lead);
    }
    if (grad_lse) {
      g.grad_lse = grad_lse->ptr<const A>();
      g.lrows = row_indexer(*grad_lse, lead);
    }
    g.entropy = entropy.ptr<const A>();
    g.lse = lse.ptr<const A>();
    sequence_logprob_backward_kernel<T, I, A><<<unsigned(a.rows), threads_for(a.vocab), 0, as_stream(stream)>>>(
        logprob_views<T, I>(logits, labels), g, a, grad_logits.ptr<T>(), row_indexer(grad_logits, lead),
        grad_logits.strides[lead]);
    check_launch("sequence_logprob_backward");
  });
}

}  // namespace fbk
