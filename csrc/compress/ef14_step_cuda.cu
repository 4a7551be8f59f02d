// Fused EF14 step on the GPU: t = e + lr·grad, v = TopK(t) into the message, e = t − v (t
// everywhere, 0 at the selected entries), without materialising t. The selection passes only
// read; the final pass computes t once more and writes every element of e.
#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "compress/compress.h"
#include "compress/radix_select_cuda.cuh"

namespace fbk {
namespace {

template <class T>
__device__ inline T ef14_t(T grad, T error, acc_t<T> lr) {
  return from_acc<T>(ef14_accumulate(grad, error, lr));
}

// Keys of t rounded to T (as the CPU kernel selects).
template <class T>
struct EF14Source {
  using U = key_t<T>;
  static constexpr int V = 16 / int(sizeof(T));
  const T* grad;
  const T* error;
  acc_t<T> lr;
  bool vec;

  __device__ U key(int64_t i) const { return magnitude_key(ef14_t(grad[i], error[i], lr)); }
  __device__ void keys(int64_t i, int count, U (&out)[V]) const {
    T g[V], e[V];
    radix::load_span(grad, i, count, vec, g);
    radix::load_span(error, i, count, vec, e);
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = magnitude_key(ef14_t(g[j], e[j], lr));
  }
};

template <class T, class I>
struct EF14Sink {
  static constexpr bool kVisitAll = true;
  static constexpr int V = 16 / int(sizeof(T));
  const T* grad;
  T* error;
  T* values;
  I* indices;
  acc_t<T> lr;
  bool vec;

  // Every span of the input, once: e = t, or 0 at the selected entries (which go to the message).
  __device__ void visit(int64_t i, int count, unsigned int selected, const long long (&slots)[V]) const {
    T g[V], e[V];
    radix::load_span(grad, i, count, vec, g);
    radix::load_span(static_cast<const T*>(error), i, count, vec, e);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const T t = ef14_t(g[j], e[j], lr);
      e[j] = t;
      if ((selected >> j) & 1u) {
        values[slots[j]] = t;
        indices[slots[j]] = static_cast<I>(i + j);
        e[j] = from_acc<T>(acc_t<T>(0));
      }
    }
    radix::store_span(error, i, count, vec, e);
  }
};

}  // namespace

void ef14_step_cuda(const TensorView& grad, const TensorView& error, int64_t k, double lr, bool allow_nan,
                    const TensorView& values, const TensorView& indices, const TensorView& status,
                    const TensorView& workspace, uintptr_t stream) {
  const int64_t n = grad.numel();
  dispatch_message(grad.dtype, indices.dtype, [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using A = acc_t<T>;
    using I = typename decltype(it)::type;
    const T* gr = grad.ptr<const T>();
    T* state = error.ptr<T>();
    const bool vec = (reinterpret_cast<uintptr_t>(gr) | reinterpret_cast<uintptr_t>(state)) % 16 == 0;
    const A step = static_cast<A>(lr);
    const EF14Source<T> src{gr, state, step, vec};
    const EF14Sink<T, I> sink{gr, state, values.ptr<T>(), indices.ptr<I>(), step, vec};
    radix::select_cuda("ef14_step", src, sink, n, k, allow_nan, status, workspace, stream);
  });
}

}  // namespace fbk
