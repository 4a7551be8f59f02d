"""The ``feedbackkit`` torch.library namespace and the tensor -> native view conversion that
every op file uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .. import _native

LIB = torch.library.Library("feedbackkit", "DEF")

# Must match csrc/common/dtype.h::DType.
DTYPE_CODES: dict[torch.dtype, int] = {
    torch.float32: 0,
    torch.float64: 1,
    torch.bfloat16: 2,
    torch.float16: 3,
    torch.bool: 4,
    torch.uint8: 5,
    torch.int32: 6,
    torch.int64: 7,
}

NativeView = tuple[int, tuple[int, ...], tuple[int, ...], int, int, int]


def view(t: torch.Tensor) -> NativeView:
    """Describes `t` for the native layer: (data_ptr, sizes, strides, dtype, device type, index)."""
    return (
        t.data_ptr(),
        tuple(t.shape),
        t.stride(),
        DTYPE_CODES[t.dtype],
        1 if t.is_cuda else 0,
        t.device.index or 0,
    )


def optional_view(t: torch.Tensor | None) -> NativeView | None:
    return None if t is None else view(t)


def stream(t: torch.Tensor) -> int:
    """The current CUDA stream of `t`'s device, as an integer handle for the native launchers."""
    return torch.cuda.current_stream(t.device).cuda_stream


def launch(kernel: str, device_of: torch.Tensor, *args: object) -> None:
    """Runs native `kernel` for the device of `device_of`: the CPU module directly, the CUDA
    module on that device's current stream."""
    if not device_of.is_cuda:
        getattr(_native.cpu(), kernel)(*args)
        return
    module = _native.cuda()
    if device_of.device.index == torch.cuda.current_device():
        getattr(module, kernel)(*args, stream(device_of))
        return
    with torch.cuda.device(device_of.device):
        getattr(module, kernel)(*args, stream(device_of))


def register(
    name: str,
    impl: Callable[..., Any],
    fake: Callable[..., Any],
    backward: Callable[..., Any] | None = None,
    setup_context: Callable[..., Any] | None = None,
) -> None:
    """Registers a defined op: `impl` for CPU and CUDA, its fake impl, and (when given) its
    autograd formula."""
    for device in ("CPU", "CUDA"):
        LIB.impl(name, impl, device)
    torch.library.register_fake(f"feedbackkit::{name}", fake, lib=LIB)
    if backward is not None:
        torch.library.register_autograd(
            f"feedbackkit::{name}", backward, setup_context=setup_context, lib=LIB
        )
