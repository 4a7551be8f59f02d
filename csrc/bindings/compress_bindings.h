// Bindings of the `compress` family, shared by both modules. Besides the macros documented in
// reward_bindings.h, the including module defines
//   FBK_WORKSPACE_PARAM  the workspace parameter of selecting kernels (", TV workspace" on CUDA)
//   FBK_WORKSPACE_ARG    the matching argument (", workspace" on CUDA)
#pragma once

#include <pybind11/pybind11.h>

#include "bindings/view_caster.h"
#include "common/checks.h"
#include "compress/compress.h"

namespace fbk {

// 1 <= k <= n, and the message views hold k values of the input's dtype and k int32/int64 indices.
inline void check_message(const TensorView& in, int64_t k, const TensorView& values, const TensorView& indices,
                          const TensorView& status) {
  FBK_CHECK(k >= 1 && k <= in.numel(), "k: expected 1 <= k <= ", in.numel(), ", got ", k);
  FBK_CHECK(values.dtype == in.dtype && values.numel() == k, "values: expected ", k, " elements of ",
            dtype_name(in.dtype));
  FBK_CHECK((indices.dtype == DType::Int32 || indices.dtype == DType::Int64) && indices.numel() == k,
            "indices: expected ", k, " int32 or int64 elements");
  FBK_CHECK(status.dtype == DType::Int64 && status.numel() == 1, "status: expected one int64");
}

// A state updated in place next to `grad`: same number of elements and dtype.
inline void check_state(const TensorView& grad, const TensorView& state, const char* name) {
  FBK_CHECK(state.numel() == grad.numel() && state.dtype == grad.dtype, name, ": expected ", grad.numel(),
            " elements of ", dtype_name(grad.dtype));
}

// Messages of W workers: indices and values of matching [W, k] shapes, values in out's dtype.
inline void check_rows(const TensorView& out, const TensorView& indices, const TensorView& values) {
  FBK_CHECK(indices.ndim == 2 && values.ndim == 2 && indices.sizes[0] == values.sizes[0] &&
                indices.sizes[1] == values.sizes[1],
            "indices, values: expected matching [W, k] shapes");
  FBK_CHECK(values.dtype == out.dtype, "values: expected the dtype of out, ", dtype_name(out.dtype), ", got ",
            dtype_name(values.dtype));
}

inline void bind_compress(pybind11::module_& m) {
  using TV = const TensorView&;
  m.def("topk", [](TV x, int64_t k, int by, bool allow_nan, TV values, TV indices,
                   TV status FBK_WORKSPACE_PARAM FBK_STREAM_PARAM) {
    check_message(x, k, values, indices, status);
    FBK_UNLOCK;
    FBK_KERNEL(topk)(x, k, TopKBy(by), allow_nan, values, indices, status FBK_WORKSPACE_ARG FBK_STREAM_ARG);
  });
  m.def("ef21_step", [](TV grad, TV g_i, int64_t k, bool allow_nan, TV values, TV indices,
                        TV status FBK_WORKSPACE_PARAM FBK_STREAM_PARAM) {
    check_message(grad, k, values, indices, status);
    check_state(grad, g_i, "g_i");
    FBK_UNLOCK;
    FBK_KERNEL(ef21_step)(grad, g_i, k, allow_nan, values, indices, status FBK_WORKSPACE_ARG FBK_STREAM_ARG);
  });
  m.def("ef14_step", [](TV grad, TV error, int64_t k, double lr, bool allow_nan, TV values, TV indices,
                        TV status FBK_WORKSPACE_PARAM FBK_STREAM_PARAM) {
    check_message(grad, k, values, indices, status);
    check_state(grad, error, "error");
    FBK_UNLOCK;
    FBK_KERNEL(ef14_step)(grad, error, k, lr, allow_nan, values, indices, status FBK_WORKSPACE_ARG FBK_STREAM_ARG);
  });
  m.def("decompress_add", [](TV out, TV indices, TV values, double scale FBK_STREAM_PARAM) {
    check_rows(out, indices, values);
    FBK_UNLOCK;
    FBK_KERNEL(decompress_add)(out, indices, values, scale FBK_STREAM_ARG);
  });
}

}  // namespace fbk
