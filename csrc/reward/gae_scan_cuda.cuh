// The GAE recursion of one row as a block-wide scan of GaeMaps, shared by gae and rlhf_advantages
// (the CUDA counterpart of gae_row_cpu.h).
#pragma once

#include <cstdint>

#include "common/cuda_utils.cuh"
#include "reward/reward.h"

namespace fbk {

// A row is processed in tiles of blockDim.x · kGaeItems positions, from its end to its start;
// thread i owns the tile's positions [i·kGaeItems, (i + 1)·kGaeItems).
constexpr int kGaeItems = 8;
constexpr int kGaeMaxThreads = 256;

// Threads per block for a row of `length` positions: a power of two in [32, kGaeMaxThreads].
inline int gae_threads(int64_t length) { return threads_for((length + kGaeItems - 1) / kGaeItems); }

namespace gae_scan {

constexpr int kMaxTile = kGaeItems * kGaeMaxThreads;
constexpr int kPaddedTile = kMaxTile + kMaxTile / 32;

// What a staged position does: nothing (past the row's end, or masked in "skip" mode), a step with
// r = v = 0 (masked in "zero" mode), or a step at a valid position.
enum Kind : uint8_t { kIdentity = 0, kMaskedStep = 1, kValidStep = 2 };

// One padding slot per 32 positions: both the striped accesses (thread i, position i + j·threads)
// and the blocked ones (thread i, position i·kGaeItems + j) are then free of bank conflicts.
__device__ inline int padded(int i) { return i + (i >> 5); }

template <class A>
__device__ inline GaeMap<A> shfl_down(const GaeMap<A>& m, int delta) {
  constexpr unsigned all = 0xffffffffu;
  return GaeMap<A>{__shfl_down_sync(all, m.p, delta), __shfl_down_sync(all, m.c1, delta),
                   __shfl_down_sync(all, m.q, delta), __shfl_down_sync(all, m.s, delta),
                   __shfl_down_sync(all, m.c2, delta)};
}

}  // namespace gae_scan

// Runs the GAE recursion of one row with the whole block and emits what gae_row emits:
// valid(t) says whether position t is valid; reward(t) and value(t) are called once per valid
// position (reward first), from any thread and in no particular order; γ·bootstrap is added to
// the reward at position `last` (−1: nowhere); emit(t, valid, advantage, value) is called once for
// every position. Every thread of the block must call it; blockDim.x must be a multiple of 32 and
// at most kGaeMaxThreads.
template <class A, class Valid, class Reward, class Value, class Emit>
__device__ void gae_scan_row(int64_t length, const GaeParams& params, int64_t last, A bootstrap, Valid&& valid,
                             Reward&& reward, Value&& value, Emit&& emit) {
  using namespace gae_scan;
  __shared__ A staged_reward[kPaddedTile];  // the rewards, then the advantages
  __shared__ A staged_value[kPaddedTile];
  __shared__ uint8_t kind[kMaxTile];
  __shared__ A warp_maps[5][kGaeMaxThreads / 32];  // each warp's composed map, by field

  const int threads = blockDim.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = threads >> 5;
  const int tile = threads * kGaeItems, first = threadIdx.x * kGaeItems;
  const A gamma = A(params.gamma), gamma_lam = A(params.gamma * params.lam);
  const bool skip = params.mode == MaskMode::Skip;
  // The state (V', A) after every position from the current tile's end on, in every thread.
  A next_value = 0, advantage = 0;

  for (int64_t k = (length + tile - 1) / tile - 1; k >= 0; --k) {
    const int64_t base = k * tile;
    const int count = length - base < tile ? int(length - base) : tile;

    // 1. Stage the tile, coalesced: thread i handles positions i + j·threads.
    bool on[kGaeItems];
#pragma unroll
    for (int j = 0; j < kGaeItems; ++j) {
      const int i = threadIdx.x + j * threads;
      on[j] = i < count && valid(base + i);
    }
#pragma unroll
    for (int j = 0; j < kGaeItems; ++j) {
      const int i = threadIdx.x + j * threads;
      const int64_t t = base + i;
      uint8_t what = kIdentity;
      A r = 0, v = 0;
      if (i < count && (on[j] || !skip)) {
        what = on[j] ? kValidStep : kMaskedStep;
        if (on[j]) {
          r = reward(t);
          v = value(t);
        }
        if (t == last) r += gamma * bootstrap;
      }
      kind[i] = what;
      staged_reward[padded(i)] = r;
      staged_value[padded(i)] = v;
    }
    __syncthreads();

    // 2. This thread's map: its positions composed right to left (later positions apply first).
    GaeMap<A> map;
#pragma unroll
    for (int j = kGaeItems - 1; j >= 0; --j) {
      const int i = first + j;
      if (kind[i] != kIdentity)
        map = GaeMap<A>::step(staged_reward[padded(i)], staged_value[padded(i)], gamma, gamma_lam).after(map);
    }

    // 3. Suffix scan over the warp: after the step with offset d, lane l holds the maps of lanes
    // [l, l + 2d) (clipped to the warp), lane l's own applied last.
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const GaeMap<A> later = shfl_down(map, d);
      if (lane + d < 32) map = map.after(later);
    }
    GaeMap<A> later_lanes = shfl_down(map, 1);  // lanes (l, 32) of this warp
    if (lane == 31) later_lanes = GaeMap<A>{};
    if (lane == 0) {
      warp_maps[0][warp] = map.p;
      warp_maps[1][warp] = map.c1;
      warp_maps[2][warp] = map.q;
      warp_maps[3][warp] = map.s;
      warp_maps[4][warp] = map.c2;
    }
    __syncthreads();

    // 4. Every thread walks the warps' maps from the last warp to the first: the state entering its
    // own warp on the way, and the carry into the next (earlier) tile at the end.
    A lane_value = 0, lane_advantage = 0;
    for (int w = warps - 1; w >= 0; --w) {
      if (w == warp) {
        lane_value = next_value;
        lane_advantage = advantage;
      }
      const GaeMap<A> warp_map{warp_maps[0][w], warp_maps[1][w], warp_maps[2][w], warp_maps[3][w], warp_maps[4][w]};
      warp_map.apply(next_value, advantage);
    }
    later_lanes.apply(lane_value, lane_advantage);

    // 5. Re-walk this thread's positions right to left from the state after them; the advantages
    // replace the rewards in shared memory (0 at identity positions).
#pragma unroll
    for (int j = kGaeItems - 1; j >= 0; --j) {
      const int i = first + j;
      A a = 0;
      if (kind[i] != kIdentity) {
        GaeMap<A>::step(staged_reward[padded(i)], staged_value[padded(i)], gamma, gamma_lam)
            .apply(lane_value, lane_advantage);
        a = lane_advantage;
      }
      staged_reward[padded(i)] = a;
    }
    __syncthreads();

    // 6. Emit, coalesced.
    for (int i = threadIdx.x; i < count; i += threads)
      emit(base + i, kind[i] == kValidStep, staged_reward[padded(i)], staged_value[padded(i)]);
    __syncthreads();  // the next tile overwrites the staging
  }
}

}  // namespace fbk
