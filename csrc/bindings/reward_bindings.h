// Bindings of the `reward` family, shared by both modules. The including module defines
//   FBK_KERNEL(name)    the device variant of a kernel: name##_cpu or name##_cuda
//   FBK_STREAM_PARAM    the trailing stream parameter (", uintptr_t stream" on CUDA)
//   FBK_STREAM_ARG      the trailing stream argument (", stream" on CUDA)
//   FBK_UNLOCK          a statement releasing the GIL (CPU kernels run long; CUDA ones launch)
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <initializer_list>
#include <utility>

#include "bindings/view_caster.h"
#include "common/checks.h"
#include "reward/reward.h"

namespace fbk {

inline KLParams kl_params(int estimator, double ratio_lo, double ratio_hi, double kl_lo, double kl_hi) {
  return KLParams{static_cast<KLEstimator>(estimator), ratio_lo, ratio_hi, kl_lo, kl_hi};
}

// Outputs computed from `in` must be float64 for float64 input, else float32 (the kernels write
// the accumulation type): a mismatch would write out of bounds, so it is refused here.
inline void check_out(const TensorView& in, const TensorView& out, const char* name) {
  const DType expected = in.dtype == DType::Float64 ? DType::Float64 : DType::Float32;
  FBK_CHECK(out.dtype == expected, name, ": expected dtype ", dtype_name(expected), " for ", dtype_name(in.dtype),
            " input, got ", dtype_name(out.dtype));
}

inline void check_out(const TensorView& in, const Opt& out, const char* name) {
  if (out) check_out(in, *out, name);
}

// Inputs read with one element type must share the dtype of `first`.
inline void check_same_dtype(const TensorView& first, std::initializer_list<const TensorView*> others) {
  for (const TensorView* v : others)
    FBK_CHECK(v == nullptr || v->dtype == first.dtype, "inputs must share one dtype: got ", dtype_name(first.dtype),
              " and ", dtype_name(v->dtype));
}

inline void bind_reward(pybind11::module_& m) {
  using TV = const TensorView&;
  m.def("segment_scatter", [](TV values, TV row_ptr, TV positions, Opt mask, int mode, bool clamp,
                              TV out FBK_STREAM_PARAM) {
    check_out(values, out, "out");
    FBK_UNLOCK;
    FBK_KERNEL(segment_scatter)(values, row_ptr, positions, mask, SegmentMode(mode), clamp, out FBK_STREAM_ARG);
  });
  m.def("reward_source_stats", [](TV rewards, TV stats FBK_STREAM_PARAM) {
    check_out(rewards, stats, "stats");
    FBK_UNLOCK;
    FBK_KERNEL(reward_source_stats)(rewards, stats FBK_STREAM_ARG);
  });
  m.def("combine_rewards", [](TV rewards, TV weights, Opt stats, int normalize, double eps, bool renormalize,
                              TV out, TV valid FBK_STREAM_PARAM) {
    check_out(rewards, weights, "weights");
    check_out(rewards, stats, "stats");
    check_out(rewards, out, "out");
    FBK_CHECK(valid.dtype == DType::Bool || valid.dtype == DType::UInt8, "valid: expected bool");
    FBK_UNLOCK;
    FBK_KERNEL(combine_rewards)(rewards, weights, stats, Normalize(normalize), eps, renormalize, out,
                                valid FBK_STREAM_ARG);
  });
  m.def("kl_penalty", [](TV logp, TV ref_logp, Opt mask, Opt reward, int estimator, double ratio_lo, double ratio_hi,
                         double kl_lo, double kl_hi, double beta, TV kl, Opt shaped, TV row_sum,
                         TV row_count FBK_STREAM_PARAM) {
    check_same_dtype(logp, {&ref_logp, opt_ptr(reward)});
    check_out(logp, kl, "kl");
    check_out(logp, shaped, "shaped");
    check_out(logp, row_sum, "row_sum");
    FBK_CHECK(row_count.dtype == DType::Int64, "row_count: expected int64");
    FBK_UNLOCK;
    FBK_KERNEL(kl_penalty)(logp, ref_logp, mask, reward, kl_params(estimator, ratio_lo, ratio_hi, kl_lo, kl_hi), beta,
                           kl, shaped, row_sum, row_count FBK_STREAM_ARG);
  });
  m.def("kl_penalty_backward", [](TV logp, TV ref_logp, Opt mask, int estimator, double ratio_lo, double ratio_hi,
                                  double kl_lo, double kl_hi, double beta, Opt grad_kl, Opt grad_shaped,
                                  Opt grad_row_sum, TV grad_logp, TV grad_ref_logp FBK_STREAM_PARAM) {
    check_same_dtype(logp, {&ref_logp, &grad_logp, &grad_ref_logp});
    check_out(logp, grad_kl, "grad_kl");
    check_out(logp, grad_shaped, "grad_shaped");
    check_out(logp, grad_row_sum, "grad_row_sum");
    FBK_UNLOCK;
    FBK_KERNEL(kl_penalty_backward)(logp, ref_logp, mask, kl_params(estimator, ratio_lo, ratio_hi, kl_lo, kl_hi),
                                    beta, grad_kl, grad_shaped, grad_row_sum, grad_logp,
                                    grad_ref_logp FBK_STREAM_ARG);
  });
  m.def("gae", [](TV rewards, Opt values, Opt mask, Opt bootstrap, double gamma, double lam, int mode, Opt advantages,
                  TV returns FBK_STREAM_PARAM) {
    check_same_dtype(rewards, {opt_ptr(values)});
    check_out(rewards, bootstrap, "bootstrap");
    check_out(rewards, advantages, "advantages");
    check_out(rewards, returns, "returns");
    FBK_UNLOCK;
    FBK_KERNEL(gae)(rewards, values, mask, bootstrap, GaeParams{gamma, lam, MaskMode(mode)}, advantages,
                    returns FBK_STREAM_ARG);
  });
  m.def("group_advantage", [](TV scores, TV order, TV starts, int mode, bool unbiased, double eps, int singleton,
                              TV out FBK_STREAM_PARAM) {
    check_out(scores, out, "out");
    FBK_CHECK(order.dtype == DType::Int64 && starts.dtype == DType::Int64, "order, starts: expected int64");
    FBK_UNLOCK;
    FBK_KERNEL(group_advantage)(scores, order, starts, GroupMode(mode), unbiased, eps, Singleton(singleton),
                                out FBK_STREAM_ARG);
  });
  m.def("row_moments", [](TV x, Opt mask, TV moments FBK_STREAM_PARAM) {
    FBK_CHECK(moments.dtype == DType::Float64, "moments: expected float64");
    FBK_UNLOCK;
    FBK_KERNEL(row_moments)(x, mask, moments FBK_STREAM_ARG);
  });
  m.def("merge_moments", [](TV moments, TV merged FBK_STREAM_PARAM) {
    FBK_CHECK(moments.dtype == DType::Float64 && merged.dtype == DType::Float64, "moments: expected float64");
    FBK_UNLOCK;
    FBK_KERNEL(merge_moments)(moments, merged FBK_STREAM_ARG);
  });
  m.def("whiten_apply", [](TV x, Opt mask, TV stats, bool stats_are_sums, bool shift_mean, bool unbiased, double eps,
                           TV out, TV stats_out FBK_STREAM_PARAM) {
    FBK_CHECK(stats.dtype == DType::Float64 && stats_out.dtype == DType::Float64, "stats: expected float64");
    check_out(x, out, "out");
    FBK_UNLOCK;
    FBK_KERNEL(whiten_apply)(x, mask, stats, stats_are_sums, shift_mean, unbiased, eps, out,
                             stats_out FBK_STREAM_ARG);
  });
  m.def("rlhf_rows", [](TV logp, TV ref_logp, TV values, Opt mask, Opt scores, Opt token_rewards, Opt bootstrap,
                        int estimator, double ratio_lo, double ratio_hi, double kl_lo, double kl_hi, double beta,
                        double gamma, double lam, int mode, TV token_rewards_out, TV advantages, TV returns,
                        TV kl_row_sum, TV kl_row_count, Opt moments FBK_STREAM_PARAM) {
    check_same_dtype(logp, {&ref_logp, &values, opt_ptr(token_rewards)});
    for (const auto& [out, name] : {std::pair{&token_rewards_out, "token_rewards"}, {&advantages, "advantages"},
                                    {&returns, "returns"}, {&kl_row_sum, "kl_row_sum"}})
      check_out(logp, *out, name);
    check_out(logp, scores, "scores");
    check_out(logp, bootstrap, "bootstrap");
    FBK_CHECK(kl_row_count.dtype == DType::Int64, "kl_row_count: expected int64");
    FBK_CHECK(!moments || moments->dtype == DType::Float64, "moments: expected float64");
    FBK_UNLOCK;
    FBK_KERNEL(rlhf_rows)(RlhfInputs{logp, ref_logp, values, mask, scores, token_rewards, bootstrap},
                          kl_params(estimator, ratio_lo, ratio_hi, kl_lo, kl_hi), beta,
                          GaeParams{gamma, lam, MaskMode(mode)},
                          RlhfOutputs{token_rewards_out, advantages, returns, kl_row_sum, kl_row_count, moments}
                              FBK_STREAM_ARG);
  });
}

}  // namespace fbk
