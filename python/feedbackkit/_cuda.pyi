"""Type stubs of the CUDA kernel module (csrc/bindings/cuda_module.cpp); launchers take the
CUDA stream as an integer handle."""

from typing import Any

NativeView = tuple[int, tuple[int, ...], tuple[int, ...], int, int, int]

def build_info() -> dict[str, Any]: ...
def device_count() -> int: ...
def peak_memory_bandwidth(device: int) -> float: ...
def sequence_reduce(
    values: NativeView,
    mask: NativeView | None,
    cu_seqlens: NativeView | None,
    mode: int,
    out: NativeView,
    stream: int,
) -> None: ...
def sequence_reduce_backward(
    grad_out: NativeView,
    mask: NativeView | None,
    cu_seqlens: NativeView | None,
    mode: int,
    grad_values: NativeView,
    stream: int,
) -> None: ...
