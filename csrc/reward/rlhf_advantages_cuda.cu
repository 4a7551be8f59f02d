#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "reward/gae_scan_cuda.cuh"
#include "reward/reward.h"
#include "reward/reward_cuda.cuh"

namespace fbk {
namespace {

template <class T, class M, class A>
struct RlhfViews {
  Matrix<const T> lp, ref, values, token_in;
  Matrix<const M> mask;
  Matrix<const A> scores, boot;
  Matrix<A> token_out, adv, ret, kl_sum;
  Matrix<int64_t> kl_count;
  Matrix<double> moments;
};

// Block per row: the last valid token, then the GAE scan with the shaped reward, which also writes
// the token rewards and accumulates the KL row sum; then the block reductions.
template <class T, class M, class A>
__global__ void rlhf_rows_kernel(RlhfViews<T, M, A> v, KLParams kl, A beta, GaeParams gae, int64_t length) {
  const int64_t b = blockIdx.x;
  const int64_t last = v.scores || v.boot ? block_last_valid(v.mask, b, length) : -1;
  A total = 0;
  int64_t count = 0;
  Moments advantages;  // of this thread's emitted valid advantages
  auto reward = [&](int64_t t) {
    const A k = kl_value(kl, to_acc<A>(v.lp(b, t)) - to_acc<A>(v.ref(b, t)));
    total += k;
    ++count;
    A r = (v.token_in ? to_acc<A>(v.token_in(b, t)) : A(0)) - beta * k;
    if (v.scores && t == last) r += v.scores(b, 0);
    v.token_out(b, t) = r;
    return r;
  };
  auto emit = [&](int64_t t, bool on, A a, A value) {
    if (!on) v.token_out(b, t) = A(0);
    v.adv(b, t) = on ? a : A(0);
    v.ret(b, t) = on ? a + value : A(0);
    if (on && v.moments) advantages.merge(Moments{1.0, double(a), 0.0});
  };
  gae_scan_row<A>(
      length, gae, last, v.boot ? v.boot(b, 0) : A(0), [&](int64_t t) { return valid_at(v.mask, b, t); }, reward,
      [&](int64_t t) { return to_acc<A>(v.values(b, t)); }, emit);
  total = block_sum(total);
  count = block_sum(count);
  if (v.moments) advantages = block_merge(advantages);
  if (threadIdx.x != 0) return;
  v.kl_sum(b, 0) = total;
  v.kl_count(b, 0) = count;
  if (v.moments) store_moments(v.moments, b, advantages);
}

}  // namespace

void rlhf_rows_cuda(const RlhfInputs& in, const KLParams& kl, double beta, const GaeParams& gae,
                    const RlhfOutputs& out, uintptr_t stream) {
  check_ndim(in.logp, "logp", 2);
  const int64_t batch = in.logp.sizes[0], length = in.logp.sizes[1];
  if (batch == 0) return;
  check_grid_rows(batch, "logp");
  dispatch_float(in.logp.dtype, "logp", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(in.mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      const RlhfViews<T, M, A> views{matrix<const T>(in.logp),
                                     matrix<const T>(in.ref_logp),
                                     matrix<const T>(in.values),
                                     matrix<const T>(opt_ptr(in.token_rewards)),
                                     matrix<const M>(opt_ptr(in.mask)),
                                     matrix<const A>(opt_ptr(in.scores)),
                                     matrix<const A>(opt_ptr(in.bootstrap)),
                                     matrix<A>(out.token_rewards),
                                     matrix<A>(out.advantages),
                                     matrix<A>(out.returns),
                                     matrix<A>(out.kl_row_sum),
                                     matrix<int64_t>(out.kl_row_count),
                                     matrix<double>(opt_ptr(out.moments))};
      rlhf_rows_kernel<T, M, A><<<unsigned(batch), gae_threads(length), 0, as_stream(stream)>>>(views, kl, A(beta),
                                                                                                 gae, length);
      check_launch("rlhf_rows");
    });
  });
}

}  // namespace fbk
