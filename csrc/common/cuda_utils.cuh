// CUDA-only helpers: block reductions, launch checks, stream conversion.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fbk {

inline cudaStream_t as_stream(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// Raises RuntimeError if the last launch failed (bad configuration, no kernel image, ...).
inline void check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(kernel) + ": CUDA launch failed: " + cudaGetErrorString(err));
}

template <class V>
__device__ inline V warp_sum(V v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block; the result is valid in thread 0. blockDim.x must be a multiple of 32, <= 1024.
template <class V>
__device__ inline V block_sum(V v) {
  __shared__ V partial[32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = threadIdx.x < (blockDim.x >> 5) ? partial[lane] : V(0);
  if (warp == 0) v = warp_sum(v);
  __syncthreads();  // partial may be reused by the next call
  return v;
}

// Maximum over the block, returned to every thread. blockDim.x must be a multiple of 32, <= 1024.
template <class V>
__device__ inline V block_max(V v) {
  __shared__ V partial[32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) {
    const V other = __shfl_xor_sync(0xffffffffu, v, offset);
    v = other > v ? other : v;
  }
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = partial[0];
  for (int w = 1; w < int(blockDim.x >> 5); ++w) v = partial[w] > v ? partial[w] : v;
  __syncthreads();  // partial may be reused by the next call
  return v;
}

// Threads per block for work of `n` elements per block: a power of two in [32, 256].
inline int threads_for(int64_t n) {
  int t = 32;
  while (t < 256 && t < n) t <<= 1;
  return t;
}

}  // namespace fbk
