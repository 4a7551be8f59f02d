// CUDA helpers shared by the kernels of the reward family.
#pragma once

#include <cstdint>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "reward/reward.h"

namespace fbk {

// Grid rows are blockIdx.x, which holds at most 2^31 − 1 blocks.
inline void check_grid_rows(int64_t rows, const char* arg) {
  FBK_CHECK(rows <= 0x7FFFFFFF, arg, ": at most 2^31-1 rows are supported, got ", rows);
}

// Blocks along gridDim.y covering `length` columns with blockDim.x threads (kernels stride over
// the rest).
inline unsigned column_blocks(int64_t length, int threads) {
  const int64_t blocks = (length + threads - 1) / threads;
  return unsigned(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

// Index of the last valid token of row b (−1 for none), returned to every thread; every thread
// must call it. Reads the mask from the row's end, so right padding costs one pass over the padding.
template <class M>
__device__ int64_t block_last_valid(const Matrix<const M>& mask, int64_t b, int64_t length) {
  if (!mask) return length - 1;
  constexpr int kPerThread = 4;
  const int64_t threads = blockDim.x, chunk = threads * kPerThread;
  for (int64_t end = length; end > 0; end -= chunk) {
    int64_t found = -1;
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t t = end - 1 - int64_t(threadIdx.x) - j * threads;
      if (t >= 0 && t > found && mask(b, t) != M(0)) found = t;
    }
    found = block_max(found);
    if (found >= 0) return found;
  }
  return -1;
}

// Merges every thread's moments in thread order (a fixed tree, so the result is deterministic).
// The result is valid in thread 0. blockDim.x must be a multiple of 32, <= 1024.
__device__ inline Moments block_merge(Moments m) {
  __shared__ double partial[3][32];
  constexpr unsigned all = 0xffffffffu;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  // After the step with `offset`, lanes that are multiples of 2·offset hold lanes [lane, lane + 2·offset).
  for (int offset = 1; offset < 32; offset <<= 1) {
    const Moments later{__shfl_down_sync(all, m.n, offset), __shfl_down_sync(all, m.mean, offset),
                        __shfl_down_sync(all, m.m2, offset)};
    if ((lane & (2 * offset - 1)) == 0) m.merge(later);
  }
  if (lane == 0) {
    partial[0][warp] = m.n;
    partial[1][warp] = m.mean;
    partial[2][warp] = m.m2;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x >> 5); ++w) m.merge(Moments{partial[0][w], partial[1][w], partial[2][w]});
  }
  __syncthreads();  // partial may be reused by the next call
  return m;
}

}  // namespace fbk
