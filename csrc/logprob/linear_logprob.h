// linear_logprob tile kernels. The Python layer computes logits one vocabulary tile at a time
// (tile = hidden @ weight[v0:v0+tv].T, a BLAS / cuBLAS GEMM through torch) and these kernels
// fold each tile into per-token running softmax statistics (forward) or turn it into the tile
// of d logits (backward), so the [N, V] logits never exist in full.
//
// tile [N, tv] (any strides, fp32/fp64/bf16/fp16); labels [N] int32/int64; per-token state and
// inputs are contiguous [N] in the accumulation dtype (fp32, fp64 for fp64 tiles).
#pragma once

#include <cstdint>
#include <optional>

#include "common/checks.h"
#include "common/math.h"
#include "common/tensor_view.h"

namespace fbk {

struct TileArgs {
  int64_t rows;
  int64_t width;  // tv
  int64_t v0;     // first vocabulary id of the tile
  int64_t ignore_index;
  float inv_temperature;
};

inline TileArgs check_tile_args(const TensorView& tile, const TensorView& labels, int64_t v0, int64_t ignore_index,
                                double temperature) {
  check_ndim(tile, "tile", 2);
  check_ndim(labels, "labels", 1);
  check_size(labels, "labels", 0, tile.sizes[0]);
  FBK_CHECK(temperature > 0, "'temperature' must be > 0; got ", temperature);
  return TileArgs{tile.sizes[0], tile.sizes[1], v0, ignore_index, static_cast<float>(1.0 / temperature)};
}

// m, s, t: running SoftmaxStats of each token (start at -inf, 0, 0); label_logit: z of the
// token's label once its tile has been seen.
void linear_logprob_tile_forward_cpu(const TensorView& tile, const TensorView& labels, int64_t v0, int64_t ignore_index,
                                     double temperature, const TensorView& m, const TensorView& s,
                                     const TensorView& t, const TensorView& label_logit);
// d tile[n, j] = (softmax_grad(z - lse, coef, g_entropy, entropy) + [label == v0 + j] * grad_logp) / T,
// zero for ignored tokens.
void linear_logprob_tile_backward_cpu(const TensorView& tile, const TensorView& labels, int64_t v0,
                                      int64_t ignore_index, double temperature, const TensorView& lse,
                                      const TensorView& entropy, const TensorView& coef, const TensorView& grad_entropy,
                                      const TensorView& grad_logp, const TensorView& grad_tile);

void linear_logprob_tile_forward_cuda(const TensorView& tile, const TensorView& labels, int64_t v0,
                                      int64_t ignore_index, double temperature, const TensorView& m,
                                      const TensorView& s, const TensorView& t, const TensorView& label_logit,
                                      uintptr_t stream);
void linear_logprob_tile_backward_cuda(const TensorView& tile, const TensorView& labels, int64_t v0,
                                       int64_t ignore_index, double temperature, const TensorView& lse,
                                       const TensorView& entropy, const TensorView& coef,
                                       const TensorView& grad_entropy, const TensorView& grad_logp,
                                       const TensorView& grad_tile, uintptr_t stream);

}  // namespace fbk
