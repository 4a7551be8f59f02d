"""``feedbackkit.info()``: what this installation is and what it can run."""

from __future__ import annotations

import platform
from importlib.metadata import version
from typing import Any

from . import _build_info, _native


def info() -> dict[str, Any]:
    """Package, torch and Python versions; which native modules are built (CUDA version and
    archs); visible GPUs; OpenMP threads."""
    import torch

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {
        "feedbackkit": version("feedbackkit"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": version("numpy"),
        "cpu_module": _native.cpu().__file__,
        "cxx_compiler": _build_info.CXX_COMPILER,
        "openmp_threads": _native.cpu().omp_max_threads(),
        "cuda_module_built": _native.cuda_built(),
        "cuda_version": _build_info.CUDA_VERSION or None,
        "cuda_archs": _build_info.CUDA_ARCHS.split(",") if _build_info.CUDA_ARCHS else [],
        "gpus": gpus,
        "cuda_kernels_usable": _native.cuda_built() and _native.gpu_count() > 0,
    }
