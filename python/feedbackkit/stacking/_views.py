"""Array inputs -> native views, without torch.

The stacking functions read, convert and create arrays through an :class:`Arrays` backend:
:class:`HostArrays` (NumPy on the CPU, this module) or, when a torch tensor is passed,
``feedbackkit.ops.stacking.TensorArrays`` (torch tensors on one device: the CPU, or a CUDA device
whose kernels run on the current stream). That module imports torch, so it is imported only once a
torch tensor shows that torch is already loaded.

A native view is ``(data_ptr, sizes, strides, dtype_code, device_type, device_index)`` with strides
in elements, the layout ``csrc/bindings/view_caster.h`` reads. The caller keeps the arrays alive
for as long as the native call runs (the tuples hold bare addresses)."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from .. import _native
from .._errors import ArgumentError

__all__ = [
    "DTYPE_CODES",
    "Array",
    "Arrays",
    "HostArrays",
    "NativeView",
    "Workspace",
    "arrays_for",
    "as_numpy",
    "dtype_kind",
    "native",
    "view",
]

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

#: An array of the backend in use: ``np.ndarray`` on the host, ``torch.Tensor`` on the torch path.
Array = Any
#: A CUDA kernel's workspace size query: (name in feedbackkit._cuda, *sizes), or None.
Workspace = tuple[object, ...] | None


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


def dtype_kind(name: str) -> str:
    """NumPy's kind letter ("b", "u", "i", "f"; "?" for anything else) of a NumPy or torch dtype
    name ("float32", "bfloat16", "int64", …)."""
    if name == "bool":
        return "b"
    for prefix, kind in (("uint", "u"), ("int", "i"), ("float", "f"), ("bfloat", "f")):
        if name.startswith(prefix):
            return kind
    return "?"


def _torch_tensor_type() -> type | None:
    torch = sys.modules.get("torch")
    return None if torch is None else torch.Tensor


def as_numpy(op: str, name: str, value: object, *, from_device: bool = False) -> np.ndarray:
    """`value` as a NumPy array: arrays and array-likes as they are; torch CPU tensors through
    ``.numpy()`` when torch is already imported (this module never imports it). Tensors on other
    devices are refused, or copied to the host with `from_device` (small parameter arrays)."""
    tensor = _torch_tensor_type()
    if tensor is not None and isinstance(value, tensor):
        t: Any = value
        if t.device.type != "cpu":
            if not from_device:
                raise ArgumentError(
                    f"{op}: '{name}' is on {t.device}; {op} works on host arrays (pass .cpu())"
                )
            t = t.cpu()
        if t.is_complex() or str(t.dtype) == "torch.bfloat16":
            raise ArgumentError(f"{op}: '{name}' has unsupported dtype {str(t.dtype)[6:]}")
        return np.asarray(t.detach().resolve_conj().resolve_neg().numpy())
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ArgumentError(f"{op}: '{name}' cannot be converted to an array: {exc}") from exc


class Arrays(Protocol):
    """How the stacking functions handle the arrays of one backend."""

    #: Whether per-object values are validated (always on the CPU; on CUDA only with check=True,
    #: as each check is a host sync).
    check_values: bool

    def asarray(self, op: str, name: str, value: object) -> Array: ...
    def dtype_name(self, a: Array) -> str: ...
    def cast(self, a: Array, dtype: str) -> Array:
        """`a` as `dtype` ("float64", …), in a layout the native kernels read (a copy if needed)."""

    def full(self, n: int, value: float) -> Array: ...
    def stack_columns(self, a: Array, b: Array) -> Array: ...
    def upload(self, a: np.ndarray) -> Array:
        """A host parameter array (e.g. ring radii) on this backend's device."""

    def empty(self, shape: Sequence[int], dtype: str) -> Array: ...
    def launch(self, kernel: str, args: Sequence[object], workspace: Workspace = None) -> None:
        """Runs native `kernel` on `args` (arrays become views; other values pass as they are).
        `workspace` = (query, *sizes) names the CUDA module's workspace size query, if any."""

    def run(self, op: str, fn: Callable[..., Any], *args: object) -> Any:
        """``fn(self, *args)``, through the torch.library op `op` on the torch path."""


class HostArrays:
    """NumPy arrays and the CPU kernels (torch CPU tensors are read through ``.numpy()``)."""

    check_values = True

    def asarray(self, op: str, name: str, value: object) -> np.ndarray:
        return as_numpy(op, name, value)

    def dtype_name(self, a: np.ndarray) -> str:
        return a.dtype.name

    def cast(self, a: np.ndarray, dtype: str) -> np.ndarray:
        return native(np.asarray(a, dtype=dtype))

    def full(self, n: int, value: float) -> np.ndarray:
        return np.full(n, value, dtype=np.float64)

    def stack_columns(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.stack([a, b], axis=1)

    def upload(self, a: np.ndarray) -> np.ndarray:
        return a

    def empty(self, shape: Sequence[int], dtype: str) -> np.ndarray:
        return np.empty(tuple(shape), dtype=dtype)

    def launch(self, kernel: str, args: Sequence[object], workspace: Workspace = None) -> None:
        views = [view(a) if isinstance(a, np.ndarray) else a for a in args]
        getattr(_native.cpu(), kernel)(*views)

    def run(self, op: str, fn: Callable[..., Any], *args: object) -> Any:
        return fn(self, *args)


def arrays_for(op: str, check: bool, inputs: dict[str, object]) -> Arrays:
    """The backend of a call's array `inputs`: :class:`HostArrays` unless one is a torch tensor;
    then torch tensors on that tensor's device (every array input must be on it when it is a
    CUDA device). Numbers (e.g. a flip of +1) and None are not array inputs."""
    tensor = _torch_tensor_type()
    if tensor is None or not any(isinstance(v, tensor) for v in inputs.values()):
        return HostArrays()
    from ..ops import stacking as tensor_stacking  # torch is imported already

    arrays = {
        name: v
        for name, v in inputs.items()
        if v is not None and (isinstance(v, np.ndarray) or not isinstance(v, numbers.Number))
    }
    return tensor_stacking.tensor_arrays(op, check, arrays)
