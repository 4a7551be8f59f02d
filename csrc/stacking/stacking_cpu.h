// Host helpers shared by the CPU kernels of the `stacking` family: reading and validating one
// object's pose, dispatching on the map and mask dtypes, and the ring harmonic tables.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/checks.h"
#include "common/dtype.h"
#include "stacking/stacking.h"

namespace fbk {

// Object i's centre (p0, p1) = (y, x) pixels, or (dec, ra) radians on the sphere, its angle and
// flips, validated.
struct ObjectPose {
  double p0, p1, alpha, flip_x, flip_y;
};

inline ObjectPose object_pose(const StackInputs& in, int64_t i) {
  const double* pos = in.positions.ptr<const double>();
  ObjectPose pose{};
  pose.p0 = pos[i * in.positions.strides[0]];
  pose.p1 = pos[i * in.positions.strides[0] + in.positions.strides[1]];
  pose.alpha = in.angles.ptr<const double>()[i * in.angles.strides[0]];
  FBK_CHECK(std::isfinite(pose.p0) && std::isfinite(pose.p1), "positions: row ", i, " is not finite");
  if (in.projection != Projection::Flat)
    FBK_CHECK(std::fabs(pose.p0) <= 1.5707963267948966, "positions: row ", i, " has dec = ", pose.p0,
              " rad outside [-pi/2, pi/2]");
  FBK_CHECK(std::isfinite(pose.alpha), "angles: entry ", i, " is not finite");
  pose.flip_x = pose.flip_y = 1.0;
  if (in.flips) {
    const double* f = in.flips->ptr<const double>();
    pose.flip_x = f[i * in.flips->strides[0]];
    pose.flip_y = f[i * in.flips->strides[0] + in.flips->strides[1]];
    FBK_CHECK((pose.flip_x == 1.0 || pose.flip_x == -1.0) && (pose.flip_y == 1.0 || pose.flip_y == -1.0),
              "flips: row ", i, " is not ±1");
  }
  return pose;
}

// Calls fn(MapSampler<T, M>) for the map's element type T and the mask's type M.
template <class Fn>
void dispatch_map_sampler(const StackInputs& in, Fn&& fn) {
  const auto run = [&](auto map_tag, auto mask_tag) {
    using T = typename decltype(map_tag)::type;
    using M = typename decltype(mask_tag)::type;
    const TensorView& m = in.maps;
    MapSampler<T, M> sampler{m.ptr<const T>(),
                             m.sizes[0],
                             m.sizes[1],
                             m.sizes[2],
                             m.strides[0],
                             m.strides[1],
                             m.strides[2],
                             in.mask ? in.mask->ptr<const M>() : nullptr,
                             in.mask ? in.mask->strides[0] : 0,
                             in.mask ? in.mask->strides[1] : 0};
    fn(sampler);
  };
  const auto with_mask = [&](auto map_tag) {
    if (!in.mask) return run(map_tag, TypeTag<uint8_t>{});
    dispatch_mask(in.mask->dtype, "mask", [&](auto mask_tag) { run(map_tag, mask_tag); });
  };
  switch (in.maps.dtype) {
    case DType::Float32: with_mask(TypeTag<float>{}); break;
    case DType::Float64: with_mask(TypeTag<double>{}); break;
    default: fail("maps: expected float32 or float64, got ", dtype_name(in.maps.dtype));
  }
}

// cos θ_j, sin θ_j at θ_j = 2πj/n_theta, and cos mθ_j, sin mθ_j for m = 0 … m_max (row m).
struct RingHarmonics {
  int64_t n_theta, m_max;
  std::vector<double> cos_theta, sin_theta, cos_m, sin_m;

  RingHarmonics(int64_t n_theta_, int64_t m_max_)
      : n_theta(n_theta_),
        m_max(m_max_),
        cos_theta(static_cast<size_t>(n_theta_)),
        sin_theta(static_cast<size_t>(n_theta_)),
        cos_m(static_cast<size_t>((m_max_ + 1) * n_theta_)),
        sin_m(static_cast<size_t>((m_max_ + 1) * n_theta_)) {
    const double two_pi = 6.283185307179586476925286766559;
    for (int64_t m = 0; m <= m_max; ++m)
      for (int64_t j = 0; j < n_theta; ++j) {
        // m·j reduced mod n_theta keeps the argument small and the table exactly periodic.
        const double th = two_pi * double((m * j) % n_theta) / double(n_theta);
        cos_m[static_cast<size_t>(m * n_theta + j)] = std::cos(th);
        sin_m[static_cast<size_t>(m * n_theta + j)] = std::sin(th);
      }
    for (int64_t j = 0; j < n_theta; ++j) {
      const double th = two_pi * double(j) / double(n_theta);
      cos_theta[static_cast<size_t>(j)] = std::cos(th);
      sin_theta[static_cast<size_t>(j)] = std::sin(th);
    }
  }

  // Writes C_m, S_m (m = 0 … m_max) of the ring samples f[n_theta] at c[m·cs], s[m·ss]:
  // C_0 = mean, C_m = (2/n_θ) Σ f cos mθ, S_m = (2/n_θ) Σ f sin mθ, S_0 = 0 (NaN for a NaN ring).
  void project(const double* f, double* c, int64_t cs, double* s, int64_t ss) const {
    for (int64_t m = 0; m <= m_max; ++m) {
      const double* ct = cos_m.data() + m * n_theta;
      const double* st = sin_m.data() + m * n_theta;
      double sc = 0.0, sn = 0.0;
      for (int64_t j = 0; j < n_theta; ++j) {
        sc += f[j] * ct[j];
        sn += f[j] * st[j];
      }
      ring_harmonic(m, n_theta, sc, sn, c[m * cs], s[m * ss]);
    }
  }
};

}  // namespace fbk
