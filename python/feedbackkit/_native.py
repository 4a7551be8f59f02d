"""Loads the native modules: ``feedbackkit._C`` (CPU, always built) and ``feedbackkit._cuda``
(built when nvcc was found; loaded only when an NVIDIA GPU is present). Torch-free."""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
from types import ModuleType

from . import _C, _build_info

__all__ = ["cpu", "cuda", "cuda_built", "gpu_count"]


def cpu() -> ModuleType:
    """The CPU kernel module."""
    return _C


def cuda_built() -> bool:
    """Whether this installation contains the compiled CUDA module."""
    return bool(_build_info.CUDA_BUILT) and importlib.util.find_spec("feedbackkit._cuda") is not None


@functools.lru_cache(maxsize=1)
def gpu_count() -> int:
    """Number of NVIDIA GPUs the driver reports (0 without a driver), asked without torch."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


@functools.lru_cache(maxsize=1)
def cuda() -> ModuleType:
    """The CUDA kernel module. Raises RuntimeError naming the reason when it cannot be used."""
    if not cuda_built():
        raise RuntimeError(
            "feedbackkit was built without CUDA kernels (nvcc was not found at build time, or "
            "FEEDBACKKIT_CUDA=OFF); reinstall from source on a machine with nvcc to use CUDA tensors"
        )
    if gpu_count() == 0:
        raise RuntimeError("feedbackkit's CUDA kernels need an NVIDIA GPU, but the driver reports none")
    return importlib.import_module("feedbackkit._cuda")
