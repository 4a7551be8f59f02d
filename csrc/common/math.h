// Host-device math shared by the CPU and CUDA kernels of every family.
#pragma once

#include <cmath>

#include "common/dtype.h"
#include "common/macros.h"

namespace fbk {

// x where `on`, else +0. A bitwise select: it vectorises (a ?: on floats often does not) and, unlike
// multiplying by the mask, never lets a NaN or inf from a masked-out element through.
FBK_HD_INLINE float select_or_zero(bool on, float x) { return bits_to_float(float_to_bits(x) & (0u - uint32_t(on))); }
FBK_HD_INLINE double select_or_zero(bool on, double x) {
  return bits_to_double(double_to_bits(x) & (uint64_t(0) - uint64_t(on)));
}

// exp(d) for d <= 0, the argument of a softmax after subtracting the row max. Branch-free (it
// vectorises on the CPU) and the same arithmetic on the GPU: d is clamped at -87.3 (exp ~ 1e-38
// instead of 0, and -inf never meets a multiply), 2^n is built from bits and exp(r) on
// [-ln2/2, ln2/2] is a degree-6 Taylor polynomial (relative error ~2e-7). NaN stays NaN.
FBK_HD_INLINE float softmax_exp(float d) {
  d = d < -87.3f ? -87.3f : d;
  const float round_magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting rounds to nearest
  const float n = (d * 1.44269504f + round_magic) - round_magic;
  const float r = (d - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 split in two (Cody-Waite)
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * bits_to_float(uint32_t(int32_t(n) + 127) << 23);
}

FBK_HD_INLINE double softmax_exp(double d) { return exp(d); }

// Clamp used with softmax_exp: keeps -inf logits out of products such as p * log p.
template <class A> FBK_HD_INLINE A softmax_floor(A d) { return d < A(-87.3) ? A(-87.3) : d; }

// Softmax statistics of one row, mergeable across threads: for the running max m,
// s = sum exp(z - m) and t = sum exp(z - m) * (z - m). Then lse = m + log s and the entropy of
// softmax(z) is log s - t / s.
template <class A>
struct SoftmaxStats {
  A m = -INFINITY;
  A s = 0;
  A t = 0;

  FBK_HD void merge(const SoftmaxStats& o) {
    if (o.m == -INFINITY) return;
    if (m == -INFINITY) { *this = o; return; }
    const SoftmaxStats& hi = o.m > m ? o : *this;
    const SoftmaxStats& lo = o.m > m ? *this : o;
    const A shift = softmax_floor(lo.m - hi.m);  // <= 0
    const A scale = softmax_exp(shift);
    *this = SoftmaxStats{hi.m, hi.s + lo.s * scale, hi.t + (lo.t + lo.s * shift) * scale};
  }
  FBK_HD A lse() const { return m + log(s); }
  FBK_HD A entropy() const { return log(s) - t / s; }
};

// x -> a * x + b. Composition is associative, so linear recurrences such as GAE
// (adv_t = delta_t + gamma*lam*adv_{t+1}) become parallel scans over these maps.
template <class A>
struct AffineMap {
  A a = 1;
  A b = 0;
  FBK_HD A apply(A x) const { return a * x + b; }
  // (this ∘ inner)(x) = this(inner(x)).
  FBK_HD AffineMap after(const AffineMap& inner) const { return {a * inner.a, a * inner.b + b}; }
};

}  // namespace fbk
