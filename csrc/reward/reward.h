// The `reward` family: rewards on tokens, KL shaping, GAE, group baselines, whitening.
// Per-element math lives here as __host__ __device__ functions shared by the CPU and CUDA
// kernels; the entry points below are implemented in <op>_cpu.cpp and <op>_cuda.cu.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>

#include "common/dtype.h"
#include "common/macros.h"
#include "common/matrix.h"
#include "common/tensor_view.h"

namespace fbk {

// Codes must match feedbackkit/ops/reward.py.
enum class SegmentMode : int { Add = 0, Last = 1 };
enum class Normalize : int { None = 0, ZScore = 1, Affine = 2 };
enum class KLEstimator : int { K1 = 0, Abs = 1, K2 = 2, K3 = 3 };
enum class MaskMode : int { Skip = 0, Zero = 1 };
enum class GroupMode : int { Grpo = 0, Rloo = 1, Mean = 2 };
enum class Singleton : int { Zero = 0, Raw = 1 };

using Opt = std::optional<TensorView>;

inline const TensorView* opt_ptr(const Opt& v) { return v ? &*v : nullptr; }

// ---- masks -----------------------------------------------------------------------------------

// Mask element (b, t) of an optional mask: absent means valid.
template <class M>
FBK_HD_INLINE bool valid_at(const Matrix<const M>& mask, int64_t b, int64_t t) {
  return !mask || mask(b, t) != M(0);
}

// Index of the last valid token of row b, or -1 for a row without one.
template <class M>
FBK_HD_INLINE int64_t last_valid(const Matrix<const M>& mask, int64_t b, int64_t length) {
  if (!mask) return length - 1;
  for (int64_t t = length - 1; t >= 0; --t)
    if (mask(b, t) != M(0)) return t;
  return -1;
}

// Calls f(TypeTag<M>{}) for the element type of an optional mask (uint8_t when absent).
template <class F>
void dispatch_optional_mask(const std::optional<TensorView>& mask, F&& f) {
  if (!mask) return f(TypeTag<uint8_t>{});
  dispatch_mask(mask->dtype, "mask", f);
}

// Calls f(TypeTag<T>{}, TypeTag<M>{}) for a float token tensor and its optional mask.
template <class F>
void dispatch_tokens(const TensorView& values, const char* arg, const std::optional<TensorView>& mask, F&& f) {
  dispatch_float(values.dtype, arg, [&](auto tt) { dispatch_optional_mask(mask, [&](auto mt) { f(tt, mt); }); });
}

// ---- KL estimators ---------------------------------------------------------------------------

struct KLParams {
  KLEstimator estimator = KLEstimator::K1;
  double ratio_lo = -INFINITY, ratio_hi = INFINITY;  // clamp of δ = logp − ref_logp
  double kl_lo = -INFINITY, kl_hi = INFINITY;        // clamp of the estimate
};

template <class A>
FBK_HD_INLINE A clamp_to(A x, double lo, double hi) {
  return x < A(lo) ? A(lo) : (x > A(hi) ? A(hi) : x);
}

// exp(x) in float without branches (it vectorises): Cody-Waite reduction, a degree-7 Taylor
// polynomial and 2^n built from bits in two halves; within a few ulp on [-87.3, 88.72], +inf above,
// exp(-87.3) ~ 1e-38 below. NaN stays NaN.
FBK_HD_INLINE float exp_branchless(float x) {
  const bool overflow = x > 88.72f;
  x = x < -87.3f ? -87.3f : (overflow ? 88.72f : x);
  const float round_magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting rounds to nearest
  const float n = (x * 1.44269504f + round_magic) - round_magic;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 split in two
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t half = int32_t(n) >> 1;
  const float scale_a = bits_to_float(uint32_t(half + 127) << 23);
  const float scale_b = bits_to_float(uint32_t(int32_t(n) - half + 127) << 23);
  const float result = p * scale_a * scale_b;
  return overflow ? INFINITY : result;
}

// k3(d) = exp(−d) − 1 + d, evaluated without the cancellation that makes the direct formula mostly
// rounding error at small |d| (per-token log ratios are often ~1e-3): with x = −d, the series
// x²·Σ_k x^k/(k+2)! for |d| < 1 (truncation < 1e-9 relative), the direct formula beyond (where
// k3 >= 0.36, so its rounding stays ~1e-7). Float: branch-free (vectorises); double: expm1.
FBK_HD_INLINE float k3_of(float d) {
  const float x = -d;
  float p = 1.0f / 479001600.0f;  // 1/12!
  p = p * x + 1.0f / 39916800.0f;
  p = p * x + 1.0f / 3628800.0f;
  p = p * x + 1.0f / 362880.0f;
  p = p * x + 1.0f / 40320.0f;
  p = p * x + 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  const float series = p * x * x;
  const float direct = (exp_branchless(x) - 1.0f) + d;
  return (d > -1.0f && d < 1.0f) ? series : direct;
}

FBK_HD_INLINE double k3_of(double d) {
  if (d > -0.125 && d < 0.125) {
    // d²·(1/2 − d/6 + d²/24 − … − d⁷/9!): truncation < 1e-17 relative.
    double p = -1.0 / 362880;
    p = p * d + 1.0 / 40320;
    p = p * d - 1.0 / 5040;
    p = p * d + 1.0 / 720;
    p = p * d - 1.0 / 120;
    p = p * d + 1.0 / 24;
    p = p * d - 1.0 / 6;
    p = p * d + 0.5;
    return p * d * d;
  }
  return std::expm1(-d) + d;
}

template <class A>
FBK_HD_INLINE A kl_unclamped(KLEstimator e, A d) {
  switch (e) {
    case KLEstimator::K1: return d;
    case KLEstimator::Abs: return d < A(0) ? -d : d;
    case KLEstimator::K2: return A(0.5) * d * d;
    case KLEstimator::K3: return k3_of(d);
  }
  return d;
}

// Per-token estimate from δ = logp − ref_logp (already upcast).
template <class A>
FBK_HD_INLINE A kl_value(const KLParams& p, A delta) {
  return clamp_to(kl_unclamped(p.estimator, clamp_to(delta, p.ratio_lo, p.ratio_hi)), p.kl_lo, p.kl_hi);
}

// d kl_value / d δ, with torch.clamp's convention: zero gradient strictly outside a clamp.
template <class A>
FBK_HD_INLINE A kl_derivative(const KLParams& p, A delta) {
  if (delta < A(p.ratio_lo) || delta > A(p.ratio_hi)) return A(0);
  const A raw = kl_unclamped(p.estimator, delta);
  if (raw < A(p.kl_lo) || raw > A(p.kl_hi)) return A(0);
  switch (p.estimator) {
    case KLEstimator::K1: return A(1);
    case KLEstimator::Abs: return delta > A(0) ? A(1) : (delta < A(0) ? A(-1) : A(0));
    case KLEstimator::K2: return delta;
    case KLEstimator::K3: return -std::expm1(-delta);
  }
  return A(0);
}

// d loss / d δ at a valid token: the gradient reaching kl[b, t] directly, through row_sum[b]
// (row_grad) and through shaped (times −beta), times d kl / d δ.
template <class A>
FBK_HD_INLINE A kl_token_gradient(const KLParams& p, A beta, A delta, A row_grad, const Matrix<const A>& g_kl,
                                  const Matrix<const A>& g_shaped, int64_t b, int64_t t) {
  const A upstream = row_grad + (g_kl ? g_kl(b, t) : A(0)) - (g_shaped ? beta * g_shaped(b, t) : A(0));
  return upstream * kl_derivative(p, delta);
}

// ---- segment rewards -------------------------------------------------------------------------

// Adds (or sets) row b's segment values [begin, end) in CSR order at their positions of the zeroed
// output row; positions at or past row_length are clamped to its last token or dropped.
template <class T, class P, class A>
FBK_HD_INLINE void place_segments(const Matrix<const T>& values, const Matrix<const P>& positions, int64_t begin,
                                  int64_t end, int64_t row_length, SegmentMode mode, bool clamp, const Matrix<A>& out,
                                  int64_t b) {
  for (int64_t j = begin; j < end; ++j) {
    int64_t p = positions(j, 0);
    if (p >= row_length) {
      if (!clamp || row_length == 0) continue;
      p = row_length - 1;
    }
    const A x = to_acc<A>(values(j, 0));
    out(b, p) = mode == SegmentMode::Add ? out(b, p) + x : x;
  }
}

// Calls f(TypeTag<T>, TypeTag<I>, TypeTag<P>, TypeTag<M>) for values, row_ptr, positions and mask.
template <class F>
void dispatch_segments(const TensorView& values, const TensorView& row_ptr, const TensorView& positions,
                       const std::optional<TensorView>& mask, F&& f) {
  dispatch_float(values.dtype, "values", [&](auto tt) {
    dispatch_index(row_ptr.dtype, "row_ptr", [&](auto it) {
      dispatch_index(positions.dtype, "positions", [&](auto pt) {
        dispatch_optional_mask(mask, [&](auto mt) { f(tt, it, pt, mt); });
      });
    });
  });
}

// ---- GAE as a scan of affine maps ------------------------------------------------------------

// The GAE recursion runs right to left over the state (V', A): the value of the next state and
// the advantage of the next step. One position maps it to
//   valid (or any position in "zero" mode):  V' <- v,   A <- (r − v) + γ·V' + γλ·A
//   masked in "skip" mode:                   identity
// These maps are lower-triangular affine maps of (V', A), closed under composition:
//   V' <- p·V' + c1,   A <- q·V' + s·A + c2.
template <class A>
struct GaeMap {
  A p = 1, c1 = 0, q = 0, s = 1, c2 = 0;

  FBK_HD static GaeMap step(A reward, A value, A gamma, A gamma_lam) {
    return GaeMap{A(0), value, gamma, gamma_lam, reward - value};
  }
  // (this ∘ inner): apply `inner` first.
  FBK_HD GaeMap after(const GaeMap& inner) const {
    return GaeMap{p * inner.p, p * inner.c1 + c1, q * inner.p + s * inner.q, s * inner.s,
                  q * inner.c1 + s * inner.c2 + c2};
  }
  FBK_HD void apply(A& next_value, A& advantage) const {
    const A v = p * next_value + c1;
    advantage = q * next_value + s * advantage + c2;
    next_value = v;
  }
};

// ---- moments (count, mean, centred M2), merged exactly (Chan et al.) ---------------------------

struct Moments {
  double n = 0, mean = 0, m2 = 0;

  FBK_HD void merge(const Moments& o) {
    if (o.n == 0) return;
    if (n == 0) {
      *this = o;
      return;
    }
    const double total = n + o.n;
    const double delta = o.mean - mean;
    mean += delta * (o.n / total);
    m2 += o.m2 + delta * delta * (n * o.n / total);
    n = total;
  }
  // From the all-reducible sums (count, Σx, Σx²).
  FBK_HD static Moments from_sums(double count, double sum, double sum_sq) {
    if (count <= 0) return Moments{};
    const double mean = sum / count;
    const double m2 = sum_sq - sum * mean;
    return Moments{count, mean, m2 > 0 ? m2 : 0.0};
  }
  FBK_HD double sum() const { return n * mean; }
  FBK_HD double sum_sq() const { return m2 + n * mean * mean; }
  FBK_HD double variance(bool unbiased) const {
    if (unbiased) return n > 1 ? m2 / (n - 1) : 0.0;
    return n > 0 ? m2 / n : 0.0;
  }
};

FBK_HD_INLINE void store_moments(const Matrix<double>& out, int64_t row, const Moments& m) {
  out(row, 0) = m.n;
  out(row, 1) = m.mean;
  out(row, 2) = m.m2;
}

FBK_HD_INLINE Moments load_moments(const Matrix<const double>& in, int64_t row) {
  return Moments{in(row, 0), in(row, 1), in(row, 2)};
}

// ---- group baselines -------------------------------------------------------------------------

// Two-pass centred moments of the scores value(begin) … value(end − 1).
template <class Value>
FBK_HD_INLINE Moments group_moments(int64_t begin, int64_t end, Value&& value) {
  Moments m;
  m.n = double(end - begin);
  double sum = 0;
  for (int64_t i = begin; i < end; ++i) sum += value(i);
  m.mean = sum / m.n;
  for (int64_t i = begin; i < end; ++i) {
    const double d = value(i) - m.mean;
    m.m2 += d * d;
  }
  return m;
}

template <class A>
FBK_HD_INLINE A group_advantage_of(A x, const Moments& g, GroupMode mode, bool unbiased, double eps,
                                   Singleton singleton) {
  if (g.n == 1) return singleton == Singleton::Raw ? x : A(0);
  const double centred = double(x) - g.mean;
  switch (mode) {
    case GroupMode::Grpo: return A(centred / (std::sqrt(g.variance(unbiased)) + eps));
    case GroupMode::Rloo: return A(centred * g.n / (g.n - 1));
    case GroupMode::Mean: return A(centred);
  }
  return A(centred);
}

// ---- reward mixing -------------------------------------------------------------------------

// Source k's reward after normalisation; stats[k] is (mean, std) for z-scores, (scale, shift)
// for affine maps.
template <class A>
FBK_HD_INLINE A normalized_reward(A x, Normalize normalize, const Matrix<const A>& stats, int64_t k, A eps) {
  switch (normalize) {
    case Normalize::None: return x;
    case Normalize::ZScore: return (x - stats(k, 0)) / (stats(k, 1) + eps);
    case Normalize::Affine: return stats(k, 0) * x + stats(k, 1);
  }
  return x;
}

// ---- whitening -------------------------------------------------------------------------------

struct Whitening {
  double mean = 0, inv_std = 0, shift = 0;  // out = (x − mean)·inv_std + shift

  FBK_HD static Whitening of(const Moments& m, bool unbiased, double eps, bool shift_mean) {
    return Whitening{m.mean, 1.0 / std::sqrt(m.variance(unbiased) + eps), shift_mean ? 0.0 : m.mean};
  }
  template <class A>
  FBK_HD A apply(A x) const {
    return A((double(x) - mean) * inv_std + shift);
  }
};

// ---- entry points ----------------------------------------------------------------------------
// Token tensors are [B, T] with any strides; outputs are float32 (float64 for float64 inputs).
// Per-row vectors (bootstrap, scores), weights and stats come in that output type A.
// Optional inputs are std::nullopt when absent. CPU versions validate data and raise
// ValueError; CUDA versions never synchronise: malformed data makes the affected rows NaN.

// Raises ValueError unless row_ptr[B+1] is a valid CSR pointer over nnz and positions >= 0.
void validate_segments(const TensorView& row_ptr, const TensorView& positions);

void segment_scatter_cpu(const TensorView& values, const TensorView& row_ptr, const TensorView& positions,
                         const Opt& mask, SegmentMode mode, bool clamp, const TensorView& out);
void segment_scatter_cuda(const TensorView& values, const TensorView& row_ptr, const TensorView& positions,
                          const Opt& mask, SegmentMode mode, bool clamp, const TensorView& out, uintptr_t stream);

// stats[K, 2] = (mean, population std) of each source's non-NaN entries; rewards is [K, M].
void reward_source_stats_cpu(const TensorView& rewards, const TensorView& stats);
void reward_source_stats_cuda(const TensorView& rewards, const TensorView& stats, uintptr_t stream);
void combine_rewards_cpu(const TensorView& rewards, const TensorView& weights, const Opt& stats, Normalize normalize,
                         double eps, bool renormalize, const TensorView& out, const TensorView& valid);
void combine_rewards_cuda(const TensorView& rewards, const TensorView& weights, const Opt& stats, Normalize normalize,
                          double eps, bool renormalize, const TensorView& out, const TensorView& valid,
                          uintptr_t stream);

void kl_penalty_cpu(const TensorView& logp, const TensorView& ref_logp, const Opt& mask, const Opt& reward,
                    const KLParams& params, double beta, const TensorView& kl, const Opt& shaped,
                    const TensorView& row_sum, const TensorView& row_count);
void kl_penalty_cuda(const TensorView& logp, const TensorView& ref_logp, const Opt& mask, const Opt& reward,
                     const KLParams& params, double beta, const TensorView& kl, const Opt& shaped,
                     const TensorView& row_sum, const TensorView& row_count, uintptr_t stream);
// grad = (grad_kl + grad_row_sum[b] − beta·grad_shaped)·d kl/d δ at valid tokens, 0 elsewhere;
// d logp = grad, d ref_logp = −grad.
void kl_penalty_backward_cpu(const TensorView& logp, const TensorView& ref_logp, const Opt& mask,
                             const KLParams& params, double beta, const Opt& grad_kl, const Opt& grad_shaped,
                             const Opt& grad_row_sum, const TensorView& grad_logp, const TensorView& grad_ref_logp);
void kl_penalty_backward_cuda(const TensorView& logp, const TensorView& ref_logp, const Opt& mask,
                              const KLParams& params, double beta, const Opt& grad_kl, const Opt& grad_shaped,
                              const Opt& grad_row_sum, const TensorView& grad_logp, const TensorView& grad_ref_logp,
                              uintptr_t stream);

// values absent = zeros (discounted returns); advantages may be absent.
struct GaeParams {
  double gamma = 1, lam = 1;
  MaskMode mode = MaskMode::Skip;
};
void gae_cpu(const TensorView& rewards, const Opt& values, const Opt& mask, const Opt& bootstrap,
             const GaeParams& params, const Opt& advantages, const TensorView& returns);
void gae_cuda(const TensorView& rewards, const Opt& values, const Opt& mask, const Opt& bootstrap,
              const GaeParams& params, const Opt& advantages, const TensorView& returns, uintptr_t stream);

// Groups are the runs of equal ids after a stable sort: order[N] is the permutation and
// starts[N + 2] holds the start of each run in sorted order, then N in every unused slot.
// On the CPU the runs come from a native sort (one call instead of several torch ops).
void group_runs_cpu(const TensorView& group_ids, const TensorView& order, const TensorView& starts);
void group_advantage_cpu(const TensorView& scores, const TensorView& order, const TensorView& starts, GroupMode mode,
                         bool unbiased, double eps, Singleton singleton, const TensorView& out);
void group_advantage_cuda(const TensorView& scores, const TensorView& order, const TensorView& starts,
                          GroupMode mode, bool unbiased, double eps, Singleton singleton, const TensorView& out,
                          uintptr_t stream);

// moments[B, 3] (float64 n, mean, M2) of each row's valid entries, two-pass centred.
void row_moments_cpu(const TensorView& x, const Opt& mask, const TensorView& moments);
void row_moments_cuda(const TensorView& x, const Opt& mask, const TensorView& moments, uintptr_t stream);
// merged[1, 3] = moments of all rows, merged in row order.
void merge_moments_cpu(const TensorView& moments, const TensorView& merged);
void merge_moments_cuda(const TensorView& moments, const TensorView& merged, uintptr_t stream);
// stats[S, 3] with S = 1 (whole batch) or B (per row): moments (n, mean, M2), or the sums
// (count, Σx, Σx²) when stats_are_sums. Writes out (may alias x) and stats_out[S, 3] as sums.
void whiten_apply_cpu(const TensorView& x, const Opt& mask, const TensorView& stats, bool stats_are_sums,
                      bool shift_mean, bool unbiased, double eps, const TensorView& out, const TensorView& stats_out);
void whiten_apply_cuda(const TensorView& x, const Opt& mask, const TensorView& stats, bool stats_are_sums,
                       bool shift_mean, bool unbiased, double eps, const TensorView& out,
                       const TensorView& stats_out, uintptr_t stream);

// The per-row stage of rlhf_advantages: r = scores·[last valid] + token_rewards − beta·kl, GAE,
// KL row sums and counts, and (when given) the moments of each row's advantages.
struct RlhfInputs {
  TensorView logp, ref_logp, values;
  Opt mask, scores, token_rewards, bootstrap;
};
struct RlhfOutputs {
  TensorView token_rewards, advantages, returns, kl_row_sum, kl_row_count;
  Opt moments;
};
void rlhf_rows_cpu(const RlhfInputs& in, const KLParams& kl, double beta, const GaeParams& gae,
                   const RlhfOutputs& out);
void rlhf_rows_cuda(const RlhfInputs& in, const KLParams& kl, double beta, const GaeParams& gae,
                    const RlhfOutputs& out, uintptr_t stream);

}  // namespace fbk
