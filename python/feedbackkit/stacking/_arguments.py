"""Argument checks shared by :func:`oriented_stack` and :func:`object_multipoles`: every array is
validated and converted to what the native kernels read (float64 positions, angles, flips and
weights, int64 groups, a float32/float64 map and a bool/uint8/int32/int64 mask) before any kernel
runs. The arrays stay on their backend (:mod:`._views`): NumPy, or torch tensors on one device.
Shapes and dtypes are always checked; per-object values (finite, ±1, >= 0, in range) when the
backend's ``check_values`` says so."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

from .._errors import ArgumentError
from ._views import Array, Arrays, arrays_for, dtype_kind
from .geometry import MapGeometry

__all__ = [
    "INTERPOLATION_CODES",
    "PROJECTION_CODES",
    "Interpolation",
    "Projection",
    "SamplingArgs",
    "sampling_args",
    "stack_weights_groups",
]

# Codes must match csrc/stacking/stacking.h::Interpolation and ::Projection.
INTERPOLATION_CODES = {"nearest": 0, "bilinear": 1, "bicubic": 2}
PROJECTION_CODES = {"flat": 0, "tan": 1, "zea": 2}
_MASK_DTYPES = ("bool", "uint8", "int32", "int64")

Interpolation = Literal["nearest", "bilinear", "bicubic"]
Projection = Literal["flat", "tan", "zea"]


@dataclass(frozen=True)
class SamplingArgs:
    """Validated inputs that say where and how every object samples the map."""

    xp: Arrays  #: the backend of the call's arrays
    maps: Array  #: [B, ny, nx] float32/float64
    positions: Array  #: [N, 2] float64
    angles: Array  #: [N] float64
    flips: Array | None  #: [N, 2] float64 of ±1, or None (no flips)
    mask: Array | None  #: [ny, nx] bool/uint8/int32/int64, or None
    step: float
    interpolation: str  #: a key of INTERPOLATION_CODES
    projection: str  #: a key of PROJECTION_CODES
    geometry: tuple[float, ...] | None  #: MapGeometry.native() for tan/zea


def _all_finite(a: Array) -> bool:
    return bool((abs(a) < math.inf).all())  # NaN compares false


def _real(op: str, xp: Arrays, name: str, value: object, *, ndim: int, shape: str) -> Array:
    a = xp.asarray(op, name, value)
    dtype = xp.dtype_name(a)
    if dtype_kind(dtype) not in "iuf":
        raise ArgumentError(f"{op}: '{name}' must be a real numeric array; got dtype {dtype}")
    if a.ndim != ndim:
        raise ArgumentError(f"{op}: '{name}' must be {ndim}-D {shape}; got shape {list(a.shape)}")
    return xp.cast(a, "float64")


def _per_object(op: str, xp: Arrays, name: str, value: object, n: int) -> Array:
    a = _real(op, xp, name, value, ndim=1, shape=f"[N] (N = {n})")
    if a.shape[0] != n:
        raise ArgumentError(f"{op}: '{name}' must have length N = {n} (one per position); got {a.shape[0]}")
    if xp.check_values and not _all_finite(a):
        raise ArgumentError(f"{op}: '{name}' must be finite; found NaN or inf")
    return a


def _flip(op: str, xp: Arrays, name: str, value: object, n: int) -> Array:
    if value is None:
        return xp.full(n, 1.0)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        a = xp.full(n, float(value))
    else:
        a = xp.asarray(op, name, value)
        if a.ndim == 0 and dtype_kind(xp.dtype_name(a)) in "iuf":
            a = xp.full(n, float(a))
    a = _per_object(op, xp, name, a, n)
    if xp.check_values and not bool(((a == 1.0) | (a == -1.0)).all()):
        raise ArgumentError(f"{op}: '{name}' must be +1 or -1 for every object")
    return a


def _maps(op: str, xp: Arrays, value: object) -> Array:
    a = xp.asarray(op, "maps", value)
    dtype = xp.dtype_name(a)
    if dtype_kind(dtype) != "f":
        raise ArgumentError(f"{op}: 'maps' must be float32 or float64; got dtype {dtype}")
    if a.ndim not in (2, 3):
        raise ArgumentError(
            f"{op}: 'maps' must be 2-D [ny, nx] or 3-D [B, ny, nx]; got shape {list(a.shape)}"
        )
    if 0 in a.shape:
        raise ArgumentError(f"{op}: 'maps' must not be empty; got shape {list(a.shape)}")
    if dtype not in ("float32", "float64"):
        dtype = "float32" if a.dtype.itemsize < 4 else "float64"
    a = xp.cast(a, dtype)
    return a if a.ndim == 3 else a[None]


def _mask(op: str, xp: Arrays, value: object, ny: int, nx: int) -> Array | None:
    if value is None:
        return None
    a = xp.asarray(op, "mask", value)
    if tuple(a.shape) != (ny, nx):
        raise ArgumentError(f"{op}: 'mask' must have the map's shape [{ny}, {nx}]; got {list(a.shape)}")
    dtype = xp.dtype_name(a)
    if dtype_kind(dtype) not in "biuf":
        raise ArgumentError(f"{op}: 'mask' must be boolean or numeric (nonzero = valid); got dtype {dtype}")
    return xp.cast(a, dtype) if dtype in _MASK_DTYPES else a != 0


def _positions(op: str, xp: Arrays, value: object, projection: str) -> Array:
    pos = _real(op, xp, "positions", value, ndim=2, shape="[N, 2]")
    order = "(y, x) pixels" if projection == "flat" else "(dec, ra) radians"
    if pos.shape[1] != 2:
        raise ArgumentError(f"{op}: 'positions' must have shape [N, 2] of {order}; got {list(pos.shape)}")
    if not xp.check_values or pos.shape[0] == 0:
        return pos
    if not _all_finite(pos):
        raise ArgumentError(f"{op}: 'positions' must be finite; found NaN or inf")
    top = float(abs(pos[:, 0]).max())
    if projection != "flat" and top > math.pi / 2:
        raise ArgumentError(
            f"{op}: 'positions' are (dec, ra) in radians with projection={projection!r}; "
            f"got |dec| = {top} > pi/2"
        )
    return pos


def _geometry(op: str, projection: str, geometry: object) -> tuple[float, ...] | None:
    if projection == "flat":
        if geometry is not None:
            raise ArgumentError(
                f"{op}: 'geometry' is used only with projection='tan' or 'zea' (positions in radians); "
                "with projection='flat' positions are map pixels"
            )
        return None
    if not isinstance(geometry, MapGeometry):
        raise ArgumentError(
            f"{op}: projection={projection!r} needs 'geometry', a feedbackkit.stacking.MapGeometry "
            f"(e.g. from feedbackkit.stacking.io.read_map); got {type(geometry).__name__}"
        )
    return tuple(float(v) for v in geometry.native())


def _positive_real(op: str, name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or float(value) <= 0
    ):
        raise ArgumentError(f"{op}: '{name}' must be a finite number > 0; got {value!r}")
    return float(value)


def sampling_args(
    op: str,
    maps: object,
    positions: object,
    angles: object,
    *,
    flip_x: object,
    flip_y: object,
    mask: object,
    step: object,
    projection: object,
    interpolation: object,
    geometry: object,
    check: bool,
    more_arrays: dict[str, object] | None = None,
) -> SamplingArgs:
    """Checks and converts the inputs common to the stacking kernels on the backend of the call's
    arrays (these and `more_arrays`, see :func:`~._views.arrays_for`); raises ArgumentError."""
    arrays = {"maps": maps, "positions": positions, "angles": angles, "flip_x": flip_x, "flip_y": flip_y}
    xp = arrays_for(op, check, {**arrays, "mask": mask, **(more_arrays or {})})
    if projection not in PROJECTION_CODES:
        raise ArgumentError(f"{op}: 'projection' must be one of {list(PROJECTION_CODES)}; got {projection!r}")
    if interpolation not in INTERPOLATION_CODES:
        raise ArgumentError(
            f"{op}: 'interpolation' must be one of {list(INTERPOLATION_CODES)}; got {interpolation!r}"
        )
    step_value = _positive_real(op, "step", step)
    geo = _geometry(op, str(projection), geometry)
    m = _maps(op, xp, maps)
    pos = _positions(op, xp, positions, str(projection))
    n_obj = pos.shape[0]
    ang = _per_object(op, xp, "angles", angles, n_obj)
    flips = None
    if flip_x is not None or flip_y is not None:
        fx, fy = _flip(op, xp, "flip_x", flip_x, n_obj), _flip(op, xp, "flip_y", flip_y, n_obj)
        flips = xp.stack_columns(fx, fy)
    msk = _mask(op, xp, mask, m.shape[1], m.shape[2])
    return SamplingArgs(xp, m, pos, ang, flips, msk, step_value, str(interpolation), str(projection), geo)


def stack_weights_groups(
    op: str, xp: Arrays, weights: object, groups: object, num_groups: object, n: int
) -> tuple[Array | None, Array | None, int]:
    """Validated weights [N] float64 (or None), groups [N] int64 (or None) and the group count G.
    Without `num_groups`, G = max(groups) + 1 is read from the groups (a host sync on CUDA)."""
    w = None
    if weights is not None:
        w = _per_object(op, xp, "weights", weights, n)
        if xp.check_values and bool((w < 0).any()):
            raise ArgumentError(f"{op}: 'weights' must be >= 0; got {float(w.min())}")
    if num_groups is not None and (
        isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral) or num_groups < 1
    ):
        raise ArgumentError(f"{op}: 'num_groups' must be an integer >= 1; got {num_groups!r}")
    if groups is None:
        return w, None, int(num_groups) if num_groups is not None else 1
    a = xp.asarray(op, "groups", groups)
    dtype = xp.dtype_name(a)
    if dtype_kind(dtype) not in "iu":
        raise ArgumentError(f"{op}: 'groups' must be an integer array of region ids; got dtype {dtype}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ArgumentError(f"{op}: 'groups' must be 1-D of length N = {n}; got shape {list(a.shape)}")
    g = int(num_groups) if num_groups is not None else 1
    if n and (xp.check_values or num_groups is None):
        low, top = int(a.min()), int(a.max()) + 1
        if low < 0:
            raise ArgumentError(f"{op}: 'groups' must be >= 0; got {low}")
        g = g if num_groups is not None else top
        if top > g:
            raise ArgumentError(f"{op}: 'groups' must be < num_groups = {g}; got {top - 1}")
    return w, xp.cast(a, "int64"), g
