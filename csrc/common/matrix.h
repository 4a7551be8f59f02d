// A typed [rows, cols] view with arbitrary strides (in elements), usable on host and device.
#pragma once

#include <cstdint>

#include "common/macros.h"
#include "common/tensor_view.h"

namespace fbk {

template <class T>
struct Matrix {
  T* data = nullptr;  // nullptr for an absent optional input
  int64_t s0 = 0, s1 = 0;
  FBK_HD T& operator()(int64_t r, int64_t c) const { return data[r * s0 + c * s1]; }
  FBK_HD explicit operator bool() const { return data != nullptr; }
};

// [rows, cols] view of a 2-D TensorView, or of a 1-D one as a single column.
template <class T>
Matrix<T> matrix(const TensorView& v) {
  return Matrix<T>{v.ptr<T>(), v.strides[0], v.ndim > 1 ? v.strides[1] : 0};
}

template <class T>
Matrix<T> matrix(const TensorView* v) {
  return v == nullptr ? Matrix<T>{} : matrix<T>(*v);
}

}  // namespace fbk
