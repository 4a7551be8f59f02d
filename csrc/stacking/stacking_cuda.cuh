// CUDA helpers shared by the kernels of the `stacking` family: objects' poses read on the device
// (validated into a flag, since a kernel cannot raise), their frames, and grid sizes.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "stacking/stacking.h"

namespace fbk {

// Device pointers and strides of the per-object inputs; optional ones are nullptr when absent.
struct PoseViews {
  const double* positions;
  int64_t ps0, ps1;
  const double* angles;
  int64_t as0;
  const double* flips;  // nullptr: no flips
  int64_t fs0, fs1;
  const double* weights;  // nullptr: weight 1
  int64_t ws0;
  const int64_t* groups;  // nullptr: group 0
  int64_t gs0;
  bool sphere;  // positions are (dec, ra) radians
};

inline PoseViews pose_views(const StackInputs& in) {
  PoseViews v{};
  v.positions = in.positions.ptr<const double>();
  v.ps0 = in.positions.strides[0];
  v.ps1 = in.positions.strides[1];
  v.angles = in.angles.ptr<const double>();
  v.as0 = in.angles.strides[0];
  if (in.flips) {
    v.flips = in.flips->ptr<const double>();
    v.fs0 = in.flips->strides[0];
    v.fs1 = in.flips->strides[1];
  }
  if (in.weights) {
    v.weights = in.weights->ptr<const double>();
    v.ws0 = in.weights->strides[0];
  }
  if (in.groups) {
    v.groups = in.groups->ptr<const int64_t>();
    v.gs0 = in.groups->strides[0];
  }
  v.sphere = in.projection != Projection::Flat;
  return v;
}

// Object i's pose, weight and group, with the checks the CPU kernels raise on folded into `ok`.
struct DevicePose {
  double p0, p1, alpha, flip_x, flip_y, weight;
  int64_t group;
  bool ok;
};

__device__ inline DevicePose read_pose(const PoseViews& v, int64_t i, int64_t num_groups) {
  DevicePose p;
  p.p0 = v.positions[i * v.ps0];
  p.p1 = v.positions[i * v.ps0 + v.ps1];
  p.alpha = v.angles[i * v.as0];
  p.flip_x = v.flips ? v.flips[i * v.fs0] : 1.0;
  p.flip_y = v.flips ? v.flips[i * v.fs0 + v.fs1] : 1.0;
  p.weight = v.weights ? v.weights[i * v.ws0] : 1.0;
  p.group = v.groups ? v.groups[i * v.gs0] : 0;
  p.ok = isfinite(p.p0) && isfinite(p.p1) && isfinite(p.alpha) && (p.flip_x == 1.0 || p.flip_x == -1.0) &&
         (p.flip_y == 1.0 || p.flip_y == -1.0) && isfinite(p.weight) && p.weight >= 0.0 && p.group >= 0 &&
         p.group < num_groups && (!v.sphere || fabs(p.p0) <= 1.5707963267948966);
  return p;
}

// The sampling frame of a pose: flat, or on the sphere through `map` (TAN or ZEA plane).
template <class Frame>
__device__ inline Frame pose_frame(const DevicePose& p, const MapGeometry& map, bool zea) {
  if constexpr (std::is_same_v<Frame, FlatFrame>)
    return make_flat_frame(p.p0, p.p1, p.alpha, p.flip_x, p.flip_y);
  else
    return make_sphere_frame(map, zea, p.p0, p.p1, p.alpha, p.flip_x, p.flip_y);
}

// Calls fn(TypeTag<Frame>{}) for the frame type of the projection.
template <class Fn>
void dispatch_frame(Projection projection, Fn&& fn) {
  if (projection == Projection::Flat)
    fn(TypeTag<FlatFrame>{});
  else
    fn(TypeTag<SphereFrame>{});
}

// Calls fn(std::integral_constant<Interpolation, I>{}) for the interpolation code.
template <class Fn>
void dispatch_interpolation(Interpolation interpolation, Fn&& fn) {
  switch (interpolation) {
    case Interpolation::Nearest: return fn(std::integral_constant<Interpolation, Interpolation::Nearest>{});
    case Interpolation::Bilinear: return fn(std::integral_constant<Interpolation, Interpolation::Bilinear>{});
    case Interpolation::Bicubic: return fn(std::integral_constant<Interpolation, Interpolation::Bicubic>{});
  }
  fail("interpolation: unknown code ", int(interpolation));
}

// Blocks of `threads` for a grid-stride loop over `n` items (capped; kernels stride over the rest).
inline unsigned stride_blocks(int64_t n, int threads) {
  return unsigned(std::clamp<int64_t>((n + threads - 1) / threads, 1, 65535));
}

// Raises on a workspace that is too small, not a uint8 device buffer, or misaligned.
inline void check_workspace(const TensorView& workspace, int64_t bytes, const char* query) {
  FBK_CHECK(workspace.dtype == DType::UInt8 && workspace.device_type == DeviceType::CUDA && workspace.numel() >= bytes,
            "workspace: expected a CUDA uint8 buffer of at least ", bytes, " bytes (", query, ")");
  FBK_CHECK(reinterpret_cast<uintptr_t>(workspace.data) % 256 == 0, "workspace: expected 256-byte alignment");
}

// Raises if a CUB call failed.
inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

}  // namespace fbk
