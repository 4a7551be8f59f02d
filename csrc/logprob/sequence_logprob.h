// sequence_logprob: per-token log-probabilities of labels under softmax(logits / temperature),
// with the softmax entropy and log-sum-exp of every token, and the gradient of all three.
//
// logits [..., V] (any strides); labels [...] (one label per token) or [..., K] (K labels per
// token). Rows are the N tokens; outputs are contiguous: logp [N, K], entropy [N], lse [N].
// A label equal to ignore_index gives logp 0 and no gradient; a token whose labels are all
// ignored is skipped (entropy and lse 0, zero gradient).
#pragma once

#include <cstdint>
#include <optional>

#include "common/checks.h"
#include "common/dtype.h"
#include "common/macros.h"
#include "common/math.h"
#include "common/tensor_view.h"

namespace fbk {

struct LogprobArgs {
  int64_t rows;      // N
  int64_t vocab;     // V
  int64_t k;         // labels per token
  int64_t ignore_index;
  float inv_temperature;
};

// Checks ranks and shapes; returns N, V and K. `topk`: labels carry a trailing K dimension.
inline LogprobArgs check_sequence_logprob_args(const TensorView& logits, const TensorView& labels, int64_t ignore_index,
                                               double temperature) {
  FBK_CHECK(logits.ndim >= 1, "'logits' must have a vocabulary dimension");
  const int lead = logits.ndim - 1;
  const bool topk = labels.ndim == logits.ndim;
  FBK_CHECK(topk || labels.ndim == lead, "'labels' must have the leading shape of 'logits' (plus an optional K)");
  int64_t rows = 1;
  for (int d = 0; d < lead; ++d) {
    check_size(labels, "labels", d, logits.sizes[d]);
    rows *= logits.sizes[d];
  }
  FBK_CHECK(temperature > 0, "'temperature' must be > 0; got ", temperature);
  return LogprobArgs{rows, logits.sizes[lead], topk ? labels.sizes[lead] : 1, ignore_index,
                     static_cast<float>(1.0 / temperature)};
}

// d(loss)/d(z_j) for one vocabulary entry j that is not a label, given p_j = exp(z_j - lse):
// the log-prob terms give -p_j * sum_k g_k, the entropy term -g_H * p_j * (log p_j + H), and
// the lse term g_lse * p_j. `coef` = sum_k g_k - g_lse.
template <class A>
FBK_HD_INLINE A softmax_grad(A log_p, A coef, A grad_entropy, A entropy) {
  const A floored = softmax_floor(log_p);
  const A p = softmax_exp(floored);
  return -p * (coef + grad_entropy * (floored + entropy));
}

void validate_labels(const TensorView& labels, int64_t vocab, int64_t ignore_index);

void sequence_logprob_cpu(const TensorView& logits, const TensorView& labels, int64_t ignore_index, double temperature,
                          const TensorView& logp, const TensorView& entropy, const TensorView& lse);
void sequence_logprob_backward_cpu(const TensorView& grad_logp, const std::optional<TensorView>& grad_entropy,
                                   const std::optional<TensorView>& grad_lse, const TensorView& logits,
                                   const TensorView& labels, const TensorView& entropy, const TensorView& lse,
                                   int64_t ignore_index, double temperature, const TensorView& grad_logits);

// CUDA: no host sync and no raising on data; a label outside [0, V) (other than ignore_index)
// makes that token's logp NaN and its row's gradient NaN.
void sequence_logprob_cuda(const TensorView& logits, const TensorView& labels, int64_t ignore_index,
                           double temperature, const TensorView& logp, const TensorView& entropy,
                           const TensorView& lse, uintptr_t stream);
void sequence_logprob_backward_cuda(const TensorView& grad_logp, const std::optional<TensorView>& grad_entropy,
                                    const std::optional<TensorView>& grad_lse, const TensorView& logits,
                                    const TensorView& labels, const TensorView& entropy, const TensorView& lse,
                                    int64_t ignore_index, double temperature, const TensorView& grad_logits,
                                    uintptr_t stream);

}  // namespace fbk
