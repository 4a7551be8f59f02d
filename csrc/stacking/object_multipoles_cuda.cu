// Per-object ring multipoles straight from the map on the GPU: thread per (object, map, radius)
// samples the ring through the object's frame, as object_multipoles_cpu.
#include <limits>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "stacking/ring_multipoles_cuda.cuh"
#include "stacking/stacking.h"
#include "stacking/stacking_cpu.h"
#include "stacking/stacking_cuda.cuh"

namespace fbk {
namespace {

// Rings of objects (task = (i·B + c)·R + k) at radii [R] in units of `step`; an invalid object's
// rings are NaN.
template <Interpolation I, class T, class M, class Frame>
struct ObjectRings {
  MapSampler<T, M> map;
  PoseViews poses;
  MapGeometry geometry;
  bool zea;
  double step;
  const double* radii;
  int64_t radii_stride, R;
  RingOut outputs;

  struct Ring {
    MapSampler<T, M> map;
    Frame frame;
    int64_t channel;
    double r;
    bool ok;

    __device__ double sample(double cos_t, double sin_t) const {
      double x, y;
      Stencil<I> s;
      return ok && frame.locate(r * cos_t, r * sin_t, x, y) && map.at(x, y, s)
                 ? map.value(s, channel)
                 : std::numeric_limits<double>::quiet_NaN();
    }
  };

  __device__ Ring ring(int64_t task) const {
    const int64_t i = task / (map.B * R);
    const DevicePose p = read_pose(poses, i, 1);
    return Ring{map, pose_frame<Frame>(p, geometry, zea), (task / R) % map.B, radii[(task % R) * radii_stride] * step,
                p.ok};
  }

  __device__ void out(int64_t task, int64_t m, double*& c, double*& s) const {
    outputs.at(task / (map.B * R), (task / R) % map.B, m, task % R, c, s);
  }
};

template <Interpolation I, class Frame, class T, class M>
ObjectRings<I, T, M, Frame> object_rings(const MapSampler<T, M>& map, const StackInputs& in, const PoseViews& poses,
                                         const TensorView& radii, const TensorView& C, const TensorView& S) {
  return ObjectRings<I, T, M, Frame>{map,
                                     poses,
                                     in.geometry ? *in.geometry : MapGeometry{},
                                     in.projection == Projection::Zea,
                                     in.step,
                                     radii.ptr<const double>(),
                                     radii.strides[0],
                                     radii.sizes[0],
                                     ring_out(C, S)};
}

}  // namespace

void object_multipoles_cuda(const StackInputs& in, const TensorView& radii, int64_t n_theta, int64_t m_max,
                            const TensorView& C, const TensorView& S, const TensorView& workspace, uintptr_t stream) {
  const int64_t tasks = in.positions.sizes[0] * in.maps.sizes[0] * radii.sizes[0];
  const cudaStream_t s = as_stream(stream);
  const RingTables tables = ring_tables(workspace, n_theta, m_max, s);
  const PoseViews poses = pose_views(in);  // without weights or groups
  dispatch_frame(in.projection, [&](auto frame_tag) {
    using Frame = typename decltype(frame_tag)::type;
    dispatch_map_sampler(in, [&](const auto& map) {
      dispatch_interpolation(in.interpolation, [&](auto interpolation) {
        constexpr Interpolation I = decltype(interpolation)::value;
        launch_ring_multipoles(object_rings<I, Frame>(map, in, poses, radii, C, S), tables, tasks, s);
      });
    });
  });
}

}  // namespace fbk
