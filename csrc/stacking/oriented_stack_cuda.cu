// Oriented stacking on the GPU, with the CPU kernel's chunks and summation order: objects are
// taken in chunks of kStackChunk (index ranges); the objects of one group in one chunk form a
// run, summed in index order from 0 into a partial; each output element adds its group's partials
// in chunk order to 0. Every sum has one owner thread and a fixed order (no floating-point
// atomics), so the result is the same bits on every run, whatever the launch configuration.
//
// Pipeline, on one stream and without a host sync:
//   1. keys: per object, its group, or G when the object is invalid (see stacking.h);
//   2. a stable radix sort of the keys lists the objects group by group, in index order;
//   3. records: per sorted position, the object's frame and weight, and a flag where a run starts
//      (a new group or a new chunk); an inclusive scan of the flags numbers the runs, which are the
//      "slots" of the partials, group-major and then in chunk order;
//   4. index: where each slot's objects start, each group's first slot, and zeroed counts and
//      outputs;
//   5. windows of at most kWindowBytes of partials, in slot order: one kernel computes the window's
//      partials, thread per (slot, output pixel, block of maps); the next adds them to the
//      outputs of the window's groups, thread per output element, in slot order;
//   6. counts: objects with a valid sample per group (integer atomics: exact in any order).
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <cstdint>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "stacking/stacking.h"
#include "stacking/stacking_cpu.h"
#include "stacking/stacking_cuda.cuh"

namespace fbk {
namespace {

constexpr int kThreads = 256;        // threads of the per-object and per-element kernels
constexpr int kTileX = 8;            // a warp of the partial kernel covers kTileX × kTileY pixels,
constexpr int kTileY = 4;            // compact so that its samples share cache lines when rotated
constexpr int kPartialWarps = 4;     // warps per block of the partial kernel
constexpr int kChannels = 4;         // maps per thread of the partial kernel
constexpr int64_t kWindowBytes = int64_t(256) << 20;  // partials held at once
constexpr int64_t kAlign = 256;

template <class Frame>
struct StackRecord {
  Frame frame;
  double weight;
};

// Bits of the sort keys, which are 0 … G.
int key_bits(int64_t num_groups) {
  int bits = 1;
  while ((int64_t(1) << bits) <= num_groups) ++bits;
  return bits;
}

// Sizes, windows and workspace offsets (bytes) of one call.
struct StackPlan {
  int64_t slots_bound = 0, window_slots = 0, windows = 0;
  size_t temp_bytes = 0;
  int64_t keys = 0, sorted_keys = 0, index = 0, order = 0, flags = 0, ends = 0, run_start = 0, group_slot = 0,
          any_valid = 0, records = 0, temp = 0, partial = 0, total = 0;
};

void check_stack_sizes(int64_t n_objects, int64_t num_groups, int64_t num_maps, int64_t half_width) {
  FBK_CHECK(n_objects >= 0 && n_objects <= 0x7FFFFFFF, "positions: at most 2^31-1 objects on CUDA, got ",
            n_objects);
  FBK_CHECK(num_groups >= 1 && num_groups < 0x7FFFFFFF, "count: expected 1 <= G < 2^31-1 groups on CUDA, got ",
            num_groups);
  FBK_CHECK(num_maps >= 1 && num_maps <= int64_t(65535) * kChannels, "maps: expected 1 <= B <= ",
            int64_t(65535) * kChannels, " on CUDA, got ", num_maps);
  FBK_CHECK(half_width >= 1 && half_width < (int64_t(1) << 15), "half_width: expected 1 <= n < 2^15 on CUDA, got ",
            half_width);
}

StackPlan stack_plan(int64_t N, int64_t G, int64_t B, int64_t half_width, size_t record_bytes) {
  check_stack_sizes(N, G, B, half_width);
  StackPlan p;
  const int64_t P = 2 * half_width + 1;
  const int64_t chunks = (N + kStackChunk - 1) / kStackChunk;
  // Each slot is one (chunk, group) pair present in the catalog.
  p.slots_bound = std::min(N, chunks * G);
  const int64_t slot_bytes = (B + 1) * P * P * int64_t(sizeof(double));
  p.window_slots = std::clamp<int64_t>(kWindowBytes / slot_bytes, 1, std::max<int64_t>(p.slots_bound, 1));
  p.windows = (p.slots_bound + p.window_slots - 1) / p.window_slots;
  if (N > 0) {
    size_t sort_bytes = 0, scan_bytes = 0;
    check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const uint32_t*>(nullptr),
                                               static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                               static_cast<int32_t*>(nullptr), int(N), 0, key_bits(G)),
               "oriented_stack: radix sort size");
    check_cuda(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), int(N)),
               "oriented_stack: scan size");
    p.temp_bytes = std::max(sort_bytes, scan_bytes);
  }
  int64_t at = 0;
  const auto take = [&](int64_t bytes) {
    const int64_t offset = at;
    at += (bytes + kAlign - 1) / kAlign * kAlign;
    return offset;
  };
  p.keys = take(N * 4);
  p.sorted_keys = take(N * 4);
  p.index = take(N * 4);
  p.order = take(N * 4);
  p.flags = take(N * 4);
  p.ends = take(N * 4);
  p.run_start = take((p.slots_bound + 1) * 4);
  p.group_slot = take((G + 1) * 4);
  p.any_valid = take(N);
  p.records = take(N * int64_t(record_bytes));
  p.temp = take(int64_t(p.temp_bytes));
  p.partial = take(p.slots_bound > 0 ? p.window_slots * slot_bytes : 0);
  p.total = at;
  return p;
}

// Pointers into the workspace.
template <class Frame>
struct StackWork {
  uint32_t *keys, *sorted_keys;
  int32_t *index, *order, *flags, *ends, *run_start, *group_slot;
  uint8_t* any_valid;
  StackRecord<Frame>* records;
  void* temp;
  double* partial;
};

template <class Frame>
StackWork<Frame> stack_work(const StackPlan& p, const TensorView& workspace) {
  char* base = workspace.ptr<char>();
  return StackWork<Frame>{reinterpret_cast<uint32_t*>(base + p.keys),
                          reinterpret_cast<uint32_t*>(base + p.sorted_keys),
                          reinterpret_cast<int32_t*>(base + p.index),
                          reinterpret_cast<int32_t*>(base + p.order),
                          reinterpret_cast<int32_t*>(base + p.flags),
                          reinterpret_cast<int32_t*>(base + p.ends),
                          reinterpret_cast<int32_t*>(base + p.run_start),
                          reinterpret_cast<int32_t*>(base + p.group_slot),
                          reinterpret_cast<uint8_t*>(base + p.any_valid),
                          reinterpret_cast<StackRecord<Frame>*>(base + p.records),
                          base + p.temp,
                          reinterpret_cast<double*>(base + p.partial)};
}

// The outputs and their strides.
struct StackOut {
  double* sum;
  int64_t ss0, ss1, ss2, ss3;
  double* wsum;
  int64_t ws0, ws1, ws2;
  int64_t G, B, P;
};

StackOut stack_out(const TensorView& sum, const TensorView& weight_sum, int64_t G, int64_t B, int64_t P) {
  const int64_t *ss = sum.strides, *ws = weight_sum.strides;
  return StackOut{sum.ptr<double>(), ss[0], ss[1], ss[2], ss[3], weight_sum.ptr<double>(), ws[0], ws[1], ws[2],
                  G, B, P};
}

// The output pixels of a slot: warp tiles of kTileX × kTileY, kPartialWarps per block.
struct PixelGrid {
  int64_t n, P, tiles_x, warp_tiles, blocks;
  double step;
};

PixelGrid pixel_grid(int64_t n, double step) {
  const int64_t P = 2 * n + 1;
  const int64_t tiles_x = (P + kTileX - 1) / kTileX, warp_tiles = tiles_x * ((P + kTileY - 1) / kTileY);
  return PixelGrid{n, P, tiles_x, warp_tiles, (warp_tiles + kPartialWarps - 1) / kPartialWarps, step};
}

__global__ void __launch_bounds__(kThreads) keys_kernel(PoseViews poses, int64_t N, int64_t G, uint32_t* keys,
                                                        int32_t* index) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const DevicePose p = read_pose(poses, i, G);
  keys[i] = p.ok ? uint32_t(p.group) : uint32_t(G);
  index[i] = int32_t(i);
}

// Per sorted position j: the record of object order[j], and whether a run starts at j.
template <class Frame>
__global__ void __launch_bounds__(kThreads)
    records_kernel(PoseViews poses, MapGeometry map, bool zea, int64_t N, int64_t G, const uint32_t* sorted_keys,
                   const int32_t* order, StackRecord<Frame>* records, int32_t* flags) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= N) return;
  const int32_t i = order[j];
  const DevicePose p = read_pose(poses, i, G);
  records[j] = StackRecord<Frame>{pose_frame<Frame>(p, map, zea), p.weight};
  const uint32_t key = sorted_keys[j];
  flags[j] = key < uint32_t(G) &&
             (j == 0 || key != sorted_keys[j - 1] || i / kStackChunk != order[j - 1] / kStackChunk);
}

// First position in sorted `keys[0, n)` holding a key >= value.
__device__ inline int64_t first_at_least(const uint32_t* keys, int64_t n, uint32_t value) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < value)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// run_start[slot] = first sorted position of the slot's run (run_start[S] = end of the valid
// objects); group_slot[g] = first slot of group g (group_slot[G] = S); count zeroed.
__global__ void __launch_bounds__(kThreads)
    index_kernel(int64_t N, int64_t G, const uint32_t* sorted_keys, const int32_t* flags, const int32_t* ends,
                 int32_t* run_start, int32_t* group_slot, int64_t* count, int64_t count_stride) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < N && flags[t]) run_start[ends[t] - 1] = int32_t(t);
  if (t <= G) {
    const int64_t j = first_at_least(sorted_keys, N, uint32_t(t));
    const int32_t slot = j > 0 ? ends[j - 1] : 0;  // runs starting before j
    group_slot[t] = slot;
    if (t == G)
      run_start[slot] = int32_t(j);
    else
      count[t * count_stride] = 0;
  }
}

// Partials of slots [s0, s0 + gridDim.x / grid.blocks): thread per (slot, output pixel, block of
// kChannels maps) sums the slot's objects in order. Every lane of a live warp runs the object
// loop (lanes outside the stack sample nothing) so that the ballot marking objects with a valid
// sample sees the whole warp.
template <Interpolation I, class T, class M, class Frame>
__global__ void __launch_bounds__(kPartialWarps * 32)
    partial_kernel(MapSampler<T, M> map, const StackRecord<Frame>* records, const int32_t* run_start,
                   const int32_t* num_slots, int64_t s0, PixelGrid grid, double* partial, uint8_t* any_valid) {
  const int64_t slot = s0 + blockIdx.x / grid.blocks;
  if (slot >= *num_slots) return;
  const int64_t warp_tile = (blockIdx.x % grid.blocks) * kPartialWarps + threadIdx.x / 32;
  if (warp_tile >= grid.warp_tiles) return;
  const int lane = threadIdx.x % 32;
  const int64_t b = (warp_tile % grid.tiles_x) * kTileX + lane % kTileX;
  const int64_t a = (warp_tile / grid.tiles_x) * kTileY + lane / kTileX;
  const bool inside = a < grid.P && b < grid.P;
  const double u = double(b - grid.n) * grid.step, v = double(a - grid.n) * grid.step;
  const int64_t c0 = int64_t(blockIdx.y) * kChannels;
  const int64_t channels = map.B - c0 < kChannels ? map.B - c0 : kChannels;
  double acc[kChannels] = {}, wacc = 0.0;
  const int64_t end = run_start[slot + 1];
  for (int64_t j = run_start[slot]; j < end; ++j) {
    const StackRecord<Frame> r = records[j];
    double x, y;
    Stencil<I> s;
    const bool valid = inside && r.frame.locate(u, v, x, y) && map.at(x, y, s);
    if (valid) {
#pragma unroll
      for (int c = 0; c < kChannels; ++c)
        if (c < channels) acc[c] += r.weight * map.value(s, c0 + c);
      wacc += r.weight;
    }
    if (__ballot_sync(0xffffffffu, valid) != 0 && lane == 0) any_valid[j] = 1;
  }
  if (!inside) return;
  const int64_t PP = grid.P * grid.P;
  double* out = partial + (slot - s0) * (map.B + 1) * PP + a * grid.P + b;
#pragma unroll
  for (int c = 0; c < kChannels; ++c)
    if (c < channels) out[(c0 + c) * PP] = acc[c];
  if (blockIdx.y == 0) out[map.B * PP] = wacc;
}

// The address of output element (g, plane, pixel) (plane B is the weight sum).
__device__ inline double* stack_element(const StackOut& out, int64_t g, int64_t plane, int64_t pix) {
  const int64_t a = pix / out.P, b = pix % out.P;
  return plane < out.B ? out.sum + g * out.ss0 + plane * out.ss1 + a * out.ss2 + b * out.ss3
                       : out.wsum + g * out.ws0 + a * out.ws1 + b * out.ws2;
}

__global__ void __launch_bounds__(kThreads) zero_kernel(StackOut out) {
  const int64_t PP = out.P * out.P, planes = out.B + 1, total = out.G * planes * PP;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x)
    *stack_element(out, e / (PP * planes), (e / PP) % planes, e % PP) = 0.0;
}

// Thread per output element of the groups with slots in [s0, s1) (slots are group-major, so these
// are the groups of the window's first to last slot): adds its group's partials there in slot order.
__global__ void __launch_bounds__(kThreads)
    add_kernel(const double* partial, const int32_t* group_slot, const uint32_t* sorted_keys, const int32_t* run_start,
               int64_t s0, int64_t s1, StackOut out) {
  const int64_t last = min(s1, int64_t(group_slot[out.G])) - 1;
  if (last < s0) return;
  const int64_t g0 = sorted_keys[run_start[s0]], groups = sorted_keys[run_start[last]] - g0 + 1;
  const int64_t PP = out.P * out.P, planes = out.B + 1, total = groups * planes * PP;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pix = e % PP, plane = (e / PP) % planes, g = g0 + e / (PP * planes);
    const int64_t begin = max(s0, int64_t(group_slot[g])), end = min(s1, int64_t(group_slot[g + 1]));
    if (begin >= end) continue;  // a group without objects between two with
    double* dst = stack_element(out, g, plane, pix);
    double acc = *dst;
    for (int64_t s = begin; s < end; ++s) acc += partial[((s - s0) * planes + plane) * PP + pix];
    *dst = acc;
  }
}

// count[g] += objects of group g with a valid sample; one atomic per run of equal keys in a warp.
__global__ void __launch_bounds__(kThreads) count_kernel(int64_t N, int64_t G, const uint32_t* sorted_keys,
                                                         const uint8_t* any_valid, int64_t* count,
                                                         int64_t count_stride) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint32_t key = j < N ? sorted_keys[j] : uint32_t(G);
  const bool hit = key < uint32_t(G) && any_valid[j] != 0;
  const unsigned peers = __match_any_sync(0xffffffffu, key);
  const unsigned hits = __ballot_sync(0xffffffffu, hit) & peers;
  if (hits != 0 && int(threadIdx.x % 32) == __ffs(peers) - 1)
    atomicAdd(reinterpret_cast<unsigned long long*>(count + int64_t(key) * count_stride),
              static_cast<unsigned long long>(__popc(hits)));
}

unsigned item_blocks(int64_t n) { return unsigned(std::max<int64_t>(1, (n + kThreads - 1) / kThreads)); }

template <class Frame>
void stack_with_frames(const StackInputs& in, const TensorView& sum, const TensorView& weight_sum,
                       const TensorView& count, const TensorView& workspace, cudaStream_t stream) {
  const int64_t N = in.positions.sizes[0], G = count.sizes[0], B = in.maps.sizes[0];
  const StackPlan plan = stack_plan(N, G, B, in.half_width, sizeof(StackRecord<Frame>));
  check_workspace(workspace, plan.total, "oriented_stack_workspace_bytes");
  const StackWork<Frame> w = stack_work<Frame>(plan, workspace);
  const PoseViews poses = pose_views(in);
  const MapGeometry map = in.geometry ? *in.geometry : MapGeometry{};
  const bool zea = in.projection == Projection::Zea;
  if (N > 0) {
    keys_kernel<<<item_blocks(N), kThreads, 0, stream>>>(poses, N, G, w.keys, w.index);
    check_launch("oriented_stack (keys)");
    size_t temp_bytes = plan.temp_bytes;
    check_cuda(cub::DeviceRadixSort::SortPairs(w.temp, temp_bytes, w.keys, w.sorted_keys, w.index, w.order, int(N), 0,
                                               key_bits(G), stream),
               "oriented_stack: radix sort");
    records_kernel<Frame><<<item_blocks(N), kThreads, 0, stream>>>(poses, map, zea, N, G, w.sorted_keys, w.order,
                                                                   w.records, w.flags);
    check_launch("oriented_stack (records)");
    temp_bytes = plan.temp_bytes;
    check_cuda(cub::DeviceScan::InclusiveSum(w.temp, temp_bytes, w.flags, w.ends, int(N), stream),
               "oriented_stack: scan");
    check_cuda(cudaMemsetAsync(w.any_valid, 0, size_t(N), stream), "oriented_stack: memset");
  }
  index_kernel<<<item_blocks(std::max(N, G + 1)), kThreads, 0, stream>>>(
      N, G, w.sorted_keys, w.flags, w.ends, w.run_start, w.group_slot, count.ptr<int64_t>(), count.strides[0]);
  check_launch("oriented_stack (index)");

  const PixelGrid grid = pixel_grid(in.half_width, in.step);
  const StackOut out = stack_out(sum, weight_sum, G, B, grid.P);
  zero_kernel<<<stride_blocks(G * (B + 1) * grid.P * grid.P, kThreads), kThreads, 0, stream>>>(out);
  check_launch("oriented_stack (zero)");
  const unsigned channel_blocks = unsigned((B + kChannels - 1) / kChannels);
  dispatch_map_sampler(in, [&](const auto& sampler) {
    dispatch_interpolation(in.interpolation, [&](auto interpolation) {
      constexpr Interpolation I = decltype(interpolation)::value;
      for (int64_t window = 0; window < plan.windows; ++window) {
        const int64_t s0 = window * plan.window_slots, s1 = std::min(plan.slots_bound, s0 + plan.window_slots);
        const dim3 blocks(unsigned((s1 - s0) * grid.blocks), channel_blocks);
        partial_kernel<I><<<blocks, kPartialWarps * 32, 0, stream>>>(sampler, w.records, w.run_start,
                                                                     w.group_slot + G, s0, grid, w.partial,
                                                                     w.any_valid);
        check_launch("oriented_stack (partials)");
        // At most one group per slot has partials in the window.
        const int64_t elements = std::min(G, s1 - s0) * (B + 1) * grid.P * grid.P;
        add_kernel<<<stride_blocks(elements, kThreads), kThreads, 0, stream>>>(w.partial, w.group_slot, w.sorted_keys,
                                                                               w.run_start, s0, s1, out);
        check_launch("oriented_stack (add)");
      }
    });
  });
  if (N > 0) {
    count_kernel<<<item_blocks(N), kThreads, 0, stream>>>(N, G, w.sorted_keys, w.any_valid, count.ptr<int64_t>(),
                                                          count.strides[0]);
    check_launch("oriented_stack (count)");
  }
}

size_t record_bytes(Projection projection) {
  size_t bytes = 0;
  dispatch_frame(projection, [&](auto frame_tag) { bytes = sizeof(StackRecord<typename decltype(frame_tag)::type>); });
  return bytes;
}

}  // namespace

int64_t oriented_stack_workspace_bytes(int64_t n_objects, int64_t num_groups, int64_t num_maps, int64_t half_width,
                                       Projection projection) {
  return stack_plan(n_objects, num_groups, num_maps, half_width, record_bytes(projection)).total;
}

void oriented_stack_cuda(const StackInputs& in, const TensorView& sum, const TensorView& weight_sum,
                         const TensorView& count, const TensorView& workspace, uintptr_t stream) {
  dispatch_frame(in.projection, [&](auto frame_tag) {
    stack_with_frames<typename decltype(frame_tag)::type>(in, sum, weight_sum, count, workspace, as_stream(stream));
  });
}

}  // namespace fbk
