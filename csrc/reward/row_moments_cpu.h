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

inline void store_moments(const Matrix<double>& out, int64_t row, const Moments& m) {
  out(row, 0) = m.n;
  out(row, 1) = m.mean;
  out(row, 2) = m.m2;
}

inline Moments load_moments(const Matrix<const double>& in, int64_t row) {
  return Moments{in(row, 0), in(row, 1), in(row, 2)};
}

}  // namespace fbk
