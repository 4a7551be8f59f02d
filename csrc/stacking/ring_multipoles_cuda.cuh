// Ring multipoles on the GPU, shared by multipoles_cuda.cu (rings of stacked images) and
// object_multipoles_cuda.cu (rings of objects on the map). Thread per ring: it samples the ring at
// θ_j = 2πj/n_theta and sums f·cos mθ_j, f·sin mθ_j in sample order, as the CPU's RingHarmonics
// does, from tables computed on the device with the CPU's formula (m·j reduced mod n_theta). Each
// sum has one owner and a fixed order, so results are deterministic; they match the CPU to
// rounding (the device's cos / sin and its FMA contraction differ from the host's by an ulp).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "stacking/stacking.h"
#include "stacking/stacking_cuda.cuh"

namespace fbk {

constexpr int kRingThreads = 128;
constexpr int kRingOrders = 8;  // orders m summed per pass over a ring's samples

// Workspace rows of n_theta doubles: cos θ_j, sin θ_j, then cos mθ_j for m = 0 … m_max, then sin mθ_j.
struct RingTables {
  const double *cos_theta, *sin_theta, *cos_m, *sin_m;
  int64_t n_theta, m_max;
};

FBK_HD_INLINE int64_t ring_table_rows(int64_t m_max) { return 2 + 2 * (m_max + 1); }

inline void check_ring_sizes(int64_t n_theta, int64_t m_max) {
  FBK_CHECK(n_theta >= 1 && n_theta <= 0x7FFFFFFF, "n_theta: expected 1 <= n_theta < 2^31, got ", n_theta);
  FBK_CHECK(m_max >= 0 && m_max <= 0xFFFF, "m_max: expected 0 <= m_max <= 65535, got ", m_max);
}

// The outputs C, S [N, B, m_max + 1, R] (object rings) or [M, m_max + 1, R] (image rings, read
// with channel 0).
struct RingOut {
  double *C, *S;
  int64_t cs[4], ss[4];

  __device__ void at(int64_t i, int64_t channel, int64_t m, int64_t k, double*& c, double*& s) const {
    c = C + i * cs[0] + channel * cs[1] + m * cs[2] + k * cs[3];
    s = S + i * ss[0] + channel * ss[1] + m * ss[2] + k * ss[3];
  }
};

inline RingOut ring_out(const TensorView& C, const TensorView& S) {
  RingOut out{C.ptr<double>(), S.ptr<double>(), {}, {}};
  const bool channels = C.ndim == 4;
  for (int d = 0; d < C.ndim; ++d) {
    out.cs[d + (channels || d == 0 ? 0 : 1)] = C.strides[d];
    out.ss[d + (channels || d == 0 ? 0 : 1)] = S.strides[d];
  }
  return out;
}

// Fills the tables in `workspace` on `stream` and returns views of them (multipoles_cuda.cu).
RingTables ring_tables(const TensorView& workspace, int64_t n_theta, int64_t m_max, cudaStream_t stream);

// Thread per ring (task). `Rings` provides:
//   ring(task)            a small object whose sample(cos θ, sin θ) is the ring's value there
//                         (NaN where it has none);
//   out(task, m, c, s)    the addresses of C_m and S_m of the task.
template <class Rings>
__global__ void __launch_bounds__(kRingThreads) ring_multipoles_kernel(Rings rings, RingTables t, int64_t tasks) {
  for (int64_t task = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; task < tasks;
       task += int64_t(gridDim.x) * blockDim.x) {
    const auto ring = rings.ring(task);
    for (int64_t m0 = 0; m0 <= t.m_max; m0 += kRingOrders) {
      double sc[kRingOrders] = {}, sn[kRingOrders] = {};
      for (int64_t j = 0; j < t.n_theta; ++j) {
        const double f = ring.sample(t.cos_theta[j], t.sin_theta[j]);
#pragma unroll
        for (int k = 0; k < kRingOrders; ++k)
          if (m0 + k <= t.m_max) {
            sc[k] += f * t.cos_m[(m0 + k) * t.n_theta + j];
            sn[k] += f * t.sin_m[(m0 + k) * t.n_theta + j];
          }
      }
#pragma unroll
      for (int k = 0; k < kRingOrders; ++k)
        if (m0 + k <= t.m_max) {
          double *c, *s;
          rings.out(task, m0 + k, c, s);
          ring_harmonic(m0 + k, t.n_theta, sc[k], sn[k], *c, *s);
        }
    }
  }
}

template <class Rings>
void launch_ring_multipoles(const Rings& rings, const RingTables& tables, int64_t tasks, cudaStream_t stream) {
  if (tasks == 0) return;
  ring_multipoles_kernel<<<stride_blocks(tasks, kRingThreads), kRingThreads, 0, stream>>>(rings, tables, tasks);
  check_launch("multipoles");
}

}  // namespace fbk
