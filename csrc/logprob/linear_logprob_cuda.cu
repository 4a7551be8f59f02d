#include "common/cuda_utils.cuh"
#include "common/dtype.h"
#include "common/math.h"
#include "logprob/linear_logprob.h"
#include "logprob/sequence_logprob.h"
#include "logprob/softmax_rows_cuda.cuh"

namespace fbk {
namespace {

template <class T>
struct Tile {
  const T* x;
  int64_t rs, cs;  // row and column strides
};

template <class T, class I, class A>
__global__ void tile_forward_kernel(Tile<T> tile, const I* labels, int64_t ls, TileArgs a, A* m, A* s, A* t, A* ll) {
  const int64_t r = blockIdx.x;
  const int64_t label = int64_t(labels[r * ls]);
  if (label == a.ignore_index) return;
  const T* row = tile.x + r * tile.rs;
  const A inv_t = a.inv_temperature;
  SoftmaxStats<A> st;
  for (int64_t j = threadIdx.x; j < a.width; j += blockDim.x)
    st.merge(SoftmaxStats<A>{to_acc<A>(row[j * tile.cs]) * inv_t, A(1), A(0)});
  st = block_merge(st);
  if (threadIdx.x != 0) return;
  SoftmaxStats<A> total{m[r], s[r], t[r]};
  total.merge(st);
  m[r] = total.m;
  s[r] = total.s;
  t[r] = total.t;
  if (label >= a.v0 && label < a.v0 + a.width) ll[r] = to_acc<A>(row[(label - a.v0) * tile.cs]) * inv_t;
}

template <class A>
struct TileGrads {
  const A* lse;
  const A* entropy;
  const A* coef;
  const A* grad_entropy;
  const A* grad_logp;
};

template <class T, class I, class A>
__global__ void tile_backward_kernel(Tile<T> tile, const I* labels, int64_t ls, TileArgs a, TileGrads<A> g, T* dx,
                                     int64_t drs, int64_t dcs) {
  const int64_t r = blockIdx.x;
  const int64_t label = int64_t(labels[r * ls]);
  const T* row = tile.x + r * tile.rs;
  T* drow = dx + r * drs;
  if (label == a.ignore_index) {
    for (int64_t j = threadIdx.x; j < a.width; j += blockDim.x) drow[j * dcs] = from_acc<T>(A(0));
    return;
  }
  const A inv_t = a.inv_temperature, lse = g.lse[r], entropy = g.entropy[r], coef = g.coef[r];
  const A g_entropy = g.grad_entropy[r];
  const int64_t target = label - a.v0;  // in [0, width) when the label is in this tile
  for (int64_t j = threadIdx.x; j < a.width; j += blockDim.x) {
    A d = softmax_grad(to_acc<A>(row[j * tile.cs]) * inv_t - lse, coef, g_entropy, entropy);
    if (j == target) d += g.grad_logp[r];
    drow[j * dcs] = from_acc<T>(d * inv_t);
  }
}

}  // namespace

void linear_logprob_tile_forward_cuda(const TensorView& tile, const TensorView& labels, int64_t v0,
                                      int64_t ignore_index, double temperature, const TensorView& m,
                                      const TensorView& s, const TensorView& t, const TensorView& label_logit,
                                      uintptr_t stream) {
  const TileArgs a = check_tile_args(tile, labels, v0, ignore_index, temperature);
  if (a.rows == 0) return;
  FBK_CHECK(a.rows <= 0x7FFFFFFF, "tile: at most 2^31-1 rows are supported, got ", a.rows);
  dispatch_float_index(tile.dtype, "tile", labels.dtype, "labels", [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    tile_forward_kernel<T, I, A><<<unsigned(a.rows), threads_for(a.width), 0, as_stream(stream)>>>(
        Tile<T>{tile.ptr<const T>(), tile.strides[0], tile.strides[1]}, labels.ptr<const I>(), labels.strides[0], a,
        m.ptr<A>(), s.ptr<A>(), t.ptr<A>(), label_logit.ptr<A>());
    check_launch("linear_logprob_tile_forward");
  });
}

void linear_logprob_tile_backward_cuda(const TensorView& tile, const TensorView& labels, int64_t v0,
                                       int64_t ignore_index, double temperature, const TensorView& lse,
                                       const TensorView& entropy, const TensorView& coef,
                                       const TensorView& grad_entropy, const TensorView& grad_logp,
                                       const TensorView& grad_tile, uintptr_t stream) {
  const TileArgs a = check_tile_args(tile, labels, v0, ignore_index, temperature);
  if (a.rows == 0) return;
  FBK_CHECK(a.rows <= 0x7FFFFFFF, "tile: at most 2^31-1 rows are supported, got ", a.rows);
  dispatch_float_index(tile.dtype, "tile", labels.dtype, "labels", [&](auto vt, auto it) {
    using T = typename decltype(vt)::type;
    using I = typename decltype(it)::type;
    using A = acc_t<T>;
    const TileGrads<A> g{lse.ptr<const A>(), entropy.ptr<const A>(), coef.ptr<const A>(),
                         grad_entropy.ptr<const A>(), grad_logp.ptr<const A>()};
    tile_backward_kernel<T, I, A><<<unsigned(a.rows), threads_for(a.width), 0, as_stream(stream)>>>(
        Tile<T>{tile.ptr<const T>(), tile.strides[0], tile.strides[1]}, labels.ptr<const I>(), labels.strides[0], a,
        g, grad_tile.ptr<T>(), grad_tile.strides[0], grad_tile.strides[1]);
    check_launch("linear_logprob_tile_backward");
  });
}

}  // namespace fbk
