// Fused EF21 step on the GPU: c = TopK(grad − g_i) without materialising the difference, written
// to the message, and g_i += c at the selected entries.
#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "compress/compress.h"
#include "compress/radix_select_cuda.cuh"

namespace fbk {
namespace {

// Keys of the difference in the accumulation type (as the CPU kernel selects).
template <class T>
struct EF21Source {
  using U = key_t<acc_t<T>>;
  static constexpr int V = 16 / int(sizeof(T));
  const T* grad;
  const T* g_i;
  bool vec;

  __device__ U key(int64_t i) const { return magnitude_key(ef21_difference(grad[i], g_i[i])); }
  __device__ void keys(int64_t i, int count, U (&out)[V]) const {
    T g[V], s[V];
    radix::load_span(grad, i, count, vec, g);
    radix::load_span(g_i, i, count, vec, s);
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = magnitude_key(ef21_difference(g[j], s[j]));
  }
};

template <class T, class I>
struct EF21Sink {
  static constexpr bool kVisitAll = false;
  const T* grad;
  T* g_i;
  T* values;
  I* indices;

  __device__ void take(int64_t slot, int64_t i) const {
    using A = acc_t<T>;
    const T c = from_acc<T>(ef21_difference(grad[i], g_i[i]));
    values[slot] = c;
    indices[slot] = static_cast<I>(i);
    g_i[i] = from_acc<T>(to_acc<A>(g_i[i]) + to_acc<A>(c));
  }
};

}  // namespace

void ef21_step_cuda(const TensorView& grad, const TensorView& g_i, int64_t k, bool allow_nan,
                    const TensorView& values, const TensorView& indices, const TensorView& status,
                    const TensorView& workspace, uintptr_t stream) {
  const int64_t n = grad.numel();
  dispatch_message(grad.dtype, indices.dtype, [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    const T* gr = grad.ptr<const T>();
    T* state = g_i.ptr<T>();
    const bool vec = (reinterpret_cast<uintptr_t>(gr) | reinterpret_cast<uintptr_t>(state)) % 16 == 0;
    const EF21Source<T> src{gr, state, vec};
    const EF21Sink<T, I> sink{gr, state, values.ptr<T>(), indices.ptr<I>()};
    radix::select_cuda("ef21_step", src, sink, n, k, allow_nan, status, workspace, stream);
  });
}

}  // namespace fbk
