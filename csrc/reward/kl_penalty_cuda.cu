#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "reward/reward.h"
#include "reward/reward_cuda.cuh"

namespace fbk {
namespace {

// Block per row: per-token values, then the row's sum and count by block reductions.
template <class T, class M, class A>
__global__ void kl_penalty_kernel(Matrix<const T> lp, Matrix<const T> ref, Matrix<const M> m, Matrix<const T> rw,
                                  KLParams params, A beta, Matrix<A> out, Matrix<A> shaped_out, Matrix<A> sums,
                                  Matrix<int64_t> counts, int64_t length) {
  const int64_t b = blockIdx.x;
  A total = 0;
  int64_t count = 0;
  for (int64_t t = threadIdx.x; t < length; t += blockDim.x) {
    const bool on = valid_at(m, b, t);
    const A value = on ? kl_value(params, to_acc<A>(lp(b, t)) - to_acc<A>(ref(b, t))) : A(0);
    out(b, t) = value;
    if (shaped_out) shaped_out(b, t) = to_acc<A>(rw(b, t)) - beta * value;
    total += value;
    count += on;
  }
  total = block_sum(total);
  count = block_sum(count);
  if (threadIdx.x != 0) return;
  sums(b, 0) = total;
  counts(b, 0) = count;
}

// Elementwise: grid (rows, column blocks).
template <class T, class M, class A>
__global__ void kl_penalty_backward_kernel(Matrix<const T> lp, Matrix<const T> ref, Matrix<const M> m, KLParams params,
                                           A beta, Matrix<const A> g_kl, Matrix<const A> g_shaped,
                                           Matrix<const A> g_sum, Matrix<T> g_lp, Matrix<T> g_ref, int64_t length) {
  const int64_t b = blockIdx.x;
  const A row_grad = g_sum ? g_sum(b, 0) : A(0);
  const int64_t stride = int64_t(gridDim.y) * blockDim.x;
  for (int64_t t = int64_t(blockIdx.y) * blockDim.x + threadIdx.x; t < length; t += stride) {
    const A g = valid_at(m, b, t) ? kl_token_gradient(params, beta, to_acc<A>(lp(b, t)) - to_acc<A>(ref(b, t)),
                                                      row_grad, g_kl, g_shaped, b, t)
                                  : A(0);
    g_lp(b, t) = from_acc<T>(g);
    g_ref(b, t) = from_acc<T>(-g);
  }
}

}  // namespace

void kl_penalty_cuda(const TensorView& logp, const TensorView& ref_logp, const Opt& mask, const Opt& reward,
                     const KLParams& params, double beta, const TensorView& kl, const Opt& shaped,
                     const TensorView& row_sum, const TensorView& row_count, uintptr_t stream) {
  check_ndim(logp, "logp", 2);
  const int64_t batch = logp.sizes[0], length = logp.sizes[1];
  if (batch == 0) return;
  check_grid_rows(batch, "logp");
  dispatch_float(logp.dtype, "logp", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      kl_penalty_kernel<T, M, A><<<unsigned(batch), threads_for(length), 0, as_stream(stream)>>>(
          matrix<const T>(logp), matrix<const T>(ref_logp), matrix<const M>(opt_ptr(mask)),
          matrix<const T>(opt_ptr(reward)), params, A(beta), matrix<A>(kl), matrix<A>(opt_ptr(shaped)),
          matrix<A>(row_sum), matrix<int64_t>(row_count), length);
      check_launch("kl_penalty");
    });
  });
}

void kl_penalty_backward_cuda(const TensorView& logp, const TensorView& ref_logp, const Opt& mask,
                              const KLParams& params, double beta, const Opt& grad_kl, const Opt& grad_shaped,
                              const Opt& grad_row_sum, const TensorView& grad_logp, const TensorView& grad_ref_logp,
                              uintptr_t stream) {
  check_ndim(logp, "logp", 2);
  const int64_t batch = logp.sizes[0], length = logp.sizes[1];
  if (batch == 0 || length == 0) return;
  check_grid_rows(batch, "logp");
  const int threads = threads_for(length);
  const dim3 grid(unsigned(batch), column_blocks(length, threads));
  dispatch_float(logp.dtype, "logp", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      kl_penalty_backward_kernel<T, M, A><<<grid, threads, 0, as_stream(stream)>>>(
          matrix<const T>(logp), matrix<const T>(ref_logp), matrix<const M>(opt_ptr(mask)), params, A(beta),
          matrix<const A>(opt_ptr(grad_kl)), matrix<const A>(opt_ptr(grad_shaped)),
          matrix<const A>(opt_ptr(grad_row_sum)), matrix<T>(grad_logp), matrix<T>(grad_ref_logp), length);
      check_launch("kl_penalty_backward");
    });
  });
}

}  // namespace fbk
