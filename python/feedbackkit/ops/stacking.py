"""torch.library ops of the `stacking` family (semantics: feedbackkit.stacking), and the torch
backend the stacking functions use when they are given torch tensors.

The ops take inputs already in the kernels' form (as :func:`feedbackkit.stacking.oriented_stack`
converts them: maps [B, ny, nx] float32/float64, positions [N, 2] float64, flips [N, 2] float64,
weights [N] float64, groups [N] int64, mask [ny, nx] bool/uint8/int32/int64, radii [R] float64 on
the inputs' device) and return new float64 / int64 tensors on that device:

- ``oriented_stack(maps, positions, angles, flips, weights, groups, mask, num_groups, half_width,
  step, interpolation, projection, geometry) -> (sum, weight_sum, count)``
- ``object_multipoles(maps, positions, angles, flips, mask, radii, m_max, n_theta, step,
  interpolation, projection, geometry) -> (C, S)``
- ``multipoles(image [M, P, P], radii, m_max, n_theta) -> (C, S)``

The CPU kernels validate per-object values and raise; the CUDA kernels run on the current stream
without a host sync, with caller-allocated workspaces, and skip invalid objects (stacking.h).
The stacking package imports this module only when it was given a torch tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch

from .. import _native
from .._checks import check_same_device
from .._errors import ArgumentError
from ..stacking._views import Workspace, as_numpy, native
from ..stacking.object_profiles import object_ring_sums
from ..stacking.oriented import stack_sums
from ..stacking.profiles import image_ring_sums
from ._library import LIB, launch, register, view

__all__ = ["TensorArrays", "tensor_arrays"]

SAMPLING = "float step, str interpolation, str projection, float[]? geometry"
LIB.define(
    "oriented_stack(Tensor maps, Tensor positions, Tensor angles, Tensor? flips, Tensor? weights, "
    f"Tensor? groups, Tensor? mask, int num_groups, int half_width, {SAMPLING}) -> (Tensor, Tensor, Tensor)"
)
LIB.define(
    "object_multipoles(Tensor maps, Tensor positions, Tensor angles, Tensor? flips, Tensor? mask, "
    f"Tensor radii, int m_max, int n_theta, {SAMPLING}) -> (Tensor, Tensor)"
)
LIB.define("multipoles(Tensor image, Tensor radii, int m_max, int n_theta) -> (Tensor, Tensor)")


class TensorArrays:
    """Torch tensors on one device (:class:`feedbackkit.stacking._views.Arrays`): the CPU, whose
    kernels validate every value, or a CUDA device, whose kernels run on its current stream and
    whose per-object values are validated only with `check` (each check is a host sync).
    With `run_kernels` False (fake tensors) launches do nothing: the outputs only get shapes."""

    def __init__(self, device: torch.device, check: bool = True, run_kernels: bool = True) -> None:
        self.device = device
        self.check_values = check or device.type == "cpu"
        self.run_kernels = run_kernels

    def asarray(self, op: str, name: str, value: object) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            if value.device != self.device:
                raise ArgumentError(f"{op}: '{name}' is on {value.device}, the other inputs on {self.device}")
            return value.detach()
        if self.device.type != "cpu":
            raise ArgumentError(
                f"{op}: '{name}' must be a torch tensor on {self.device} like the other array inputs; "
                f"got {type(value).__name__}"
            )
        a = as_numpy(op, name, value)
        try:
            return torch.from_numpy(np.ascontiguousarray(native(a)))
        except TypeError as exc:
            raise ArgumentError(f"{op}: '{name}' has unsupported dtype {a.dtype}") from exc

    def dtype_name(self, a: torch.Tensor) -> str:
        return str(a.dtype).removeprefix("torch.")

    def cast(self, a: torch.Tensor, dtype: str) -> torch.Tensor:
        return a.to(getattr(torch, dtype))

    def full(self, n: int, value: float) -> torch.Tensor:
        return torch.full((n,), value, dtype=torch.float64, device=self.device)

    def stack_columns(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack([a, b], dim=1)

    def upload(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=self.device)

    def empty(self, shape: Sequence[int], dtype: str) -> torch.Tensor:
        return torch.empty(tuple(shape), dtype=getattr(torch, dtype), device=self.device)

    def launch(self, kernel: str, args: Sequence[object], workspace: Workspace = None) -> None:
        if not self.run_kernels:
            return
        like = next(a for a in args if isinstance(a, torch.Tensor))
        views = [view(a) if isinstance(a, torch.Tensor) else a for a in args]
        if not like.is_cuda:
            launch(kernel, like, *views)
            return
        with torch.cuda.device(like.device):
            buffer = _workspace(like, workspace)
            launch(kernel, like, *views, *map(view, buffer))

    def run(self, op: str, fn: Callable[..., Any], *args: object) -> Any:
        return getattr(torch.ops.feedbackkit, op)(*args)


def _workspace(like: torch.Tensor, query: Workspace) -> tuple[torch.Tensor, ...]:
    """The CUDA kernel's scratch buffer, sized by the module's query `query` = (name, *sizes)."""
    if query is None:
        return ()
    name, *sizes = query
    nbytes = getattr(_native.cuda(), str(name))(*sizes)
    return (torch.empty(nbytes, dtype=torch.uint8, device=like.device),)


def tensor_arrays(op: str, check: bool, arrays: dict[str, object]) -> TensorArrays:
    """The backend of a call with torch tensors among its array inputs: their device, which must
    be the CPU or one CUDA device; on a CUDA device every array input must be a tensor there, and
    feedbackkit's CUDA kernels must be available."""
    tensors = {name: v for name, v in arrays.items() if isinstance(v, torch.Tensor)}
    for name, t in tensors.items():
        if t.device.type not in ("cpu", "cuda"):
            raise ArgumentError(f"{op}: '{name}' is on {t.device}; stacking runs on the CPU and CUDA devices")
    on_cuda = [name for name, t in tensors.items() if t.device.type == "cuda"]
    if not on_cuda:
        return TensorArrays(torch.device("cpu"))
    first = on_cuda[0]
    device = tensors[first].device
    for name, value in arrays.items():
        if not isinstance(value, torch.Tensor) or value.device != device:
            where = value.device if isinstance(value, torch.Tensor) else type(value).__name__
            raise ArgumentError(
                f"{op}: '{name}' must be a torch tensor on {device} like '{first}' (every array input of a "
                f"CUDA call is); got {where}"
            )
    try:
        _native.cuda()
    except RuntimeError as exc:
        raise RuntimeError(f"{op}: '{first}' is on {device} but CUDA kernels are unavailable: {exc}") from exc
    return TensorArrays(device, check)


def _register(name: str, fn: Callable[..., Any]) -> None:
    """The op `name` runs `fn` (a stacking function taking the backend first) on the device of its
    first argument, which every tensor argument must share; its fake impl runs `fn` without
    kernels, so both give the same output shapes."""
    names = [a.name for a in getattr(torch.ops.feedbackkit, name).default._schema.arguments]

    def backend(args: Sequence[object], run_kernels: bool) -> TensorArrays:
        tensors: dict[str, torch.Tensor | None] = {
            n: a for n, a in zip(names, args, strict=True) if isinstance(a, torch.Tensor)
        }
        check_same_device(name, names[0], tensors)
        return TensorArrays(cast(torch.Tensor, args[0]).device, run_kernels=run_kernels)

    def impl(*args: object) -> Any:
        return fn(backend(args, True), *args)

    def fake(*args: object) -> Any:
        return fn(backend(args, False), *args)

    register(name, impl, fake)


_register("oriented_stack", stack_sums)
_register("object_multipoles", object_ring_sums)
_register("multipoles", image_ring_sums)
