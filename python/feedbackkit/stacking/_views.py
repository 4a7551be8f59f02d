"""NumPy arrays -> native view tuples, without torch.

A view is ``(data_ptr, sizes, strides, dtype_code, device_type, device_index)`` with strides in
elements, the layout ``csrc/bindings/view_caster.h`` reads. The caller keeps the arrays alive
for as long as the native call runs (the tuples hold bare addresses)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .._errors import ArgumentError

__all__ = ["DTYPE_CODES", "NativeView", "as_numpy", "native", "optional_view", "view"]

# Must match csrc/common/dtype.h::DType (and feedbackkit/ops/_library.py::DTYPE_CODES).
DTYPE_CODES: dict[np.dtype[Any], int] = {
    np.dtype(np.float32): 0,
    np.dtype(np.float64): 1,
    np.dtype(np.float16): 3,
    np.dtype(np.bool_): 4,
    np.dtype(np.uint8): 5,
    np.dtype(np.int32): 6,
    np.dtype(np.int64): 7,
}

NativeView = tuple[int, tuple[int, ...], tuple[int, ...], int, int, int]


def native(a: np.ndarray) -> np.ndarray:
    """`a` in native byte order with strides that are whole elements (a copy only if needed)."""
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if any(s % a.itemsize for s in a.strides):
        a = np.ascontiguousarray(a)
    return a


def view(a: np.ndarray) -> NativeView:
    """Describes CPU array `a` for the native layer. `a` must come from :func:`native`."""
    code = DTYPE_CODES.get(a.dtype)
    if code is None:
        raise TypeError(f"no native dtype for {a.dtype}")
    if not a.dtype.isnative or any(s % a.itemsize for s in a.strides):
        raise ValueError("view: pass the array through native() first")
    data = int(a.__array_interface__["data"][0])
    return (data, tuple(int(s) for s in a.shape), tuple(int(s) // a.itemsize for s in a.strides), code, 0, 0)


def optional_view(a: np.ndarray | None) -> NativeView | None:
    return None if a is None else view(a)


def as_numpy(op: str, name: str, value: object) -> np.ndarray:
    """`value` as a NumPy array: arrays and array-likes as they are; torch CPU tensors through
    ``.numpy()`` when torch is already imported (this module never imports it)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.device.type != "cpu":
            raise ArgumentError(
                f"{op}: '{name}' is on {value.device}; only CPU arrays are supported so far "
                "(the CUDA kernel is not implemented yet)"
            )
        if value.is_complex() or value.dtype == torch.bfloat16:
            raise ArgumentError(f"{op}: '{name}' has unsupported dtype {str(value.dtype)[6:]}")
        return np.asarray(value.detach().resolve_conj().resolve_neg().numpy())
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ArgumentError(f"{op}: '{name}' cannot be converted to an array: {exc}") from exc
