// Bindings of the `stacking` family, shared by both modules. Uses the macros documented in
// reward_bindings.h (FBK_KERNEL, FBK_STREAM_PARAM, FBK_STREAM_ARG, FBK_UNLOCK) and
// compress_bindings.h (FBK_WORKSPACE_PARAM, FBK_WORKSPACE_ARG); bind_stacking is told the device
// of the module's kernels, which every view must be on (radii included).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <optional>

#include "bindings/view_caster.h"
#include "common/checks.h"
#include "stacking/stacking.h"

namespace fbk {

// The inputs of oriented_stack / object_multipoles with their shapes, dtypes and devices
// checked (values are checked by the kernels).
inline StackInputs stack_inputs(const TensorView& maps, const TensorView& positions, const TensorView& angles,
                                const std::optional<TensorView>& flips, const std::optional<TensorView>& weights,
                                const std::optional<TensorView>& groups, const std::optional<TensorView>& mask,
                                int64_t half_width, double step, int interpolation, int projection,
                                const std::optional<std::array<double, 9>>& geometry, DeviceType device) {
  check_ndim(maps, "maps", 3);
  check_dtype(maps, "maps", {DType::Float32, DType::Float64});
  check_device(maps, "maps", device);
  const int64_t B = maps.sizes[0], ny = maps.sizes[1], nx = maps.sizes[2];
  FBK_CHECK(B >= 1 && ny >= 1 && nx >= 1, "maps: expected a non-empty [B, ny, nx] array");
  FBK_CHECK(half_width >= 0, "half_width: expected >= 0, got ", half_width);
  FBK_CHECK(std::isfinite(step) && step > 0, "step: expected a finite value > 0, got ", step);
  FBK_CHECK(interpolation >= 0 && interpolation <= 2, "interpolation: unknown code ", interpolation);
  FBK_CHECK(projection >= 0 && projection <= 2, "projection: unknown code ", projection);
  FBK_CHECK((projection == 0) == !geometry, "geometry: expected one exactly for the tan and zea projections");
  if (geometry) {
    const auto& g = *geometry;
    for (double v : g) FBK_CHECK(std::isfinite(v), "geometry: expected finite values");
    FBK_CHECK(g[0] == 0.0 || g[0] == 1.0, "geometry: unknown sky projection code ", g[0]);
  }

  check_ndim(positions, "positions", 2);
  check_size(positions, "positions", 1, 2);
  check_dtype(positions, "positions", {DType::Float64});
  check_device(positions, "positions", device);
  const int64_t N = positions.sizes[0];
  const auto per_object = [&](const TensorView& v, const char* name, int ndim, DType dtype) {
    check_ndim(v, name, ndim);
    check_size(v, name, 0, N);
    if (ndim == 2) check_size(v, name, 1, 2);
    check_dtype(v, name, {dtype});
    check_device(v, name, device);
  };
  per_object(angles, "angles", 1, DType::Float64);
  if (flips) per_object(*flips, "flips", 2, DType::Float64);
  if (weights) per_object(*weights, "weights", 1, DType::Float64);
  if (groups) per_object(*groups, "groups", 1, DType::Int64);
  if (mask) check_view(*mask, "mask", {ny, nx}, {DType::Bool, DType::UInt8, DType::Int32, DType::Int64}, device);
  return StackInputs{maps,
                     positions,
                     angles,
                     flips,
                     weights,
                     groups,
                     mask,
                     half_width,
                     step,
                     static_cast<Interpolation>(interpolation),
                     static_cast<Projection>(projection),
                     geometry ? std::optional<MapGeometry>(map_geometry(geometry->data())) : std::nullopt};
}

inline void check_stack_outputs(const StackInputs& in, const TensorView& sum, const TensorView& weight_sum,
                                const TensorView& count, DeviceType device) {
  FBK_CHECK(in.half_width >= 1, "half_width: expected >= 1, got ", in.half_width);
  const int64_t P = 2 * in.half_width + 1;
  check_ndim(count, "count", 1);
  check_dtype(count, "count", {DType::Int64});
  check_device(count, "count", device);
  const int64_t G = count.sizes[0];
  FBK_CHECK(G >= 1, "count: expected at least one group");
  check_view(sum, "sum", {G, in.maps.sizes[0], P, P}, {DType::Float64}, device);
  check_view(weight_sum, "weight_sum", {G, P, P}, {DType::Float64}, device);
}

// C, S [N, B, m_max + 1, R] float64 of object_multipoles.
inline void check_object_multipoles(const StackInputs& in, const TensorView& radii, int64_t n_theta, int64_t m_max,
                                    const TensorView& C, const TensorView& S, DeviceType device) {
  check_ndim(radii, "radii", 1);
  check_dtype(radii, "radii", {DType::Float64});
  check_device(radii, "radii", device);
  FBK_CHECK(n_theta >= 1, "n_theta: expected >= 1, got ", n_theta);
  FBK_CHECK(m_max >= 0, "m_max: expected >= 0, got ", m_max);
  for (const auto* out : {&C, &S})
    check_view(*out, out == &C ? "C" : "S", {in.positions.sizes[0], in.maps.sizes[0], m_max + 1, radii.sizes[0]},
               {DType::Float64}, device);
}

// Shapes, dtypes and devices of multipoles' views (radii values are checked by the kernel).
inline void check_multipoles(const TensorView& image, const TensorView& radii, int64_t n_theta, int64_t m_max,
                             const TensorView& C, const TensorView& S, DeviceType device) {
  check_ndim(image, "image", 3);
  check_dtype(image, "image", {DType::Float32, DType::Float64});
  check_device(image, "image", device);
  const int64_t M = image.sizes[0], P = image.sizes[1];
  FBK_CHECK(P >= 1 && P % 2 == 1, "image: expected odd P = 2n + 1, got ", P);
  check_size(image, "image", 2, P);
  check_ndim(radii, "radii", 1);
  check_dtype(radii, "radii", {DType::Float64});
  check_device(radii, "radii", device);
  const int64_t R = radii.sizes[0];
  FBK_CHECK(n_theta >= 1, "n_theta: expected >= 1, got ", n_theta);
  FBK_CHECK(m_max >= 0, "m_max: expected >= 0, got ", m_max);
  for (const auto* out : {&C, &S}) {
    const char* name = out == &C ? "C" : "S";
    check_ndim(*out, name, 3);
    check_dtype(*out, name, {DType::Float64});
    check_device(*out, name, device);
    check_size(*out, name, 0, M);
    check_size(*out, name, 1, m_max + 1);
    check_size(*out, name, 2, R);
  }
}

inline void bind_stacking(pybind11::module_& m, DeviceType device) {
  using TV = const TensorView&;
  using OTV = const std::optional<TensorView>&;
  m.def(
      "oriented_stack",
      [device](TV maps, TV positions, TV angles, OTV flips, OTV weights, OTV groups, OTV mask, int64_t half_width,
               double step, int interpolation, int projection, const std::optional<std::array<double, 9>>& geometry,
               TV sum, TV weight_sum, TV count FBK_WORKSPACE_PARAM FBK_STREAM_PARAM) {
        const StackInputs in = stack_inputs(maps, positions, angles, flips, weights, groups, mask, half_width, step,
                                            interpolation, projection, geometry, device);
        check_stack_outputs(in, sum, weight_sum, count, device);
        FBK_UNLOCK;
        FBK_KERNEL(oriented_stack)(in, sum, weight_sum, count FBK_WORKSPACE_ARG FBK_STREAM_ARG);
      },
      "Oriented stack of maps [B, ny, nx] around positions [N, 2]; writes sum [G, B, P, P], "
      "weight_sum [G, P, P] and count [G] (P = 2 * half_width + 1).");
  m.def(
      "object_multipoles",
      [device](TV maps, TV positions, TV angles, OTV flips, OTV mask, double step, int interpolation, int projection,
               const std::optional<std::array<double, 9>>& geometry, TV radii, int64_t n_theta, int64_t m_max, TV C,
               TV S FBK_WORKSPACE_PARAM FBK_STREAM_PARAM) {
        const StackInputs in = stack_inputs(maps, positions, angles, flips, std::nullopt, std::nullopt, mask, 0, step,
                                            interpolation, projection, geometry, device);
        check_object_multipoles(in, radii, n_theta, m_max, C, S, device);
        FBK_UNLOCK;
        FBK_KERNEL(object_multipoles)(in, radii, n_theta, m_max, C, S FBK_WORKSPACE_ARG FBK_STREAM_ARG);
      },
      "Ring multipoles of every object straight from the map; writes C, S [N, B, m_max + 1, R].");
  m.def(
      "multipoles",
      [device](TV image, TV radii, int64_t n_theta, int64_t m_max, TV C, TV S FBK_WORKSPACE_PARAM FBK_STREAM_PARAM) {
        check_multipoles(image, radii, n_theta, m_max, C, S, device);
        FBK_UNLOCK;
        FBK_KERNEL(multipoles)(image, radii, n_theta, m_max, C, S FBK_WORKSPACE_ARG FBK_STREAM_ARG);
      },
      "Ring multipoles of images [M, P, P] at radii [R]; writes C, S [M, m_max + 1, R].");
}

}  // namespace fbk
