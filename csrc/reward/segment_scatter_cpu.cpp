#include "common/checks.h"
#include "reward/reward.h"

namespace fbk {

void validate_segments(const TensorView& row_ptr, const TensorView& positions) {
  check_ndim(row_ptr, "row_ptr", 1);
  check_ndim(positions, "positions", 1);
  FBK_CHECK(row_ptr.sizes[0] >= 1, "'row_ptr' must have B+1 >= 1 entries; got 0");
  const int64_t batch = row_ptr.sizes[0] - 1, nnz = positions.sizes[0];
  dispatch_index(row_ptr.dtype, "row_ptr", [&](auto it) {
    using I = typename decltype(it)::type;
    const auto ptr = matrix<const I>(row_ptr);
    FBK_CHECK(ptr(0, 0) == 0, "'row_ptr' must start at 0; got row_ptr[0]=", ptr(0, 0));
    for (int64_t b = 0; b < batch; ++b)
      FBK_CHECK(ptr(b, 0) <= ptr(b + 1, 0), "'row_ptr' must be non-decreasing; got row_ptr[", b, "]=", ptr(b, 0),
                " > row_ptr[", b + 1, "]=", ptr(b + 1, 0));
    FBK_CHECK(ptr(batch, 0) == nnz, "'row_ptr' must end at nnz=", nnz, " (the length of 'values'); got row_ptr[",
              batch, "]=", ptr(batch, 0));
  });
  dispatch_index(positions.dtype, "positions", [&](auto it) {
    using I = typename decltype(it)::type;
    const auto pos = matrix<const I>(positions);
    for (int64_t j = 0; j < nnz; ++j)
      FBK_CHECK(pos(j, 0) >= 0, "'positions' must be >= 0; got positions[", j, "]=", pos(j, 0));
  });
}

void segment_scatter_cpu(const TensorView& values, const TensorView& row_ptr, const TensorView& positions,
                         const Opt& mask, SegmentMode mode, bool clamp, const TensorView& out) {
  validate_segments(row_ptr, positions);
  check_ndim(out, "out", 2);
  const int64_t batch = out.sizes[0], length = out.sizes[1];
  dispatch_segments(values, row_ptr, positions, mask, [&](auto tt, auto it, auto pt, auto mt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    using I = typename decltype(it)::type;
    using P = typename decltype(pt)::type;
    using M = typename decltype(mt)::type;
    const auto ptr = matrix<const I>(row_ptr);
    const auto m = matrix<const M>(opt_ptr(mask));
    const auto o = matrix<A>(out);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < length; ++t) o(b, t) = A(0);
      place_segments(matrix<const T>(values), matrix<const P>(positions), ptr(b, 0), ptr(b + 1, 0),
                     last_valid(m, b, length) + 1, mode, clamp, o, b);
    }
  });
}

}  // namespace fbk
