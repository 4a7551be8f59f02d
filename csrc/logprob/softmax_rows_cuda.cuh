// CUDA block helpers shared by the softmax kernels of the logprob family.
#pragma once

#include "common/math.h"

namespace fbk {

// Merges every thread's statistics; the result is returned to all threads.
template <class A>
__device__ inline SoftmaxStats<A> block_merge(SoftmaxStats<A> st) {
  __shared__ A shared_m[32], shared_s[32], shared_t[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1)
    st.merge(SoftmaxStats<A>{__shfl_down_sync(0xffffffffu, st.m, offset), __shfl_down_sync(0xffffffffu, st.s, offset),
                             __shfl_down_sync(0xffffffffu, st.t, offset)});
  if (lane == 0) {
    shared_m[warp] = st.m;
    shared_s[warp] = st.s;
    shared_t[warp] = st.t;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    SoftmaxStats<A> total;
    for (int w = 0; w < warps; ++w) total.merge(SoftmaxStats<A>{shared_m[w], shared_s[w], shared_t[w]});
    shared_m[0] = total.m;
    shared_s[0] = total.s;
    shared_t[0] = total.t;
  }
  __syncthreads();
  return SoftmaxStats<A>{shared_m[0], shared_s[0], shared_t[0]};
}

}  // namespace fbk
