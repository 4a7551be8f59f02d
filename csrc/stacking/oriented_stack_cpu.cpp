// Oriented stacking on the CPU. OpenMP runs over fixed chunks of objects whose partial sums are
// added in chunk order, so the result is the same bits for every thread count and schedule.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "common/dtype.h"
#include "stacking/stacking.h"
#include "stacking/stacking_cpu.h"

namespace fbk {

namespace {

template <class Frame>
struct StackObject {
  Frame frame;
  double weight;
  int64_t group;
};

// The outputs, with their strides.
struct StackOutputs {
  double* sum;
  int64_t ss0, ss1, ss2, ss3;
  double* wsum;
  int64_t ws0, ws1, ws2;
  int64_t G, n;
  double step;
};

// Adds object `o`'s samples into one group's contiguous partial sums sum[B, P, P] and
// wsum[P, P]; returns whether any sample was valid.
template <Interpolation I, class T, class M, class Frame>
bool stack_object(const MapSampler<T, M>& map, const StackOutputs& out, const StackObject<Frame>& o, double* sum,
                  double* wsum) {
  const int64_t P = 2 * out.n + 1, PP = P * P;
  bool any = false;
  for (int64_t a = 0; a < P; ++a) {
    const double v = double(a - out.n) * out.step;
    for (int64_t b = 0; b < P; ++b) {
      double x, y;
      Stencil<I> s;
      if (!o.frame.locate(double(b - out.n) * out.step, v, x, y) || !map.at(x, y, s)) continue;
      for (int64_t c = 0; c < map.B; ++c) sum[c * PP + a * P + b] += o.weight * map.value(s, c);
      wsum[a * P + b] += o.weight;
      any = true;
    }
  }
  return any;
}

// Objects are taken in fixed chunks of kStackChunk (index order). A thread sums one chunk's
// objects in order into zeroed per-group partials, which are then added to the outputs in chunk
// order. So every output is ((chunk 0) + chunk 1) + …, the same bits for every thread count, and
// each object's map footprint is read while it is in cache.
template <Interpolation I, class T, class M, class Frame>
void stack_chunks(const MapSampler<T, M>& map, const StackOutputs& out, const std::vector<StackObject<Frame>>& objects,
                  std::vector<unsigned char>& any_valid) {
  const int64_t P = 2 * out.n + 1, PP = P * P, B = map.B;
  const int64_t N = static_cast<int64_t>(objects.size());
  const int64_t chunks = (N + kStackChunk - 1) / kStackChunk;
  for (int64_t g = 0; g < out.G; ++g)
    for (int64_t a = 0; a < P; ++a)
      for (int64_t b = 0; b < P; ++b) {
        out.wsum[g * out.ws0 + a * out.ws1 + b * out.ws2] = 0.0;
        for (int64_t c = 0; c < B; ++c) out.sum[g * out.ss0 + c * out.ss1 + a * out.ss2 + b * out.ss3] = 0.0;
      }
#pragma omp parallel
  {
    // Partials of the groups present in the current chunk, one slot per group.
    std::vector<int64_t> slot_of(static_cast<size_t>(out.G), -1), slot_group;
    std::vector<double> sum_buf, wsum_buf;
#pragma omp for ordered schedule(dynamic, 1)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t i_begin = chunk * kStackChunk, i_end = std::min(N, i_begin + kStackChunk);
      slot_group.clear();
      for (int64_t i = i_begin; i < i_end; ++i) {
        const int64_t g = objects[static_cast<size_t>(i)].group;
        if (slot_of[static_cast<size_t>(g)] < 0) {
          slot_of[static_cast<size_t>(g)] = static_cast<int64_t>(slot_group.size());
          slot_group.push_back(g);
        }
      }
      const size_t slots = slot_group.size();
      sum_buf.assign(slots * static_cast<size_t>(B * PP), 0.0);
      wsum_buf.assign(slots * static_cast<size_t>(PP), 0.0);
      for (int64_t i = i_begin; i < i_end; ++i) {
        const StackObject<Frame>& o = objects[static_cast<size_t>(i)];
        const size_t slot = static_cast<size_t>(slot_of[static_cast<size_t>(o.group)]);
        if (stack_object<I>(map, out, o, sum_buf.data() + slot * static_cast<size_t>(B * PP),
                            wsum_buf.data() + slot * static_cast<size_t>(PP)))
          any_valid[static_cast<size_t>(i)] = 1;
      }
#pragma omp ordered
      for (size_t slot = 0; slot < slots; ++slot) {
        const int64_t g = slot_group[slot];
        const double* ps = sum_buf.data() + slot * static_cast<size_t>(B * PP);
        const double* pw = wsum_buf.data() + slot * static_cast<size_t>(PP);
        for (int64_t a = 0; a < P; ++a)
          for (int64_t b = 0; b < P; ++b) {
            out.wsum[g * out.ws0 + a * out.ws1 + b * out.ws2] += pw[a * P + b];
            for (int64_t c = 0; c < B; ++c)
              out.sum[g * out.ss0 + c * out.ss1 + a * out.ss2 + b * out.ss3] += ps[c * PP + a * P + b];
          }
        slot_of[static_cast<size_t>(g)] = -1;
      }
    }
  }
}

// Per-object frames, weights and groups, validated serially (cheap next to the gather).
template <class Frame>
std::vector<StackObject<Frame>> stack_objects(const StackInputs& in, int64_t G) {
  const int64_t N = in.positions.sizes[0];
  std::vector<StackObject<Frame>> objects(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    const ObjectPose pose = object_pose(in, i);
    StackObject<Frame>& o = objects[static_cast<size_t>(i)];
    if constexpr (std::is_same_v<Frame, FlatFrame>)
      o.frame = make_flat_frame(pose.p0, pose.p1, pose.alpha, pose.flip_x, pose.flip_y);
    else
      o.frame = make_sphere_frame(*in.geometry, in.projection == Projection::Zea, pose.p0, pose.p1, pose.alpha,
                                  pose.flip_x, pose.flip_y);
    o.weight = 1.0;
    if (in.weights) {
      o.weight = in.weights->ptr<const double>()[i * in.weights->strides[0]];
      FBK_CHECK(std::isfinite(o.weight) && o.weight >= 0.0, "weights: entry ", i, " must be finite and >= 0, got ",
                o.weight);
    }
    o.group = 0;
    if (in.groups) {
      o.group = in.groups->ptr<const int64_t>()[i * in.groups->strides[0]];
      FBK_CHECK(o.group >= 0 && o.group < G, "groups: entry ", i, " = ", o.group, " is outside [0, ", G, ")");
    }
  }
  return objects;
}

template <class Frame>
void stack_with_frames(const StackInputs& in, const StackOutputs& out, const TensorView& count) {
  const std::vector<StackObject<Frame>> objects = stack_objects<Frame>(in, out.G);
  std::vector<unsigned char> any_valid(objects.size(), 0);
  dispatch_map_sampler(in, [&](const auto& map) {
    switch (in.interpolation) {
      case Interpolation::Nearest: return stack_chunks<Interpolation::Nearest>(map, out, objects, any_valid);
      case Interpolation::Bilinear: return stack_chunks<Interpolation::Bilinear>(map, out, objects, any_valid);
      case Interpolation::Bicubic: return stack_chunks<Interpolation::Bicubic>(map, out, objects, any_valid);
    }
    fail("interpolation: unknown code ", int(in.interpolation));
  });
  int64_t* cnt = count.ptr<int64_t>();
  for (int64_t g = 0; g < out.G; ++g) cnt[g * count.strides[0]] = 0;
  for (size_t i = 0; i < objects.size(); ++i)
    if (any_valid[i]) cnt[objects[i].group * count.strides[0]] += 1;
}

}  // namespace

void oriented_stack_cpu(const StackInputs& in, const TensorView& sum, const TensorView& weight_sum,
                        const TensorView& count) {
  StackOutputs out{};
  out.sum = sum.ptr<double>();
  out.ss0 = sum.strides[0];
  out.ss1 = sum.strides[1];
  out.ss2 = sum.strides[2];
  out.ss3 = sum.strides[3];
  out.wsum = weight_sum.ptr<double>();
  out.ws0 = weight_sum.strides[0];
  out.ws1 = weight_sum.strides[1];
  out.ws2 = weight_sum.strides[2];
  out.G = count.sizes[0];
  out.n = in.half_width;
  out.step = in.step;
  if (in.projection == Projection::Flat)
    stack_with_frames<FlatFrame>(in, out, count);
  else
    stack_with_frames<SphereFrame>(in, out, count);
}

}  // namespace fbk
