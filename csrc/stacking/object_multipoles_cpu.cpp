// Per-object ring multipoles straight from the map: each object's rings are sampled through its
// stacking frame (flat or spherical, rotated and flipped) and projected onto cos mθ, sin mθ.
// OpenMP runs over (object, radius) pairs, each owned by one thread, so results do not depend
// on the thread count.
#include <omp.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "stacking/stacking.h"
#include "stacking/stacking_cpu.h"

namespace fbk {

namespace {

template <Interpolation I, class T, class M, class Frame>
void object_rings(const MapSampler<T, M>& map, const std::vector<Frame>& frames, const std::vector<double>& radii,
                  double step, const RingHarmonics& rings, const TensorView& C, const TensorView& S) {
  const int64_t N = static_cast<int64_t>(frames.size()), R = static_cast<int64_t>(radii.size());
  const int64_t nt = rings.n_theta;
  const int64_t tasks = N * R;
#pragma omp parallel
  {
    std::vector<double> f(static_cast<size_t>(map.B * nt));
#pragma omp for schedule(dynamic, 16)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t i = task / R, k = task % R;
      const double r = radii[static_cast<size_t>(k)] * step;
      for (int64_t j = 0; j < nt; ++j) {
        double x, y;
        Stencil<I> s;
        const bool ok = frames[static_cast<size_t>(i)].locate(r * rings.cos_theta[static_cast<size_t>(j)],
                                                              r * rings.sin_theta[static_cast<size_t>(j)], x, y) &&
                        map.at(x, y, s);
        for (int64_t c = 0; c < map.B; ++c)
          f[static_cast<size_t>(c * nt + j)] = ok ? map.value(s, c) : std::numeric_limits<double>::quiet_NaN();
      }
      for (int64_t c = 0; c < map.B; ++c)
        rings.project(f.data() + c * nt, C.ptr<double>() + i * C.strides[0] + c * C.strides[1] + k * C.strides[3],
                      C.strides[2], S.ptr<double>() + i * S.strides[0] + c * S.strides[1] + k * S.strides[3],
                      S.strides[2]);
    }
  }
}

template <class Frame>
void object_multipoles_with_frames(const StackInputs& in, const std::vector<double>& radii, const RingHarmonics& rings,
                                   const TensorView& C, const TensorView& S) {
  const int64_t N = in.positions.sizes[0];
  std::vector<Frame> frames(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    const ObjectPose pose = object_pose(in, i);
    if constexpr (std::is_same_v<Frame, FlatFrame>)
      frames[static_cast<size_t>(i)] = make_flat_frame(pose.p0, pose.p1, pose.alpha, pose.flip_x, pose.flip_y);
    else
      frames[static_cast<size_t>(i)] = make_sphere_frame(*in.geometry, in.projection == Projection::Zea, pose.p0,
                                                         pose.p1, pose.alpha, pose.flip_x, pose.flip_y);
  }
  dispatch_map_sampler(in, [&](const auto& map) {
    switch (in.interpolation) {
      case Interpolation::Nearest:
        return object_rings<Interpolation::Nearest>(map, frames, radii, in.step, rings, C, S);
      case Interpolation::Bilinear:
        return object_rings<Interpolation::Bilinear>(map, frames, radii, in.step, rings, C, S);
      case Interpolation::Bicubic:
        return object_rings<Interpolation::Bicubic>(map, frames, radii, in.step, rings, C, S);
    }
    fail("interpolation: unknown code ", int(in.interpolation));
  });
}

}  // namespace

void object_multipoles_cpu(const StackInputs& in, const TensorView& radii, int64_t n_theta, int64_t m_max,
                           const TensorView& C, const TensorView& S) {
  const int64_t R = radii.sizes[0];
  std::vector<double> r(static_cast<size_t>(R));
  for (int64_t k = 0; k < R; ++k) {
    r[static_cast<size_t>(k)] = radii.ptr<const double>()[k * radii.strides[0]];
    FBK_CHECK(std::isfinite(r[static_cast<size_t>(k)]) && r[static_cast<size_t>(k)] >= 0.0, "radii: entry ", k,
              " must be finite and >= 0, got ", r[static_cast<size_t>(k)]);
  }
  const RingHarmonics rings(n_theta, m_max);
  if (in.projection == Projection::Flat)
    object_multipoles_with_frames<FlatFrame>(in, r, rings, C, S);
  else
    object_multipoles_with_frames<SphereFrame>(in, r, rings, C, S);
}

}  // namespace fbk
