// CPU row loops over a softmax row, shared by sequence_logprob and linear_logprob: the
// statistics of z = x / T and the gradient row. Vectorised, with AVX2/FMA clones.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/dtype.h"
#include "common/macros.h"
#include "common/math.h"
#include "logprob/sequence_logprob.h"

namespace fbk {
namespace softmax_rows {

constexpr int64_t kBlock = 1024;  // blocked partial sums keep fp32 error independent of V
constexpr int kLanes = 8;

// Max, then blocked sums of exp(z - m) and exp(z - m) * (z - m), z = x / temperature.
template <class T, class A, int64_t kStride>
FBK_CPU_CLONES SoftmaxStats<A> stats_strided(const T* x, int64_t stride, int64_t vocab, A inv_t) {
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
FBK_CPU_CLONES void grad_strided(const T* x, int64_t stride, T* dx, int64_t dstride, int64_t vocab, A inv_t, A lse, A coef, A g_entropy,
              A entropy) {
  const int64_t vs = kStride != 0 ? kStride : stride;
  const int64_t ds = kStride != 0 ? kStride : dstride;
#pragma omp simd
  for (int64_t j = 0; j < vocab; ++j)
    dx[j * ds] = from_acc<T>(softmax_grad(to_acc<A>(x[j * vs]) * inv_t - lse, coef, g_entropy, entropy) * inv_t);
}

}  // namespace softmax_rows

// Softmax statistics of one row of `vocab` elements (stride 1 takes the unit-stride loop).
template <class T, class A>
SoftmaxStats<A> row_stats(const T* x, int64_t stride, int64_t vocab, A inv_t) {
  return stride == 1 ? softmax_rows::stats_strided<T, A, 1>(x, 1, vocab, inv_t)
                     : softmax_rows::stats_strided<T, A, 0>(x, stride, vocab, inv_t);
}

// dx[j] = softmax_grad(z_j - lse, coef, g_entropy, entropy) / T for every j (labels not added).
template <class T, class A>
void row_grad(const T* x, int64_t stride, T* dx, int64_t dstride, int64_t vocab, A inv_t, A lse, A coef, A g_entropy,
              A entropy) {
  if (stride == 1 && dstride == 1)
    softmax_rows::grad_strided<T, A, 1>(x, 1, dx, 1, vocab, inv_t, lse, coef, g_entropy, entropy);
  else
    softmax_rows::grad_strided<T, A, 0>(x, stride, dx, dstride, vocab, inv_t, lse, coef, g_entropy, entropy);
}

}  // namespace fbk
