// Ring multipoles of square images on the GPU: thread per (image, radius), as multipoles_cpu.
#include <limits>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "stacking/ring_multipoles_cuda.cuh"
#include "stacking/stacking.h"

namespace fbk {
namespace {

// The rows of RingTables, with RingHarmonics' formula θ = 2π·((m·j) mod n_theta)/n_theta.
__global__ void __launch_bounds__(kRingThreads) ring_tables_kernel(double* table, int64_t n_theta, int64_t m_max) {
  const double two_pi = 6.283185307179586476925286766559;
  const int64_t total = ring_table_rows(m_max) * n_theta;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = e / n_theta, j = e % n_theta;
    const bool sine = row == 1 || row >= 2 + (m_max + 1);
    const int64_t m = row < 2 ? 1 : (row - 2) % (m_max + 1);
    const double th = two_pi * double((m * j) % n_theta) / double(n_theta);
    table[e] = sine ? sin(th) : cos(th);
  }
}

// Rings of images [M, P, P] about their centre pixel, bilinear, at radii [R] (task = i·R + k).
template <class T>
struct ImageRings {
  MapSampler<T, uint8_t> image;  // the sampler of image 0
  int64_t image_stride, R;
  double centre;
  const double* radii;
  int64_t radii_stride;
  RingOut outputs;

  struct Ring {
    MapSampler<T, uint8_t> image;
    double centre, r;

    // A sample off the image (radii are not validated on the device) is NaN.
    __device__ double sample(double cos_t, double sin_t) const {
      Stencil<Interpolation::Bilinear> s;
      return image.at(centre + r * cos_t, centre + r * sin_t, s) ? image.value(s, 0)
                                                                 : std::numeric_limits<double>::quiet_NaN();
    }
  };

  __device__ Ring ring(int64_t task) const {
    Ring ring{image, centre, radii[(task % R) * radii_stride]};
    ring.image.maps += (task / R) * image_stride;
    return ring;
  }

  __device__ void out(int64_t task, int64_t m, double*& c, double*& s) const {
    outputs.at(task / R, 0, m, task % R, c, s);
  }
};

}  // namespace

// Fills the tables in `workspace` on `stream` and returns views of them.
RingTables ring_tables(const TensorView& workspace, int64_t n_theta, int64_t m_max, cudaStream_t stream) {
  check_ring_sizes(n_theta, m_max);
  check_workspace(workspace, multipoles_workspace_bytes(n_theta, m_max), "multipoles_workspace_bytes");
  double* table = workspace.ptr<double>();
  ring_tables_kernel<<<stride_blocks(ring_table_rows(m_max) * n_theta, kRingThreads), kRingThreads, 0, stream>>>(
      table, n_theta, m_max);
  check_launch("multipoles (tables)");
  return RingTables{table, table + n_theta, table + 2 * n_theta, table + (3 + m_max) * n_theta, n_theta, m_max};
}

int64_t multipoles_workspace_bytes(int64_t n_theta, int64_t m_max) {
  check_ring_sizes(n_theta, m_max);
  return ring_table_rows(m_max) * n_theta * int64_t(sizeof(double));
}

void multipoles_cuda(const TensorView& image, const TensorView& radii, int64_t n_theta, int64_t m_max,
                     const TensorView& C, const TensorView& S, const TensorView& workspace, uintptr_t stream) {
  const int64_t M = image.sizes[0], P = image.sizes[1], R = radii.sizes[0];
  const cudaStream_t s = as_stream(stream);
  const RingTables tables = ring_tables(workspace, n_theta, m_max, s);
  const auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    const ImageRings<T> rings{
        MapSampler<T, uint8_t>{image.ptr<const T>(), 1, P, P, 0, image.strides[1], image.strides[2], nullptr, 0, 0},
        image.strides[0],
        R,
        double((P - 1) / 2),
        radii.ptr<const double>(),
        radii.strides[0],
        ring_out(C, S)};
    launch_ring_multipoles(rings, tables, M * R, s);
  };
  switch (image.dtype) {
    case DType::Float32: return run(TypeTag<float>{});
    case DType::Float64: return run(TypeTag<double>{});
    default: fail("image: expected float32 or float64, got ", dtype_name(image.dtype));
  }
}

}  // namespace fbk
