// Oriented stacking on the CPU. OpenMP runs over output rows: each output element is owned by
// one thread and accumulates the objects in index order, so the result is the same bits for
// every thread count and schedule.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/checks.h"
#include "common/dtype.h"
#include "stacking/stacking.h"

namespace fbk {

namespace {

struct StackObject {
  StackFrame frame;
  double weight;
  int64_t group;
};

// Strided views of the inputs and outputs the inner loop reads and writes.
template <class T, class M>
struct StackArgs {
  const T* maps;
  int64_t B, ny, nx, ms0, ms1, ms2;
  const M* mask;  // nullptr: every pixel valid
  int64_t ks0, ks1;
  double* sum;
  int64_t ss0, ss1, ss2, ss3;
  double* wsum;
  int64_t ws0, ws1, ws2;
  int64_t G, n;
  double step;
};

// Adds object `o`'s samples on output row a (offset v) into its group's row; returns whether any
// sample was valid.
template <Interpolation I, class T, class M>
bool stack_object_row(const StackArgs<T, M>& p, const StackObject& o, int64_t a) {
  constexpr int K = stencil_taps(I);
  const int64_t P = 2 * p.n + 1;
  // Coordinates beyond these bounds have a stencil entirely outside the map (and may be too large
  // for int64); NaN fails the comparisons too.
  const double x_lo = -3.0, x_hi = double(p.nx) + 2.0, y_lo = -3.0, y_hi = double(p.ny) + 2.0;
  double rx, ry;
  o.frame.row_origin(double(a - p.n) * p.step, rx, ry);
  double* sum_row = p.sum + o.group * p.ss0 + a * p.ss2;
  double* wsum_row = p.wsum + o.group * p.ws0 + a * p.ws1;
  bool any = false;
  for (int64_t b = 0; b < P; ++b) {
    double x, y;
    o.frame.sample(rx, ry, double(b - p.n) * p.step, x, y);
    if (!(x > x_lo && x < x_hi && y > y_lo && y < y_hi)) continue;
    double wx[K], wy[K];
    const int64_t ix = stencil<I>(x, wx);
    const int64_t iy = stencil<I>(y, wy);
    // Valid iff every pixel with a nonzero weight is inside the map and unmasked. Stencils
    // entirely inside an unmasked map need no per-pixel test.
    const bool interior = ix >= 0 && ix + K <= p.nx && iy >= 0 && iy + K <= p.ny;
    if (!interior || p.mask != nullptr) {
      bool ok = true;
      for (int j = 0; j < K && ok; ++j) {
        if (wy[j] == 0.0) continue;
        const int64_t yy = iy + j;
        if (yy < 0 || yy >= p.ny) ok = false;
        for (int k = 0; k < K && ok; ++k) {
          if (wx[k] == 0.0) continue;
          const int64_t xx = ix + k;
          ok = xx >= 0 && xx < p.nx && (p.mask == nullptr || p.mask[yy * p.ks0 + xx * p.ks1] != 0);
        }
      }
      if (!ok) continue;
    }
    // Separable interpolation; pixels with a zero weight are never read.
    for (int64_t c = 0; c < p.B; ++c) {
      double f = 0.0;
      for (int j = 0; j < K; ++j) {
        if (wy[j] == 0.0) continue;
        const T* row = p.maps + c * p.ms0 + (iy + j) * p.ms1;
        double r = 0.0;
        for (int k = 0; k < K; ++k)
          if (wx[k] != 0.0) r += wx[k] * to_acc<double>(row[(ix + k) * p.ms2]);
        f += wy[j] * r;
      }
      sum_row[c * p.ss1 + b * p.ss3] += o.weight * f;
    }
    wsum_row[b * p.ws2] += o.weight;
    any = true;
  }
  return any;
}

template <Interpolation I, class T, class M>
void stack_rows(const StackArgs<T, M>& p, const std::vector<StackObject>& objects,
                std::vector<unsigned char>& any_valid) {
  const int64_t P = 2 * p.n + 1;
  const int64_t N = static_cast<int64_t>(objects.size());
  // Tasks are blocks of kRowBlock output rows; inside one, objects are visited in blocks of
  // kObjectBlock for every row of the task, so an object's map footprint is reused from cache.
  // Each output pixel still adds the objects in index order, whatever the thread count.
  constexpr int64_t kRowBlock = 4, kObjectBlock = 16;
  const int64_t tasks = (P + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t a_begin = task * kRowBlock, a_end = std::min(P, a_begin + kRowBlock);
    for (int64_t a = a_begin; a < a_end; ++a)
      for (int64_t g = 0; g < p.G; ++g) {
        for (int64_t b = 0; b < P; ++b) p.wsum[g * p.ws0 + a * p.ws1 + b * p.ws2] = 0.0;
        for (int64_t c = 0; c < p.B; ++c)
          for (int64_t b = 0; b < P; ++b) p.sum[g * p.ss0 + c * p.ss1 + a * p.ss2 + b * p.ss3] = 0.0;
      }
    for (int64_t i_begin = 0; i_begin < N; i_begin += kObjectBlock) {
      const int64_t i_end = std::min(N, i_begin + kObjectBlock);
      for (int64_t a = a_begin; a < a_end; ++a)
        for (int64_t i = i_begin; i < i_end; ++i)
          if (stack_object_row<I>(p, objects[static_cast<size_t>(i)], a)) {
#pragma omp atomic write
            any_valid[static_cast<size_t>(i)] = 1;
          }
    }
  }
}

template <class T, class M>
void stack_dispatch(Interpolation interp, const StackArgs<T, M>& p, const std::vector<StackObject>& objects,
                    std::vector<unsigned char>& any_valid) {
  switch (interp) {
    case Interpolation::Nearest: return stack_rows<Interpolation::Nearest>(p, objects, any_valid);
    case Interpolation::Bilinear: return stack_rows<Interpolation::Bilinear>(p, objects, any_valid);
    case Interpolation::Bicubic: return stack_rows<Interpolation::Bicubic>(p, objects, any_valid);
  }
  fail("interpolation: unknown code ", int(interp));
}

}  // namespace

void oriented_stack_cpu(const TensorView& maps, const TensorView& positions, const TensorView& angles,
                        const std::optional<TensorView>& flips, const std::optional<TensorView>& weights,
                        const std::optional<TensorView>& groups, const std::optional<TensorView>& mask,
                        int64_t half_width, double step, Interpolation interpolation, const TensorView& sum,
                        const TensorView& weight_sum, const TensorView& count) {
  const int64_t N = positions.sizes[0];
  const int64_t G = count.sizes[0];

  // Per-object frames, validated serially (cheap next to the gather).
  std::vector<StackObject> objects(static_cast<size_t>(N));
  const double* pos = positions.ptr<const double>();
  const double* ang = angles.ptr<const double>();
  for (int64_t i = 0; i < N; ++i) {
    StackObject& o = objects[static_cast<size_t>(i)];
    const double y0 = pos[i * positions.strides[0]];
    const double x0 = pos[i * positions.strides[0] + positions.strides[1]];
    const double alpha = ang[i * angles.strides[0]];
    FBK_CHECK(std::isfinite(x0) && std::isfinite(y0), "positions: row ", i, " is not finite");
    FBK_CHECK(std::isfinite(alpha), "angles: entry ", i, " is not finite");
    double fx = 1.0, fy = 1.0;
    if (flips) {
      const double* f = flips->ptr<const double>();
      fx = f[i * flips->strides[0]];
      fy = f[i * flips->strides[0] + flips->strides[1]];
      FBK_CHECK((fx == 1.0 || fx == -1.0) && (fy == 1.0 || fy == -1.0), "flips: row ", i, " is not ±1");
    }
    double w = 1.0;
    if (weights) {
      w = weights->ptr<const double>()[i * weights->strides[0]];
      FBK_CHECK(std::isfinite(w) && w >= 0.0, "weights: entry ", i, " must be finite and >= 0, got ", w);
    }
    int64_t g = 0;
    if (groups) {
      g = groups->ptr<const int64_t>()[i * groups->strides[0]];
      FBK_CHECK(g >= 0 && g < G, "groups: entry ", i, " = ", g, " is outside [0, ", G, ")");
    }
    o.frame = StackFrame{x0, y0, std::cos(alpha), std::sin(alpha), fx, fy};
    o.weight = w;
    o.group = g;
  }

  std::vector<unsigned char> any_valid(static_cast<size_t>(N), 0);
  const auto run = [&](auto map_tag, auto mask_tag) {
    using T = typename decltype(map_tag)::type;
    using M = typename decltype(mask_tag)::type;
    StackArgs<T, M> p{};
    p.maps = maps.ptr<const T>();
    p.B = maps.sizes[0];
    p.ny = maps.sizes[1];
    p.nx = maps.sizes[2];
    p.ms0 = maps.strides[0];
    p.ms1 = maps.strides[1];
    p.ms2 = maps.strides[2];
    p.mask = mask ? mask->ptr<const M>() : nullptr;
    p.ks0 = mask ? mask->strides[0] : 0;
    p.ks1 = mask ? mask->strides[1] : 0;
    p.sum = sum.ptr<double>();
    p.ss0 = sum.strides[0];
    p.ss1 = sum.strides[1];
    p.ss2 = sum.strides[2];
    p.ss3 = sum.strides[3];
    p.wsum = weight_sum.ptr<double>();
    p.ws0 = weight_sum.strides[0];
    p.ws1 = weight_sum.strides[1];
    p.ws2 = weight_sum.strides[2];
    p.G = G;
    p.n = half_width;
    p.step = step;
    stack_dispatch(interpolation, p, objects, any_valid);
  };
  const auto with_mask = [&](auto map_tag) {
    if (!mask) return run(map_tag, TypeTag<uint8_t>{});
    dispatch_mask(mask->dtype, "mask", [&](auto mask_tag) { run(map_tag, mask_tag); });
  };
  switch (maps.dtype) {
    case DType::Float32: with_mask(TypeTag<float>{}); break;
    case DType::Float64: with_mask(TypeTag<double>{}); break;
    default: fail("maps: expected float32 or float64, got ", dtype_name(maps.dtype));
  }

  int64_t* cnt = count.ptr<int64_t>();
  for (int64_t g = 0; g < G; ++g) cnt[g * count.strides[0]] = 0;
  for (int64_t i = 0; i < N; ++i)
    if (any_valid[static_cast<size_t>(i)]) cnt[objects[static_cast<size_t>(i)].group * count.strides[0]] += 1;
}

}  // namespace fbk
