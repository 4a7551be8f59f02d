"""Argument checks shared by :func:`oriented_stack` and :func:`object_multipoles`: every array is
validated and converted to what the native kernels read (float64 positions, angles, flips and
weights, int64 groups, a native-order map and mask) before any kernel runs."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._errors import ArgumentError
from ._views import as_numpy, native
from .geometry import MapGeometry

__all__ = ["Interpolation", "Projection", "SamplingArgs", "sampling_args", "stack_weights_groups"]

# Codes must match csrc/stacking/stacking.h::Interpolation and ::Projection.
INTERPOLATION_CODES = {"nearest": 0, "bilinear": 1, "bicubic": 2}
PROJECTION_CODES = {"flat": 0, "tan": 1, "zea": 2}
_MASK_DTYPES = (np.dtype(np.bool_), np.dtype(np.uint8), np.dtype(np.int32), np.dtype(np.int64))

Interpolation = Literal["nearest", "bilinear", "bicubic"]
Projection = Literal["flat", "tan", "zea"]


@dataclass(frozen=True)
class SamplingArgs:
    """Validated inputs that say where and how every object samples the map."""

    maps: np.ndarray  #: [B, ny, nx] float32/float64, native byte order
    positions: np.ndarray  #: [N, 2] float64
    angles: np.ndarray  #: [N] float64
    flips: np.ndarray | None  #: [N, 2] float64 of ±1, or None (no flips)
    mask: np.ndarray | None  #: [ny, nx] bool/uint8/int32/int64, or None
    step: float
    interpolation: int
    projection: int
    geometry: tuple[float, ...] | None  #: MapGeometry.native() for tan/zea


def _real(op: str, name: str, value: object, *, ndim: int, shape: str) -> np.ndarray:
    a = as_numpy(op, name, value)
    if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
        raise ArgumentError(f"{op}: '{name}' must be a real numeric array; got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ArgumentError(f"{op}: '{name}' must be {ndim}-D {shape}; got shape {list(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _per_object(op: str, name: str, value: object, n: int) -> np.ndarray:
    a = _real(op, name, value, ndim=1, shape=f"[N] (N = {n})")
    if a.shape[0] != n:
        raise ArgumentError(f"{op}: '{name}' must have length N = {n} (one per position); got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise ArgumentError(f"{op}: '{name}' must be finite; found NaN or inf")
    return a


def _flip(op: str, name: str, value: object, n: int) -> np.ndarray:
    if value is None:
        return np.ones(n)
    a = as_numpy(op, name, value)
    if a.ndim == 0:
        a = np.full(n, a)
    a = _per_object(op, name, a, n)
    if not np.isin(a, (-1.0, 1.0)).all():
        raise ArgumentError(f"{op}: '{name}' must be +1 or -1 for every object")
    return a


def _maps(op: str, value: object) -> np.ndarray:
    a = as_numpy(op, "maps", value)
    if a.dtype.kind != "f":
        raise ArgumentError(f"{op}: 'maps' must be float32 or float64; got dtype {a.dtype}")
    if a.ndim not in (2, 3):
        raise ArgumentError(
            f"{op}: 'maps' must be 2-D [ny, nx] or 3-D [B, ny, nx]; got shape {list(a.shape)}"
        )
    if a.size == 0:
        raise ArgumentError(f"{op}: 'maps' must not be empty; got shape {list(a.shape)}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32 if a.dtype.itemsize < 4 else np.float64)
    return native(a if a.ndim == 3 else a[None])


def _mask(op: str, value: object, ny: int, nx: int) -> np.ndarray | None:
    if value is None:
        return None
    a = as_numpy(op, "mask", value)
    if a.shape != (ny, nx):
        raise ArgumentError(f"{op}: 'mask' must have the map's shape [{ny}, {nx}]; got {list(a.shape)}")
    if a.dtype.kind not in "biuf":
        raise ArgumentError(f"{op}: 'mask' must be boolean or numeric (nonzero = valid); got dtype {a.dtype}")
    a = native(a)
    if a.dtype not in _MASK_DTYPES:
        a = a != 0
    return a


def _positions(op: str, value: object, projection: str) -> np.ndarray:
    pos = _real(op, "positions", value, ndim=2, shape="[N, 2]")
    order = "(y, x) pixels" if projection == "flat" else "(dec, ra) radians"
    if pos.shape[1] != 2:
        raise ArgumentError(f"{op}: 'positions' must have shape [N, 2] of {order}; got {list(pos.shape)}")
    if not np.isfinite(pos).all():
        raise ArgumentError(f"{op}: 'positions' must be finite; found NaN or inf")
    if projection != "flat" and pos.shape[0] and float(np.abs(pos[:, 0]).max()) > math.pi / 2:
        raise ArgumentError(
            f"{op}: 'positions' are (dec, ra) in radians with projection={projection!r}; "
            f"got |dec| = {float(np.abs(pos[:, 0]).max())} > pi/2"
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
) -> SamplingArgs:
    """Checks and converts the inputs common to the stacking kernels; raises ArgumentError."""
    if projection not in PROJECTION_CODES:
        raise ArgumentError(f"{op}: 'projection' must be one of {list(PROJECTION_CODES)}; got {projection!r}")
    if interpolation not in INTERPOLATION_CODES:
        raise ArgumentError(
            f"{op}: 'interpolation' must be one of {list(INTERPOLATION_CODES)}; got {interpolation!r}"
        )
    step_value = _positive_real(op, "step", step)
    geo = _geometry(op, str(projection), geometry)
    m = _maps(op, maps)
    pos = _positions(op, positions, str(projection))
    n_obj = pos.shape[0]
    ang = _per_object(op, "angles", angles, n_obj)
    fx = _flip(op, "flip_x", flip_x, n_obj)
    fy = _flip(op, "flip_y", flip_y, n_obj)
    flips = None if flip_x is None and flip_y is None else np.ascontiguousarray(np.stack([fx, fy], axis=1))
    msk = _mask(op, mask, m.shape[1], m.shape[2])
    return SamplingArgs(
        m,
        pos,
        ang,
        flips,
        msk,
        step_value,
        INTERPOLATION_CODES[str(interpolation)],
        PROJECTION_CODES[str(projection)],
        geo,
    )


def stack_weights_groups(
    op: str, weights: object, groups: object, num_groups: object, n: int
) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """Validated weights [N] float64 (or None), groups [N] int64 (or None) and the group count G."""
    w = None
    if weights is not None:
        w = _per_object(op, "weights", weights, n)
        if (w < 0).any():
            raise ArgumentError(f"{op}: 'weights' must be >= 0; got {float(w.min())}")
    if num_groups is not None and (
        isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral) or num_groups < 1
    ):
        raise ArgumentError(f"{op}: 'num_groups' must be an integer >= 1; got {num_groups!r}")
    if groups is None:
        return w, None, int(num_groups) if num_groups is not None else 1
    a = as_numpy(op, "groups", groups)
    if a.dtype.kind not in "iu":
        raise ArgumentError(f"{op}: 'groups' must be an integer array of region ids; got dtype {a.dtype}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ArgumentError(f"{op}: 'groups' must be 1-D of length N = {n}; got shape {list(a.shape)}")
    if n and a.min() < 0:
        raise ArgumentError(f"{op}: 'groups' must be >= 0; got {int(a.min())}")
    top = int(a.max()) + 1 if n else 1
    g = int(num_groups) if num_groups is not None else top
    if top > g:
        raise ArgumentError(f"{op}: 'groups' must be < num_groups = {g}; got {top - 1}")
    return w, np.ascontiguousarray(a, dtype=np.int64), g
