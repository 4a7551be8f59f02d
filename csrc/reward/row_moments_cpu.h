// Two-pass centred moments of one row's valid entries on the CPU (whitening, rlhf_advantages).
#pragma once

#include <cstdint>

#include "reward/reward.h"

namespace fbk {

template <class T, class M>
inline Moments row_moments(const Matrix<const T>& x, const Matrix<const M>& mask, int64_t b, int64_t length) {
  Moments m;
  double sum = 0;
  for (int64_t t = 0; t < length; ++t) {
    if (!valid_at(mask, b, t)) continue;
    sum += to_acc<double>(x(b, t));
    m.n += 1;
  }
  if (m.n == 0) return m;
  m.mean = sum / m.n;
  for (int64_t t = 0; t < length; ++t) {
    if (!valid_at(mask, b, t)) continue;
    const double d = to_acc<double>(x(b, t)) - m.mean;
    m.m2 += d * d;
  }
  return m;
}

}  // namespace fbk
