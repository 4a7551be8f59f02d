// A non-owning view of a tensor or array: pointer, sizes, strides (in elements), dtype, device.
#pragma once

#include <cstdint>

#include "common/dtype.h"
#include "common/macros.h"

namespace fbk {

constexpr int kMaxDims = 8;

enum class DeviceType : int { CPU = 0, CUDA = 1 };

struct TensorView {
  void* data = nullptr;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  int ndim = 0;
  DType dtype = DType::Float32;
  DeviceType device_type = DeviceType::CPU;
  int device_index = 0;

  int64_t size(int d) const { return sizes[d]; }
  int64_t stride(int d) const { return strides[d]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= sizes[d];
    return n;
  }
  template <class T> T* ptr() const { return static_cast<T*>(data); }
};

// Element offset of row r of the first `ndim` dimensions of a view, with arbitrary strides:
// rows of [B, T-1, V] sliced out of [B, T, V] are addressed without a copy.
struct RowIndexer {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  FBK_HD int64_t offset(int64_t row) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      off += (row % sizes[d]) * strides[d];
      row /= sizes[d];
    }
    return off;
  }
};

inline RowIndexer row_indexer(const TensorView& v, int ndim) {
  RowIndexer r;
  r.ndim = ndim;
  for (int d = 0; d < ndim; ++d) {
    r.sizes[d] = v.sizes[d];
    r.strides[d] = v.strides[d];
  }
  return r;
}

}  // namespace fbk
