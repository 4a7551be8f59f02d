// The `stacking` family: oriented stacking of sky maps. A gather kernel samples, for every
// object, a (2n+1)² grid of offsets rotated by the object's angle and optionally flipped, and
// accumulates w·m·f and w·m per group (m = 1 for a valid sample, 0 otherwise).
// Per-sample math (coordinates, interpolation stencils) lives here, shared by the CPU kernel
// and the future CUDA kernel; entry points are implemented in <op>_cpu.cpp (and <op>_cuda.cu).
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>

#include "common/macros.h"
#include "common/tensor_view.h"

namespace fbk {

// Codes must match feedbackkit/stacking/__init__.py::_INTERPOLATION.
enum class Interpolation : int { Nearest = 0, Bilinear = 1, Bicubic = 2 };

// Number of taps per axis of each interpolation.
FBK_HD_INLINE constexpr int stencil_taps(Interpolation interp) {
  return interp == Interpolation::Nearest ? 1 : interp == Interpolation::Bilinear ? 2 : 4;
}

// Keys (1981) cubic convolution kernel with a = -0.5 at the four taps floor(x)-1 .. floor(x)+2,
// for t = x - floor(x) in [0, 1). Reproduces polynomials of degree <= 2 exactly and
// interpolates (t = 0 gives the weights 0, 1, 0, 0).
FBK_HD_INLINE void keys_weights(double t, double* w) {
  w[0] = ((-0.5 * t + 1.0) * t - 0.5) * t;
  w[1] = (1.5 * t - 2.5) * t * t + 1.0;
  w[2] = ((-1.5 * t + 2.0) * t + 0.5) * t;
  w[3] = (0.5 * t - 0.5) * t * t;
}

// Interpolation stencil along one axis at coordinate x (pixel centres at integers): writes the
// K = stencil_taps(I) weights and returns the index of the first tap.
//   nearest:  the pixel floor(x + 0.5) (ties round up), weight 1;
//   bilinear: floor(x), floor(x) + 1 with weights 1 - t, t;
//   bicubic:  floor(x) - 1 .. floor(x) + 2 with Keys weights.
// Callers guarantee x is finite and small enough for int64.
FBK_HD_INLINE int64_t floor_index(double x) {
  const int64_t i = static_cast<int64_t>(x);  // truncates toward zero
  return i - static_cast<int64_t>(x < static_cast<double>(i));
}

template <Interpolation I>
FBK_HD_INLINE int64_t stencil(double x, double* w) {
  if constexpr (I == Interpolation::Nearest) {
    w[0] = 1.0;
    return floor_index(x + 0.5);
  } else if constexpr (I == Interpolation::Bilinear) {
    const int64_t i = floor_index(x);
    const double t = x - static_cast<double>(i);
    w[0] = 1.0 - t;
    w[1] = t;
    return i;
  } else {
    const int64_t i = floor_index(x);
    keys_weights(x - static_cast<double>(i), w);
    return i - 1;
  }
}

// One object's sampling frame: output pixel [a, b] has offsets u = (b - n)·step,
// v = (a - n)·step; with u' = flip_x·u, v' = flip_y·v it samples
//   x = x0 + u'·cos α − v'·sin α,   y = y0 + u'·sin α + v'·cos α.
struct StackFrame {
  double x0, y0, cos_a, sin_a, flip_x, flip_y;

  // Start of output row a (offset v): the point with u = 0.
  FBK_HD void row_origin(double v, double& x, double& y) const {
    const double vv = flip_y * v;
    x = x0 - vv * sin_a;
    y = y0 + vv * cos_a;
  }
  // Sample at offset u along a row whose origin is (rx, ry).
  FBK_HD void sample(double rx, double ry, double u, double& x, double& y) const {
    const double uu = flip_x * u;
    x = rx + uu * cos_a;
    y = ry + uu * sin_a;
  }
};

// maps [B, ny, nx] float32/float64; positions [N, 2] (y, x) float64; angles [N] float64;
// flips [N, 2] (flip_x, flip_y) float64 of ±1; weights [N] float64 >= 0; groups [N] int64 in
// [0, G); mask [ny, nx] bool/uint8/int32/int64 (nonzero = valid). Writes (overwrites)
// sum [G, B, P, P] float64, weight_sum [G, P, P] float64 and count [G] int64, P = 2n + 1.
void oriented_stack_cpu(const TensorView& maps, const TensorView& positions, const TensorView& angles,
                        const std::optional<TensorView>& flips, const std::optional<TensorView>& weights,
                        const std::optional<TensorView>& groups, const std::optional<TensorView>& mask,
                        int64_t half_width, double step, Interpolation interpolation, const TensorView& sum,
                        const TensorView& weight_sum, const TensorView& count);

// Ring multipoles of square images. image [M, P, P] float32/float64 (P = 2n + 1, centre at pixel
// (n, n)); radii [R] float64 in [0, n]; n_theta >= 1 samples at θ_j = 2πj/n_theta with
// x = n + r cos θ (column), y = n + r sin θ (row), bilinear interpolation (pixels with a zero
// weight are never read). Writes (overwrites) C, S [M, m_max + 1, R] float64:
//   C_0 = (1/n_θ) Σ f,  C_m = (2/n_θ) Σ f cos mθ,  S_m = (2/n_θ) Σ f sin mθ (m >= 1),  S_0 = 0.
// A NaN pixel with a nonzero weight makes that ring's values NaN. fp64 accumulation in sample
// order; OpenMP over (image, radius) pairs, each owned by one thread, so results are bitwise
// identical for every thread count.
void multipoles_cpu(const TensorView& image, const TensorView& radii, int64_t n_theta, int64_t m_max,
                    const TensorView& C, const TensorView& S);

}  // namespace fbk
