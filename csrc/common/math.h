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

// Streaming log-sum-exp: feed values one at a time (or merge partial states) without overflow.
template <class A>
struct OnlineLogSumExp {
  A max = -INFINITY;
  A sum = 0;  // sum of exp(x - max)

  FBK_HD void add(A x) {
    if (x > max) {
      sum = sum * exp(max - x) + A(1);
      max = x;
    } else if (x != -INFINITY) {
      sum += exp(x - max);
    }
  }
  FBK_HD void merge(const OnlineLogSumExp& o) {
    if (o.max == -INFINITY) return;
    if (max == -INFINITY) { *this = o; return; }
    if (o.max > max) {
      sum = sum * exp(max - o.max) + o.sum;
      max = o.max;
    } else {
      sum += o.sum * exp(o.max - max);
    }
  }
  FBK_HD A value() const { return max == -INFINITY ? max : max + log(sum); }
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
