"""Type stubs of the CPU kernel module (csrc/bindings/cpu_module.cpp)."""

from types import ModuleType

# (data_ptr, sizes, strides, dtype code, device type, device index): see ops/_library.py::view
NativeView = tuple[int, tuple[int, ...], tuple[int, ...], int, int, int]

testing: ModuleType

def omp_max_threads() -> int: ...
def sequence_reduce(
    values: NativeView, mask: NativeView | None, cu_seqlens: NativeView | None, mode: int, out: NativeView
) -> None: ...
def sequence_reduce_backward(
    grad_out: NativeView,
    mask: NativeView | None,
    cu_seqlens: NativeView | None,
    mode: int,
    grad_values: NativeView,
) -> None: ...
def validate_cu_seqlens(cu_seqlens: NativeView, n: int) -> None: ...
def validate_segments(row_ptr: NativeView, positions: NativeView) -> None: ...
def group_runs(group_ids: NativeView, order: NativeView, starts: NativeView) -> None: ...
