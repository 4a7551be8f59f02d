// Exact top-k of a contiguous 1-D tensor by magnitude or value, on the GPU.
#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "compress/compress.h"
#include "compress/radix_select_cuda.cuh"

namespace fbk {
namespace {

template <class T>
struct TopKSource {
  using U = key_t<T>;
  static constexpr int V = 16 / int(sizeof(T));
  const T* x;
  TopKBy by;
  bool vec;

  __device__ U key(int64_t i) const { return order_key(x[i], by); }
  __device__ void keys(int64_t i, int count, U (&out)[V]) const {
    T v[V];
    radix::load_span(x, i, count, vec, v);
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = order_key(v[j], by);
  }
};

template <class T, class I>
struct TopKSink {
  static constexpr bool kVisitAll = false;
  const T* x;
  T* values;
  I* indices;

  __device__ void take(int64_t slot, int64_t i) const {
    values[slot] = x[i];
    indices[slot] = static_cast<I>(i);
  }
};

}  // namespace

int64_t compress_workspace_bytes(int64_t n) { return radix::layout(n < 0 ? 0 : n).total; }

void topk_cuda(const TensorView& x, int64_t k, TopKBy by, bool allow_nan, const TensorView& values,
               const TensorView& indices, const TensorView& status, const TensorView& workspace, uintptr_t stream) {
  const int64_t n = x.numel();
  dispatch_message(x.dtype, indices.dtype, [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    const T* in = x.ptr<const T>();
    const TopKSource<T> src{in, by, reinterpret_cast<uintptr_t>(in) % 16 == 0};
    const TopKSink<T, I> sink{in, values.ptr<T>(), indices.ptr<I>()};
    radix::select_cuda("topk", src, sink, n, k, allow_nan, status, workspace, stream);
  });
}

}  // namespace fbk
