// out[indices[w, j]] += scale · values[w, j] on the GPU, worker by worker in rank order, so every
// rank that decompresses the same messages gets the same bits. Indices within a row are distinct
// (as TopK produces them), so the entries of one row are added in parallel without atomics; rows
// are ordered by one block looping over them (small rows) or by one launch per row.
// Out-of-range indices are skipped (the CPU kernel raises; check=True verifies them first).
#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "compress/compress.h"

namespace fbk {
namespace {

constexpr int kThreads = 256;
constexpr int kSmallThreads = 1024;
constexpr int64_t kSmallRow = 2048;  // rows up to this long are all added by one block

template <class T, class I>
struct Rows {
  T* out;
  int64_t n;
  const I* indices;
  int64_t is0, is1;
  const T* values;
  int64_t vs0, vs1;
  acc_t<T> scale;

  __device__ void add(int64_t w, int64_t j) const {
    const int64_t i = static_cast<int64_t>(indices[w * is0 + j * is1]);
    if (i >= 0 && i < n) out[i] = scaled_add(out[i], values[w * vs0 + j * vs1], scale);
  }
};

// One block, every row in order: the barrier orders a row's writes before the next row's reads.
template <class T, class I>
__global__ void __launch_bounds__(kSmallThreads) decompress_rows_kernel(Rows<T, I> rows, int64_t workers, int64_t k) {
  for (int64_t w = 0; w < workers; ++w) {
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) rows.add(w, j);
    __syncthreads();
  }
}

// Row w, grid-stride over its entries.
template <class T, class I>
__global__ void __launch_bounds__(kThreads) decompress_row_kernel(Rows<T, I> rows, int64_t w, int64_t k) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < k; j += stride) rows.add(w, j);
}

}  // namespace

void decompress_add_cuda(const TensorView& out, const TensorView& indices, const TensorView& values, double scale,
                         uintptr_t stream) {
  const int64_t workers = indices.sizes[0], k = indices.sizes[1];
  if (workers == 0 || k == 0) return;
  const cudaStream_t s = as_stream(stream);
  dispatch_message(out.dtype, indices.dtype, [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    const Rows<T, I> rows{out.ptr<T>(),         out.numel(),        indices.ptr<const I>(),
                          indices.strides[0],   indices.strides[1], values.ptr<const T>(),
                          values.strides[0],    values.strides[1],  static_cast<acc_t<T>>(scale)};
    if (k <= kSmallRow) {
      decompress_rows_kernel<<<1, kSmallThreads, 0, s>>>(rows, workers, k);
      check_launch("decompress_add");
      return;
    }
    const unsigned int blocks = unsigned(std::min<int64_t>((k + kThreads - 1) / kThreads, 65535));
    for (int64_t w = 0; w < workers; ++w) {
      decompress_row_kernel<<<blocks, kThreads, 0, s>>>(rows, w, k);
      check_launch("decompress_add");
    }
  });
}

}  // namespace fbk
