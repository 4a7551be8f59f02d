// sequence_reduce: per-row sum or mean of token values, rows given by a [B, T] mask or by
// cu_seqlens[B+1] over packed [N] values. The template op every family copies: see
// docs/adding_an_op.md.
#pragma once

#include <cstdint>
#include <optional>

#include "common/checks.h"
#include "common/dtype.h"
#include "common/macros.h"
#include "common/tensor_view.h"

namespace fbk {

// Codes must match feedbackkit/ops/logprob.py::REDUCE_MODES.
enum class ReduceMode : int { Sum = 0, Mean = 1 };

// One row of the reduction: `len` elements at values[i * stride], optional mask[i * mask_stride].
// T is const for the forward (read) and mutable for the backward (write) pass.
template <class T, class M>
struct RowSpan {
  T* values;
  int64_t stride;
  const M* mask;  // nullptr when rows come from cu_seqlens
  int64_t mask_stride;
  int64_t len;
  FBK_HD bool on(int64_t i) const { return mask == nullptr || mask[i * mask_stride] != M(0); }
};

// Finishes a row reduction: x for sum, x / count for mean (0 for an empty row). Applied to the
// row sum in the forward and to the upstream gradient in the backward (the mean is linear).
template <class A>
FBK_HD_INLINE A reduce_finish(ReduceMode mode, A x, int64_t count) {
  if (mode == ReduceMode::Sum) return x;
  return count > 0 ? x / A(count) : A(0);
}

// True when cu_seqlens describes B consecutive segments covering exactly [0, n).
template <class I>
FBK_HD_INLINE bool segment_valid(const I* cu, int64_t b, int64_t batch, int64_t n) {
  return cu[0] == 0 && cu[batch] == n && cu[b] <= cu[b + 1];
}

// Resolves the element types and calls f(TypeTag<T>, TypeTag<M>, TypeTag<I>). Mask rows
// instantiate only mask types (I = int64_t, unused) and packed rows only index types
// (M = uint8_t, unused), which keeps the number of kernel instantiations small.
template <class F>
void dispatch_rows(const TensorView& values, const std::optional<TensorView>& mask,
                   const std::optional<TensorView>& cu_seqlens, F&& f) {
  dispatch_float(values.dtype, "values", [&](auto vt) {
    if (mask) {
      dispatch_mask(mask->dtype, "mask", [&](auto mt) { f(vt, mt, TypeTag<int64_t>{}); });
    } else {
      dispatch_index(cu_seqlens->dtype, "cu_seqlens", [&](auto it) { f(vt, TypeTag<uint8_t>{}, it); });
    }
  });
}

// Host-side check that cu_seqlens starts at 0, never decreases and ends at n; raises ValueError.
void validate_cu_seqlens(const TensorView& cu, int64_t n);

void sequence_reduce_cpu(const TensorView& values, const std::optional<TensorView>& mask,
                         const std::optional<TensorView>& cu_seqlens, ReduceMode mode,
                         const TensorView& out);
void sequence_reduce_backward_cpu(const TensorView& grad_out, const std::optional<TensorView>& mask,
                                  const std::optional<TensorView>& cu_seqlens, ReduceMode mode,
                                  const TensorView& grad_values);

// CUDA versions never synchronise and never raise on data: a malformed cu_seqlens makes the
// affected rows NaN (forward) or their gradients NaN (backward) instead of reading out of bounds.
void sequence_reduce_cuda(const TensorView& values, const std::optional<TensorView>& mask,
                          const std::optional<TensorView>& cu_seqlens, ReduceMode mode,
                          const TensorView& out, uintptr_t stream);
void sequence_reduce_backward_cuda(const TensorView& grad_out, const std::optional<TensorView>& mask,
                                   const std::optional<TensorView>& cu_seqlens, ReduceMode mode,
                                   const TensorView& grad_values, uintptr_t stream);

// Shape checks shared by both devices; returns the number of rows B. `out` is the [B] result
// (forward) or the upstream gradient (backward).
inline int64_t check_sequence_reduce_args(const TensorView& values, const std::optional<TensorView>& mask,
                                          const std::optional<TensorView>& cu_seqlens, const TensorView& out) {
  FBK_CHECK(mask.has_value() != cu_seqlens.has_value(), "sequence_reduce: give exactly one of mask and cu_seqlens");
  check_ndim(out, "out", 1);
  if (mask) {
    check_ndim(values, "values", 2);
    check_ndim(*mask, "mask", 2);
    check_size(*mask, "mask", 0, values.sizes[0]);
    check_size(*mask, "mask", 1, values.sizes[1]);
    check_size(out, "out", 0, values.sizes[0]);
    return values.sizes[0];
  }
  check_ndim(values, "values", 1);
  check_ndim(*cu_seqlens, "cu_seqlens", 1);
  FBK_CHECK(cu_seqlens->sizes[0] >= 1, "cu_seqlens: expected at least one entry");
  check_size(out, "out", 0, cu_seqlens->sizes[0] - 1);
  return cu_seqlens->sizes[0] - 1;
}

}  // namespace fbk
