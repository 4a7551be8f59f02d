// The `stacking` family: oriented stacking of sky maps. A gather kernel samples, for every
// object, a (2n+1)² grid of offsets rotated by the object's angle and optionally flipped, and
// accumulates w·m·f and w·m per group (m = 1 for a valid sample, 0 otherwise).
// Per-sample math (coordinates, interpolation stencils) lives here, shared by the CPU kernel
// and CUDA kernels; entry points are implemented in <op>_cpu.cpp and <op>_cuda.cu.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>

#include "common/macros.h"
#include "common/tensor_view.h"

namespace fbk {

// Codes must match feedbackkit/stacking/__init__.py::_INTERPOLATION.
enum class Interpolation : int { Nearest = 0, Bilinear = 1, Bicubic = 2 };

// Objects per chunk of the oriented stack: each output element is Σ over chunks, in chunk order,
// of the chunk's objects summed in index order. CPU and CUDA use the same chunks, so their fp64
// sums are the same bits.
constexpr int64_t kStackChunk = 256;

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

// Where the stack samples the map. Output pixel [a, b] has offsets u = (b − n)·step,
// v = (a − n)·step; a frame turns (u, v) into fractional map pixel coordinates (x, y), or
// returns false when the offset has no image on the map (a masked sample).

// Flat sky: with u' = flip_x·u, v' = flip_y·v,
//   x = x0 + u'·cos α − v'·sin α,   y = y0 + u'·sin α + v'·cos α.
struct FlatFrame {
  double x0, y0, cos_a, sin_a, flip_x, flip_y;

  FBK_HD bool locate(double u, double v, double& x, double& y) const {
    const double uu = flip_x * u, vv = flip_y * v;
    x = x0 + uu * cos_a - vv * sin_a;
    y = y0 + uu * sin_a + vv * cos_a;
    return true;
  }
};

FBK_HD_INLINE FlatFrame make_flat_frame(double y0, double x0, double alpha, double flip_x, double flip_y) {
  return FlatFrame{x0, y0, cos(alpha), sin(alpha), flip_x, flip_y};
}

// Codes must match feedbackkit/stacking/__init__.py::_PROJECTIONS and geometry.py::_CODES.
enum class Projection : int { Flat = 0, Tan = 1, Zea = 2 };
enum class SkyProjection : int { Car = 0, Tan = 1 };

// A map's pixel <-> sky relation (feedbackkit/stacking/geometry.py::MapGeometry.native()):
// intermediate coordinates (ξ, η) in radians (CAR: ξ = ra − ra0 wrapped into [−π, π],
// η = dec; TAN: the gnomonic projection about (ra0, dec0)), then
//   x = cx + m00·ξ + m01·η,   y = cy + m10·ξ + m11·η   (m: pixels per radian).
struct MapGeometry {
  SkyProjection sky;
  double ra0, dec0, cx, cy, m00, m01, m10, m11;
};

// The float64 [9] vector of MapGeometry.native(): code, ra0, dec0, cx, cy, m00, m01, m10, m11.
FBK_HD_INLINE MapGeometry map_geometry(const double* g) {
  return MapGeometry{static_cast<SkyProjection>(static_cast<int>(g[0])), g[1], g[2], g[3], g[4], g[5], g[6], g[7],
                     g[8]};
}

// Spherical sky: the stack is a tangent plane (TAN, gnomonic) or a zenithal equal-area plane
// (ZEA) centred on the object, with (u, v) in radians. Its axes are the map's local pixel axes
// at the object: +u along east if the map's x grows with RA (m00 >= 0), else west; +v along
// north if y grows with dec (m11 >= 0), else south; then flipped and rotated by α as in the
// flat frame. A plane point (e, n) at ρ² = e² + n² is the direction
//   TAN: (e, n, 1) (unnormalised),   ZEA: (e·√(1 − ρ²/4), n·√(1 − ρ²/4), 1 − ρ²/2), ρ ≤ 2,
// in the object's (east, north, centre) frame. The frame stores the images of the plane's unit
// u and v directions (du, dv) and of the centre (r) in the map's own frame: CAR (towards ra0
// on the equator, 90° east of it, north pole); TAN (east, north, centre at (ra0, dec0)).
struct SphereFrame {
  double du[3], dv[3], r[3];
  MapGeometry map;
  bool zea;

  FBK_HD bool locate(double u, double v, double& x, double& y) const {
    double k = 1.0, w = 1.0;
    if (zea) {
      const double rho2 = u * u + v * v;
      if (!(rho2 <= 4.0)) return false;
      k = sqrt(1.0 - 0.25 * rho2);
      w = 1.0 - 0.5 * rho2;
    }
    double q[3];
    for (int i = 0; i < 3; ++i) q[i] = k * (du[i] * u + dv[i] * v) + w * r[i];
    double xi, eta;
    if (map.sky == SkyProjection::Tan) {
      if (!(q[2] > 0.0)) return false;  // the far hemisphere has no gnomonic image
      xi = q[0] / q[2];
      eta = q[1] / q[2];
    } else {
      xi = atan2(q[1], q[0]);
      // |q| is about 1 (ZEA) or between 1 and √(1 + ρ²) (TAN): no overflow without hypot.
      eta = atan2(q[2], sqrt(q[0] * q[0] + q[1] * q[1]));
    }
    x = map.cx + map.m00 * xi + map.m01 * eta;
    y = map.cy + map.m10 * xi + map.m11 * eta;
    return true;
  }
};

// The frame of an object at (dec, ra) (radians) with orientation α and flips, on `map`.
FBK_HD_INLINE SphereFrame make_sphere_frame(const MapGeometry& map, bool zea, double dec, double ra, double alpha,
                                            double flip_x, double flip_y) {
  const double cd = cos(dec), sd = sin(dec), cr = cos(ra), sr = sin(ra);
  const double east[3] = {-sr, cr, 0.0}, north[3] = {-sd * cr, -sd * sr, cd}, centre[3] = {cd * cr, cd * sr, sd};
  // Rows of the map frame, in equatorial coordinates.
  const double c0 = cos(map.ra0), s0 = sin(map.ra0), cd0 = cos(map.dec0), sd0 = sin(map.dec0);
  double F[3][3];
  if (map.sky == SkyProjection::Tan) {
    const double rows[3][3] = {{-s0, c0, 0.0}, {-sd0 * c0, -sd0 * s0, cd0}, {cd0 * c0, cd0 * s0, sd0}};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) F[i][j] = rows[i][j];
  } else {
    const double rows[3][3] = {{c0, s0, 0.0}, {-s0, c0, 0.0}, {0.0, 0.0, 1.0}};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) F[i][j] = rows[i][j];
  }
  // (e, n) = diag(sx, sy) · Rot(α) · diag(flip_x, flip_y) · (u, v).
  const double sx = map.m00 >= 0.0 ? 1.0 : -1.0, sy = map.m11 >= 0.0 ? 1.0 : -1.0;
  const double ca = cos(alpha), sa = sin(alpha);
  const double ue = sx * flip_x * ca, un = sy * flip_x * sa, ve = -sx * flip_y * sa, vn = sy * flip_y * ca;
  SphereFrame f{};
  for (int i = 0; i < 3; ++i) {
    double du = 0.0, dv = 0.0, r = 0.0;
    for (int j = 0; j < 3; ++j) {
      du += F[i][j] * (ue * east[j] + un * north[j]);
      dv += F[i][j] * (ve * east[j] + vn * north[j]);
      r += F[i][j] * centre[j];
    }
    f.du[i] = du;
    f.dv[i] = dv;
    f.r[i] = r;
  }
  f.map = map;
  f.zea = zea;
  return f;
}

// Interpolated reads of maps [B, ny, nx] (T = float/double) under an optional validity mask
// [ny, nx] (M; nullptr = every pixel valid).
template <Interpolation I>
struct Stencil {
  static constexpr int K = stencil_taps(I);
  int64_t ix, iy;
  double wx[K], wy[K];
};

template <class T, class M>
struct MapSampler {
  const T* maps;
  int64_t B, ny, nx, s0, s1, s2;
  const M* mask;
  int64_t k0, k1;

  // The stencil at (x, y); false (a masked sample) unless every pixel with a nonzero weight is
  // inside the map and valid in the mask. Coordinates far outside (or NaN) fail early, before
  // any conversion to int64.
  template <Interpolation I>
  FBK_HD bool at(double x, double y, Stencil<I>& s) const {
    constexpr int K = Stencil<I>::K;
    if (!(x > -3.0 && x < double(nx) + 2.0 && y > -3.0 && y < double(ny) + 2.0)) return false;
    s.ix = stencil<I>(x, s.wx);
    s.iy = stencil<I>(y, s.wy);
    // Stencils entirely inside an unmasked map need no per-pixel test.
    if (mask == nullptr && s.ix >= 0 && s.ix + K <= nx && s.iy >= 0 && s.iy + K <= ny) return true;
    for (int j = 0; j < K; ++j) {
      if (s.wy[j] == 0.0) continue;
      const int64_t yy = s.iy + j;
      if (yy < 0 || yy >= ny) return false;
      for (int k = 0; k < K; ++k) {
        if (s.wx[k] == 0.0) continue;
        const int64_t xx = s.ix + k;
        if (xx < 0 || xx >= nx || (mask != nullptr && mask[yy * k0 + xx * k1] == 0)) return false;
      }
    }
    return true;
  }

  // Separable interpolation of map c; pixels with a zero weight are never read.
  template <Interpolation I>
  FBK_HD double value(const Stencil<I>& s, int64_t c) const {
    constexpr int K = Stencil<I>::K;
    double f = 0.0;
    for (int j = 0; j < K; ++j) {
      if (s.wy[j] == 0.0) continue;
      const T* row = maps + c * s0 + (s.iy + j) * s1;
      double r = 0.0;
      for (int k = 0; k < K; ++k)
        if (s.wx[k] != 0.0) r += s.wx[k] * static_cast<double>(row[(s.ix + k) * s2]);
      f += s.wy[j] * r;
    }
    return f;
  }
};

// maps [B, ny, nx] float32/float64; positions [N, 2] float64: (y, x) in pixels for the flat
// projection, (dec, ra) in radians for TAN/ZEA; angles [N] float64; flips [N, 2] (flip_x,
// flip_y) float64 of ±1; weights [N] float64 >= 0; groups [N] int64 in [0, G); mask [ny, nx]
// bool/uint8/int32/int64 (nonzero = valid); geometry: MapGeometry.native() (TAN/ZEA only).
// Writes (overwrites) sum [G, B, P, P] float64, weight_sum [G, P, P] float64 and count [G]
// int64, P = 2n + 1.
struct StackInputs {
  TensorView maps, positions, angles;
  std::optional<TensorView> flips, weights, groups, mask;
  int64_t half_width;
  double step;
  Interpolation interpolation;
  Projection projection;
  std::optional<MapGeometry> geometry;
};

void oriented_stack_cpu(const StackInputs& in, const TensorView& sum, const TensorView& weight_sum,
                        const TensorView& count);

// Ring multipoles of every object straight from the map (no cutouts): the ring of radius r
// (radii [R] float64 >= 0, in units of `step`) is sampled at θ_j = 2πj/n_theta at the offsets
// u = r·step·cos θ_j, v = r·step·sin θ_j of the object's frame (as oriented_stack, whose
// half_width and weights/groups are ignored), with the given interpolation. Writes C, S
// [N, B, m_max + 1, R] float64 with the normalisation of multipoles_cpu; a ring with any masked
// or off-map sample is NaN. OpenMP over (object, radius) pairs.
void object_multipoles_cpu(const StackInputs& in, const TensorView& radii, int64_t n_theta, int64_t m_max,
                           const TensorView& C, const TensorView& S);

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

// The normalised harmonics of one ring from its sums sc = Σ f cos mθ, sn = Σ f sin mθ over
// n_theta samples: C_m = (1 or 2)/n_θ · sc, S_m = 2/n_θ · sn, S_0 = 0 (NaN for a NaN ring).
FBK_HD_INLINE void ring_harmonic(int64_t m, int64_t n_theta, double sc, double sn, double& c, double& s) {
  const double norm = (m == 0 ? 1.0 : 2.0) / double(n_theta);
  c = norm * sc;
  s = m == 0 ? (sc != sc ? sc : 0.0) : norm * sn;
}

// CUDA variants: the same outputs from device views, launched on `stream` without a host sync.
// `workspace` is a uint8 device buffer of at least the matching *_workspace_bytes. Per-object
// values are not validated (that needs a host sync): an object with a non-finite position, angle
// or weight, |dec| > π/2 on the sphere, a flip other than ±1, a negative weight or a group outside
// [0, G) contributes nothing to oriented_stack and is not counted; its object_multipoles rings are
// NaN. Radii are read on the device (not validated; an off-image ring sample is NaN).
//
// oriented_stack_cuda uses the CPU kernel's chunks of kStackChunk objects and its summation order,
// so each output element adds the same partial sums in the same order; both are bitwise
// deterministic. They agree to rounding: the device rounds per-sample products differently (FMA
// contraction) and its cos, sin and atan2 may differ from the host's by an ulp.
int64_t oriented_stack_workspace_bytes(int64_t n_objects, int64_t num_groups, int64_t num_maps, int64_t half_width,
                                       Projection projection);
void oriented_stack_cuda(const StackInputs& in, const TensorView& sum, const TensorView& weight_sum,
                         const TensorView& count, const TensorView& workspace, uintptr_t stream);

// Workspace of multipoles_cuda and object_multipoles_cuda: the cos / sin tables of the rings.
int64_t multipoles_workspace_bytes(int64_t n_theta, int64_t m_max);
void object_multipoles_cuda(const StackInputs& in, const TensorView& radii, int64_t n_theta, int64_t m_max,
                            const TensorView& C, const TensorView& S, const TensorView& workspace, uintptr_t stream);
void multipoles_cuda(const TensorView& image, const TensorView& radii, int64_t n_theta, int64_t m_max,
                     const TensorView& C, const TensorView& S, const TensorView& workspace, uintptr_t stream);

}  // namespace fbk
