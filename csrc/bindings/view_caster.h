// Converts the Python tuple (data_ptr, sizes, strides, dtype_code, device_type, device_index),
// built by feedbackkit/ops/_library.py::view, into fbk::TensorView. Shared by _C and _cuda.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common/tensor_view.h"

namespace pybind11::detail {

template <>
struct type_caster<fbk::TensorView> {
  PYBIND11_TYPE_CASTER(fbk::TensorView, const_name("TensorView"));

  bool load(handle src, bool) {
    if (!isinstance<tuple>(src)) return false;
    const auto t = reinterpret_borrow<tuple>(src);
    if (t.size() != 6) return false;
    const auto sizes = t[1].cast<tuple>();
    const auto strides = t[2].cast<tuple>();
    if (sizes.size() != strides.size() || sizes.size() > size_t(fbk::kMaxDims))
      throw value_error("TensorView: at most " + std::to_string(fbk::kMaxDims) + " dimensions are supported");
    value.data = reinterpret_cast<void*>(t[0].cast<uintptr_t>());
    value.ndim = int(sizes.size());
    for (int d = 0; d < value.ndim; ++d) {
      value.sizes[d] = sizes[d].cast<int64_t>();
      value.strides[d] = strides[d].cast<int64_t>();
    }
    value.dtype = static_cast<fbk::DType>(t[3].cast<int>());
    value.device_type = static_cast<fbk::DeviceType>(t[4].cast<int>());
    value.device_index = t[5].cast<int>();
    return true;
  }

  static handle cast(const fbk::TensorView&, return_value_policy, handle) {
    throw type_error("TensorView cannot be returned to Python");
  }
};

}  // namespace pybind11::detail
