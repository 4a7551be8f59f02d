// Argument checks for the native layer. The Python layer validates first with friendlier
// messages; these keep the kernels safe when called directly. Failures raise ValueError.
#pragma once

#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>

#include "common/tensor_view.h"

namespace fbk {

template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream msg;
  (msg << ... << parts);
  throw std::invalid_argument(msg.str());
}

#define FBK_CHECK(cond, ...)          \
  do {                                \
    if (!(cond)) ::fbk::fail(__VA_ARGS__); \
  } while (0)

inline void check_ndim(const TensorView& v, const char* arg, int ndim) {
  FBK_CHECK(v.ndim == ndim, arg, ": expected ", ndim, " dimensions, got ", v.ndim);
}

inline void check_size(const TensorView& v, const char* arg, int dim, int64_t expected) {
  FBK_CHECK(v.sizes[dim] == expected, arg, ": expected size ", expected, " in dimension ", dim, ", got ",
            v.sizes[dim]);
}

inline void check_dtype(const TensorView& v, const char* arg, std::initializer_list<DType> allowed) {
  for (DType d : allowed)
    if (v.dtype == d) return;
  fail(arg, ": unsupported dtype ", dtype_name(v.dtype));
}

inline void check_device(const TensorView& v, const char* arg, DeviceType device) {
  FBK_CHECK(v.device_type == device, arg, ": expected a ", device == DeviceType::CPU ? "CPU" : "CUDA",
            " tensor");
}

// A view of exactly `sizes`, one of `dtypes`, on `device`.
inline void check_view(const TensorView& v, const char* arg, std::initializer_list<int64_t> sizes,
                       std::initializer_list<DType> dtypes, DeviceType device) {
  check_ndim(v, arg, int(sizes.size()));
  int dim = 0;
  for (int64_t size : sizes) check_size(v, arg, dim++, size);
  check_dtype(v, arg, dtypes);
  check_device(v, arg, device);
}

}  // namespace fbk
