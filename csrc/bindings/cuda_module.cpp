// feedbackkit._cuda: the CUDA kernels. Imports without a GPU driver (the CUDA runtime is
// linked statically and loads the driver lazily); feedbackkit only loads it when a GPU exists.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/view_caster.h"
#include "logprob/linear_logprob.h"
#include "logprob/sequence_logprob.h"
#include "logprob/sequence_reduce.h"

#define FBK_KERNEL(name) name##_cuda
#define FBK_STREAM_PARAM , uintptr_t stream
#define FBK_STREAM_ARG , stream
#define FBK_UNLOCK (void)0
#include "bindings/reward_bindings.h"
#define FBK_WORKSPACE_PARAM , TV workspace
#define FBK_WORKSPACE_ARG , workspace
#include "bindings/compress_bindings.h"
#include "bindings/stacking_bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "feedbackkit CUDA kernels";
  m.def("build_info", [] {
    py::dict info;
    info["cuda_runtime_version"] = CUDART_VERSION;
    info["archs"] = FEEDBACKKIT_CUDA_ARCHS;
    return info;
  });
  // Theoretical DRAM bandwidth in bytes/s (double data rate × bus width), 0 if unknown.
  m.def("peak_memory_bandwidth", [](int device) {
    int clock_khz = 0, bus_bits = 0;
    if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess)
      return 0.0;
    return 2.0 * clock_khz * 1e3 * bus_bits / 8.0;
  });
  m.def("device_count", [] {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
  });
  m.def("sequence_reduce", [](const fbk::TensorView& values, std::optional<fbk::TensorView> mask,
                              std::optional<fbk::TensorView> cu_seqlens, int mode, const fbk::TensorView& out,
                              uintptr_t stream) {
    fbk::sequence_reduce_cuda(values, mask, cu_seqlens, static_cast<fbk::ReduceMode>(mode), out, stream);
  });
  m.def("sequence_reduce_backward", [](const fbk::TensorView& grad_out, std::optional<fbk::TensorView> mask,
                                       std::optional<fbk::TensorView> cu_seqlens, int mode,
                                       const fbk::TensorView& grad_values, uintptr_t stream) {
    fbk::sequence_reduce_backward_cuda(grad_out, mask, cu_seqlens, static_cast<fbk::ReduceMode>(mode), grad_values,
                                       stream);
  });
  m.def("sequence_logprob", [](const fbk::TensorView& logits, const fbk::TensorView& labels, int64_t ignore_index,
                               double temperature, const fbk::TensorView& logp, const fbk::TensorView& entropy,
                               const fbk::TensorView& lse, uintptr_t stream) {
    fbk::sequence_logprob_cuda(logits, labels, ignore_index, temperature, logp, entropy, lse, stream);
  });
  m.def("sequence_logprob_backward",
        [](const fbk::TensorView& grad_logp, std::optional<fbk::TensorView> grad_entropy,
           std::optional<fbk::TensorView> grad_lse, const fbk::TensorView& logits, const fbk::TensorView& labels,
           const fbk::TensorView& entropy, const fbk::TensorView& lse, int64_t ignore_index, double temperature,
           const fbk::TensorView& grad_logits, uintptr_t stream) {
          fbk::sequence_logprob_backward_cuda(grad_logp, grad_entropy, grad_lse, logits, labels, entropy, lse,
                                              ignore_index, temperature, grad_logits, stream);
        });
  m.def("linear_logprob_tile_forward",
        [](const fbk::TensorView& tile, const fbk::TensorView& labels, int64_t v0, int64_t ignore_index,
           double temperature, const fbk::TensorView& m_, const fbk::TensorView& s, const fbk::TensorView& t,
           const fbk::TensorView& label_logit, uintptr_t stream) {
          fbk::linear_logprob_tile_forward_cuda(tile, labels, v0, ignore_index, temperature, m_, s, t, label_logit,
                                                stream);
        });
  m.def("linear_logprob_tile_backward",
        [](const fbk::TensorView& tile, const fbk::TensorView& labels, int64_t v0, int64_t ignore_index,
           double temperature, const fbk::TensorView& lse, const fbk::TensorView& entropy,
           const fbk::TensorView& coef, const fbk::TensorView& grad_entropy, const fbk::TensorView& grad_logp,
           const fbk::TensorView& grad_tile, uintptr_t stream) {
          fbk::linear_logprob_tile_backward_cuda(tile, labels, v0, ignore_index, temperature, lse, entropy, coef,
                                                 grad_entropy, grad_logp, grad_tile, stream);
        });
  fbk::bind_reward(m);
  fbk::bind_compress(m);
  m.def("compress_workspace_bytes", &fbk::compress_workspace_bytes, py::arg("n"));
  fbk::bind_stacking(m, fbk::DeviceType::CUDA);
  m.def(
      "oriented_stack_workspace_bytes",
      [](int64_t n_objects, int64_t num_groups, int64_t num_maps, int64_t half_width, int projection) {
        FBK_CHECK(projection >= 0 && projection <= 2, "projection: unknown code ", projection);
        return fbk::oriented_stack_workspace_bytes(n_objects, num_groups, num_maps, half_width,
                                                   static_cast<fbk::Projection>(projection));
      },
      py::arg("n_objects"), py::arg("num_groups"), py::arg("num_maps"), py::arg("half_width"), py::arg("projection"));
  m.def("multipoles_workspace_bytes", &fbk::multipoles_workspace_bytes, py::arg("n_theta"), py::arg("m_max"));
}
