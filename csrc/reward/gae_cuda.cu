#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "reward/gae_scan_cuda.cuh"
#include "reward/reward.h"
#include "reward/reward_cuda.cuh"

namespace fbk {
namespace {

template <class T, class M, class A>
__global__ void gae_kernel(Matrix<const T> r, Matrix<const T> v, Matrix<const M> m, Matrix<const A> boot,
                           GaeParams params, Matrix<A> adv, Matrix<A> ret, int64_t length) {
  const int64_t b = blockIdx.x;
  const int64_t last = boot ? block_last_valid(m, b, length) : -1;
  gae_scan_row<A>(
      length, params, last, boot ? boot(b, 0) : A(0), [&](int64_t t) { return valid_at(m, b, t); },
      [&](int64_t t) { return to_acc<A>(r(b, t)); }, [&](int64_t t) { return v ? to_acc<A>(v(b, t)) : A(0); },
      [&](int64_t t, bool on, A a, A value) {
        if (adv) adv(b, t) = on ? a : A(0);
        ret(b, t) = on ? a + value : A(0);
      });
}

}  // namespace

void gae_cuda(const TensorView& rewards, const Opt& values, const Opt& mask, const Opt& bootstrap,
              const GaeParams& params, const Opt& advantages, const TensorView& returns, uintptr_t stream) {
  check_ndim(rewards, "rewards", 2);
  const int64_t batch = rewards.sizes[0], length = rewards.sizes[1];
  if (batch == 0) return;
  check_grid_rows(batch, "rewards");
  dispatch_float(rewards.dtype, "rewards", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    dispatch_optional_mask(mask, [&](auto mt) {
      using M = typename decltype(mt)::type;
      gae_kernel<T, M, A><<<unsigned(batch), gae_threads(length), 0, as_stream(stream)>>>(
          matrix<const T>(rewards), matrix<const T>(opt_ptr(values)), matrix<const M>(opt_ptr(mask)),
          matrix<const A>(opt_ptr(bootstrap)), params, matrix<A>(opt_ptr(advantages)), matrix<A>(returns), length);
      check_launch("gae");
    });
  });
}

}  // namespace fbk
