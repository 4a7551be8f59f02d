// feedbackkit._C: the CPU kernels. Torch-free: tensors arrive as TensorView tuples.
#include <omp.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "bindings/view_caster.h"
#include "common/math.h"
#include "logprob/sequence_reduce.h"

namespace py = pybind11;

namespace {

// Exposes the shared host-device math to the tests, so CPU tests check the arithmetic the
// GPU kernels run.
void bind_testing(py::module_& m) {
  auto t = m.def_submodule("testing", "Shared math helpers, exposed for tests");
  t.def("online_logsumexp", [](const std::vector<double>& xs, size_t split) {
    fbk::OnlineLogSumExp<double> left, right;
    for (size_t i = 0; i < xs.size(); ++i) (i < split ? left : right).add(xs[i]);
    left.merge(right);
    return left.value();
  }, py::arg("values"), py::arg("split"));
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
  m.def("validate_cu_seqlens", &fbk::validate_cu_seqlens, py::arg("cu_seqlens"), py::arg("n"));
  bind_testing(m);
}
