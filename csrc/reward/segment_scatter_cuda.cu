#include <cmath>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "reward/reward.h"
#include "reward/reward_cuda.cuh"

namespace fbk {
namespace {

// Block per row: the row is zeroed in parallel, then one thread applies its segments in CSR order
// (deterministic). A malformed row_ptr or a negative position makes the row NaN: nothing outside
// values[0, nnz) is read.
template <class T, class I, class P, class M, class A>
__global__ void segment_scatter_kernel(Matrix<const T> v, Matrix<const I> ptr, Matrix<const P> pos, Matrix<const M> m,
                                       int64_t batch, int64_t nnz, int64_t length, SegmentMode mode, bool clamp,
                                       Matrix<A> o) {
  const int64_t b = blockIdx.x;
  const int64_t begin = ptr(b, 0), end = ptr(b + 1, 0);
  bool bad = int64_t(ptr(0, 0)) != 0 || int64_t(ptr(batch, 0)) != nnz || begin < 0 || begin > end || end > nnz;
  for (int64_t j = begin + threadIdx.x; !bad && j < end; j += blockDim.x) bad = pos(j, 0) < P(0);
  bad = __syncthreads_or(bad);
  const A fill = bad ? A(NAN) : A(0);
  for (int64_t t = threadIdx.x; t < length; t += blockDim.x) o(b, t) = fill;
  if (bad) return;
  const int64_t row_length = block_last_valid(m, b, length) + 1;
  __syncthreads();  // the zeros land before the segments
  if (threadIdx.x == 0) place_segments(v, pos, begin, end, row_length, mode, clamp, o, b);
}

}  // namespace

void segment_scatter_cuda(const TensorView& values, const TensorView& row_ptr, const TensorView& positions,
                          const Opt& mask, SegmentMode mode, bool clamp, const TensorView& out, uintptr_t stream) {
  check_ndim(row_ptr, "row_ptr", 1);
  check_ndim(positions, "positions", 1);
  check_ndim(out, "out", 2);
  FBK_CHECK(row_ptr.sizes[0] >= 1, "'row_ptr' must have B+1 >= 1 entries; got 0");
  const int64_t batch = out.sizes[0], length = out.sizes[1], nnz = positions.sizes[0];
  check_size(row_ptr, "row_ptr", 0, batch + 1);
  if (batch == 0 || length == 0) return;
  check_grid_rows(batch, "row_ptr");
  dispatch_segments(values, row_ptr, positions, mask, [&](auto tt, auto it, auto pt, auto mt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    using I = typename decltype(it)::type;
    using P = typename decltype(pt)::type;
    using M = typename decltype(mt)::type;
    segment_scatter_kernel<T, I, P, M, A><<<unsigned(batch), threads_for(length), 0, as_stream(stream)>>>(
        matrix<const T>(values), matrix<const I>(row_ptr), matrix<const P>(positions), matrix<const M>(opt_ptr(mask)),
        batch, nnz, length, mode, clamp, matrix<A>(out));
    check_launch("segment_scatter");
  });
}

}  // namespace fbk
