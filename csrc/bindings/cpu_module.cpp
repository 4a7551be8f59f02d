// feedbackkit._C: the CPU kernels. Torch-free: tensors arrive as TensorView tuples.
#include <omp.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "bindings/view_caster.h"
#include "common/math.h"
#include "logprob/linear_logprob.h"
#include "logprob/sequence_logprob.h"
#include "logprob/sequence_reduce.h"

#define FBK_KERNEL(name) name##_cpu
#define FBK_STREAM_PARAM
#define FBK_STREAM_ARG
#define FBK_UNLOCK pybind11::gil_scoped_release release
#include "bindings/reward_bindings.h"
#define FBK_WORKSPACE_PARAM
#define FBK_WORKSPACE_ARG
#include "bindings/compress_bindings.h"
#include "bindings/stacking_bindings.h"

namespace py = pybind11;

namespace {

// Exposes the shared host-device math to the tests, so CPU tests check the arithmetic the
// GPU kernels run.
void bind_testing(py::module_& m) {
  auto t = m.def_submodule("testing", "Shared math helpers, exposed for tests");
  // (lse, entropy) of softmax(values) through SoftmaxStats: one state per element, merged
  // left to right up to `split` and right to left after it, then the two halves merged.
  t.def("softmax_stats", [](const std::vector<float>& xs, size_t split) {
    fbk::SoftmaxStats<float> left, right;
    for (size_t i = 0; i < xs.size(); ++i) {
      fbk::SoftmaxStats<float> one{xs[i], 1.0f, 0.0f};
      if (i < split) left.merge(one);
    }
    for (size_t i = xs.size(); i-- > split;) right.merge(fbk::SoftmaxStats<float>{xs[i], 1.0f, 0.0f});
    left.merge(right);
    return std::make_pair(left.lse(), left.entropy());
  }, py::arg("values"), py::arg("split"));
  t.def("softmax_exp", [](float d) { return fbk::softmax_exp(d); }, py::arg("d"));
  t.def("affine_compose", [](const std::vector<std::pair<double, double>>& maps, double x) {
    fbk::AffineMap<double> total;  // identity
    for (const auto& [a, b] : maps) total = fbk::AffineMap<double>{a, b}.after(total);
    return total.apply(x);
  }, py::arg("maps"), py::arg("x"), "Applies maps[0] first, then maps[1], ...");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "feedbackkit CPU kernels";
  m.def("omp_max_threads", &omp_get_max_threads);
  m.def("sequence_reduce", [](const fbk::TensorView& values, std::optional<fbk::TensorView> mask,
                              std::optional<fbk::TensorView> cu_seqlens, int mode, const fbk::TensorView& out) {
    py::gil_scoped_release release;
    fbk::sequence_reduce_cpu(values, mask, cu_seqlens, static_cast<fbk::ReduceMode>(mode), out);
  });
  m.def("sequence_reduce_backward", [](const fbk::TensorView& grad_out, std::optional<fbk::TensorView> mask,
                                       std::optional<fbk::TensorView> cu_seqlens, int mode,
                                       const fbk::TensorView& grad_values) {
    py::gil_scoped_release release;
    fbk::sequence_reduce_backward_cpu(grad_out, mask, cu_seqlens, static_cast<fbk::ReduceMode>(mode), grad_values);
  });
  m.def("sequence_logprob", [](const fbk::TensorView& logits, const fbk::TensorView& labels, int64_t ignore_index,
                               double temperature, const fbk::TensorView& logp, const fbk::TensorView& entropy,
                               const fbk::TensorView& lse) {
    py::gil_scoped_release release;
    fbk::sequence_logprob_cpu(logits, labels, ignore_index, temperature, logp, entropy, lse);
  });
  m.def("sequence_logprob_backward",
        [](const fbk::TensorView& grad_logp, std::optional<fbk::TensorView> grad_entropy,
           std::optional<fbk::TensorView> grad_lse, const fbk::TensorView& logits, const fbk::TensorView& labels,
           const fbk::TensorView& entropy, const fbk::TensorView& lse, int64_t ignore_index, double temperature,
           const fbk::TensorView& grad_logits) {
          py::gil_scoped_release release;
          fbk::sequence_logprob_backward_cpu(grad_logp, grad_entropy, grad_lse, logits, labels, entropy, lse,
                                             ignore_index, temperature, grad_logits);
        });
  m.def("linear_logprob_tile_forward",
        [](const fbk::TensorView& tile, const fbk::TensorView& labels, int64_t v0, int64_t ignore_index,
           double temperature, const fbk::TensorView& m_, const fbk::TensorView& s, const fbk::TensorView& t,
           const fbk::TensorView& label_logit) {
          py::gil_scoped_release release;
          fbk::linear_logprob_tile_forward_cpu(tile, labels, v0, ignore_index, temperature, m_, s, t, label_logit);
        });
  m.def("linear_logprob_tile_backward",
        [](const fbk::TensorView& tile, const fbk::TensorView& labels, int64_t v0, int64_t ignore_index,
           double temperature, const fbk::TensorView& lse, const fbk::TensorView& entropy,
           const fbk::TensorView& coef, const fbk::TensorView& grad_entropy, const fbk::TensorView& grad_logp,
           const fbk::TensorView& grad_tile) {
          py::gil_scoped_release release;
          fbk::linear_logprob_tile_backward_cpu(tile, labels, v0, ignore_index, temperature, lse, entropy, coef,
                                                grad_entropy, grad_logp, grad_tile);
        });
  m.def("validate_labels", &fbk::validate_labels, py::arg("labels"), py::arg("vocab"), py::arg("ignore_index"));
  m.def("validate_cu_seqlens", &fbk::validate_cu_seqlens, py::arg("cu_seqlens"), py::arg("n"));
  m.def("validate_segments", &fbk::validate_segments, py::arg("row_ptr"), py::arg("positions"));
  m.def("group_runs", [](const fbk::TensorView& group_ids, const fbk::TensorView& order, const fbk::TensorView& starts) {
    py::gil_scoped_release release;
    fbk::group_runs_cpu(group_ids, order, starts);
  });
  fbk::bind_reward(m);
  fbk::bind_compress(m);
  fbk::bind_stacking(m, fbk::DeviceType::CPU);
  bind_testing(m);
}
