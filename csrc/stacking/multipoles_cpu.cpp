// Ring multipoles on the CPU: bilinear samples on rings around the image centre, projected onto
// cos mθ and sin mθ. OpenMP runs over (image, radius) pairs; each pair is owned by one thread
// and sums its samples in order, so results do not depend on the thread count.
#include <omp.h>

#include <cmath>
#include <vector>

#include "common/checks.h"
#include "common/dtype.h"
#include "stacking/stacking.h"

namespace fbk {

namespace {

template <class T>
void multipoles_impl(const TensorView& image, const std::vector<double>& radii, int64_t n_theta, int64_t m_max,
                     const std::vector<double>& cos_tab, const std::vector<double>& sin_tab,
                     const std::vector<double>& cos_theta, const std::vector<double>& sin_theta, const TensorView& C,
                     const TensorView& S) {
  const T* img = image.ptr<const T>();
  const int64_t M = image.sizes[0], P = image.sizes[1];
  const int64_t is0 = image.strides[0], is1 = image.strides[1], is2 = image.strides[2];
  const int64_t R = static_cast<int64_t>(radii.size());
  const double centre = double((P - 1) / 2);
  const int64_t Mm = m_max + 1;
  double* c_out = C.ptr<double>();
  double* s_out = S.ptr<double>();
  const int64_t cs0 = C.strides[0], cs1 = C.strides[1], cs2 = C.strides[2];
  const int64_t ss0 = S.strides[0], ss1 = S.strides[1], ss2 = S.strides[2];
  const int64_t tasks = M * R;
#pragma omp parallel
  {
    std::vector<double> f(static_cast<size_t>(n_theta));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t i = task / R, k = task % R;
      const double r = radii[static_cast<size_t>(k)];
      const T* base = img + i * is0;
      // Ring samples. With 0 <= r <= n, rounding keeps x, y in [0, 2n] (|cos|, |sin| <= 1), so
      // every tap with a nonzero weight is inside the image; the tap 2n + 1 (at x = 2n) has
      // weight 0 and is skipped.
      for (int64_t j = 0; j < n_theta; ++j) {
        const double x = centre + r * cos_theta[static_cast<size_t>(j)];
        const double y = centre + r * sin_theta[static_cast<size_t>(j)];
        double wx[2], wy[2];
        const int64_t ix = stencil<Interpolation::Bilinear>(x, wx);
        const int64_t iy = stencil<Interpolation::Bilinear>(y, wy);
        double v = 0.0;
        for (int a = 0; a < 2; ++a) {
          if (wy[a] == 0.0) continue;
          const int64_t yy = iy + a;
          double rv = 0.0;
          for (int b = 0; b < 2; ++b) {
            if (wx[b] == 0.0) continue;
            const int64_t xx = ix + b;
            rv += wx[b] * to_acc<double>(base[yy * is1 + xx * is2]);
          }
          v += wy[a] * rv;
        }
        f[static_cast<size_t>(j)] = v;
      }
      for (int64_t m = 0; m < Mm; ++m) {
        const double* ct = cos_tab.data() + m * n_theta;
        const double* st = sin_tab.data() + m * n_theta;
        double sc = 0.0, sn = 0.0;
        for (int64_t j = 0; j < n_theta; ++j) {
          sc += f[static_cast<size_t>(j)] * ct[j];
          sn += f[static_cast<size_t>(j)] * st[j];
        }
        const double norm = (m == 0 ? 1.0 : 2.0) / double(n_theta);
        c_out[i * cs0 + m * cs1 + k * cs2] = norm * sc;
        // S_0 is 0 by definition, but a NaN ring stays NaN there too.
        s_out[i * ss0 + m * ss1 + k * ss2] = m == 0 ? (std::isnan(sc) ? sc : 0.0) : norm * sn;
      }
    }
  }
}

}  // namespace

void multipoles_cpu(const TensorView& image, const TensorView& radii, int64_t n_theta, int64_t m_max,
                    const TensorView& C, const TensorView& S) {
  const int64_t P = image.sizes[1];
  const double n = double((P - 1) / 2);
  const int64_t R = radii.sizes[0];
  std::vector<double> r(static_cast<size_t>(R));
  const double* rp = radii.ptr<const double>();
  for (int64_t k = 0; k < R; ++k) {
    const double v = rp[k * radii.strides[0]];
    FBK_CHECK(std::isfinite(v) && v >= 0.0 && v <= n, "radii: entry ", k, " = ", v, " is outside [0, ", n, "]");
    r[static_cast<size_t>(k)] = v;
  }
  // Angles and harmonics, computed once (θ_j = 2πj/n_theta).
  const double two_pi = 6.283185307179586476925286766559;
  std::vector<double> ct(static_cast<size_t>(n_theta)), st(static_cast<size_t>(n_theta));
  for (int64_t j = 0; j < n_theta; ++j) {
    const double th = two_pi * double(j) / double(n_theta);
    ct[static_cast<size_t>(j)] = std::cos(th);
    st[static_cast<size_t>(j)] = std::sin(th);
  }
  const int64_t Mm = m_max + 1;
  std::vector<double> cos_tab(static_cast<size_t>(Mm * n_theta)), sin_tab(static_cast<size_t>(Mm * n_theta));
  for (int64_t m = 0; m < Mm; ++m)
    for (int64_t j = 0; j < n_theta; ++j) {
      // m·j reduced mod n_theta keeps the argument small and the table exact-periodic.
      const double th = two_pi * double((m * j) % n_theta) / double(n_theta);
      cos_tab[static_cast<size_t>(m * n_theta + j)] = std::cos(th);
      sin_tab[static_cast<size_t>(m * n_theta + j)] = std::sin(th);
    }
  switch (image.dtype) {
    case DType::Float32: multipoles_impl<float>(image, r, n_theta, m_max, cos_tab, sin_tab, ct, st, C, S); break;
    case DType::Float64: multipoles_impl<double>(image, r, n_theta, m_max, cos_tab, sin_tab, ct, st, C, S); break;
    default: fail("image: expected float32 or float64, got ", dtype_name(image.dtype));
  }
}

}  // namespace fbk
