// Ring multipoles on the CPU: bilinear samples on rings around the image centre, projected onto
// cos mθ and sin mθ. OpenMP runs over (image, radius) pairs; each pair is owned by one thread
// and sums its samples in order, so results do not depend on the thread count.
#include <omp.h>

#include <cmath>
#include <vector>

#include "common/checks.h"
#include "common/dtype.h"
#include "stacking/stacking.h"
#include "stacking/stacking_cpu.h"

namespace fbk {

namespace {

template <class T>
void multipoles_impl(const TensorView& image, const std::vector<double>& radii, const RingHarmonics& rings,
                     const TensorView& C, const TensorView& S) {
  const int64_t M = image.sizes[0], P = image.sizes[1];
  // The image as a one-map sampler without mask: with 0 <= r <= n, rounding keeps x, y in
  // [0, 2n] (|cos|, |sin| <= 1), so every tap with a nonzero weight is inside the image.
  MapSampler<T, uint8_t> sampler{image.ptr<const T>(), 1, P, P, 0, image.strides[1], image.strides[2], nullptr, 0, 0};
  const int64_t R = static_cast<int64_t>(radii.size());
  const double centre = double((P - 1) / 2);
  const int64_t tasks = M * R;
#pragma omp parallel
  {
    std::vector<double> f(static_cast<size_t>(rings.n_theta));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t i = task / R, k = task % R;
      const double r = radii[static_cast<size_t>(k)];
      MapSampler<T, uint8_t> map = sampler;
      map.maps += i * image.strides[0];
      for (int64_t j = 0; j < rings.n_theta; ++j) {
        Stencil<Interpolation::Bilinear> s;
        map.at(centre + r * rings.cos_theta[static_cast<size_t>(j)], centre + r * rings.sin_theta[static_cast<size_t>(j)],
               s);
        f[static_cast<size_t>(j)] = map.value(s, 0);
      }
      rings.project(f.data(), C.ptr<double>() + i * C.strides[0] + k * C.strides[2], C.strides[1],
                    S.ptr<double>() + i * S.strides[0] + k * S.strides[2], S.strides[1]);
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
  const RingHarmonics rings(n_theta, m_max);
  switch (image.dtype) {
    case DType::Float32: multipoles_impl<float>(image, r, rings, C, S); break;
    case DType::Float64: multipoles_impl<double>(image, r, rings, C, S); break;
    default: fail("image: expected float32 or float64, got ", dtype_name(image.dtype));
  }
}

}  // namespace fbk
