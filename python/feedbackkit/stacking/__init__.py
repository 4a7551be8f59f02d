"""Public API of the `stacking` family: oriented stacking of sky maps (NumPy in, NumPy out).

:func:`oriented_stack` cuts a (2n+1)×(2n+1) grid around every object, rotated by the object's
angle and optionally flipped, and sums it per group in one fused gather (C++ / OpenMP), without
per-object cutouts. This package never imports torch; CPU torch tensors are accepted (through
``.numpy()``) when torch is already imported.

Conventions (NumPy order): a map is indexed ``[row, col] = [y, x]``; ``positions[N, 2]`` are
``(y, x)`` in fractional pixels with pixel centres at integers. Output pixel ``[a, b]``
(``0 <= a, b <= 2n``) has offsets ``u = (b − n)·step`` along x and ``v = (a − n)·step`` along y;
with ``u′ = flip_x·u`` and ``v′ = flip_y·v`` it samples the map at

    x = x₀ + u′ cos α − v′ sin α,   y = y₀ + u′ sin α + v′ cos α,

so an object elongated along angle α (measured from +x toward +y) ends up along +x in the stack.

Interpolation (the stencil along each axis, pixel centres at integers):

- ``"nearest"``: the pixel ``floor(x + 0.5)`` (ties round up);
- ``"bilinear"``: pixels ``floor(x)`` and ``floor(x) + 1`` with weights ``1 − t``, ``t``
  (``t = x − floor(x)``);
- ``"bicubic"``: Keys cubic convolution with ``a = −0.5`` on pixels ``floor(x) − 1 … floor(x) + 2``
  (interpolating, exact for polynomials of degree ≤ 2; no prefilter, unlike a cubic spline).

Masking rule: a sample is *valid* (m = 1) iff every pixel that enters its interpolation with a
nonzero weight lies inside the map and is valid in ``mask`` (nonzero = valid); otherwise m = 0
and the sample contributes nothing. So samples outside the map are masked; bilinear samples are
valid for ``0 ≤ x ≤ nx − 1``, bicubic ones for ``1 ≤ x ≤ nx − 2`` (plus exact pixel centres),
nearest ones for ``−0.5 ≤ x < nx − 0.5`` (likewise in y). Mask NaNs in the map: a NaN in a
pixel with nonzero weight propagates into ``sum``.

Accumulation is in float64 with a fixed order (each output pixel adds the objects in index
order), so results are bitwise identical for every OpenMP thread count.

Profiles (:mod:`.profiles`): :func:`multipoles` (ring multipoles C_m(r), S_m(r) of a stack),
:func:`radial_bins` and :func:`region_covariance` (jackknife-by-region errors).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .. import _native
from .._errors import ArgumentError
from ._views import as_numpy, native, optional_view, view
from .profiles import multipoles, radial_bins, region_covariance

__all__ = [
    "ArgumentError",
    "OrientedStack",
    "multipoles",
    "oriented_stack",
    "radial_bins",
    "region_covariance",
]

_OP = "oriented_stack"
# Codes must match csrc/stacking/stacking.h::Interpolation.
_INTERPOLATION = {"nearest": 0, "bilinear": 1, "bicubic": 2}
_PROJECTIONS = ("flat", "tan", "zea")
_MASK_DTYPES = (np.dtype(np.bool_), np.dtype(np.uint8), np.dtype(np.int32), np.dtype(np.int64))

Interpolation = Literal["nearest", "bilinear", "bicubic"]
Projection = Literal["flat", "tan", "zea"]


@dataclass(frozen=True)
class OrientedStack:
    """Per-group accumulators of an oriented stack (G groups, B maps, P = 2n + 1).

    A dataclass rather than a NamedTuple: a tuple field named ``count`` would shadow
    ``tuple.count``."""

    sum: np.ndarray  #: float64 [G, B, P, P]: Σ w·m·f
    weight_sum: np.ndarray  #: float64 [G, P, P]: Σ w·m
    count: np.ndarray  #: int64 [G]: objects with at least one valid sample (any weight, 0 included)

    def stack(self) -> np.ndarray:
        """``sum / weight_sum`` per group, float64 [G, B, P, P]; NaN where the weight sum is 0."""
        den = self.weight_sum[:, None, :, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.sum / den
        return np.where(den > 0, out, np.nan)

    def total(self) -> OrientedStack:
        """All groups summed into one (G = 1)."""
        return OrientedStack(
            self.sum.sum(axis=0, keepdims=True),
            self.weight_sum.sum(axis=0, keepdims=True),
            self.count.sum(axis=0, keepdims=True),
        )


def _real(name: str, value: object, *, ndim: int, shape: str) -> np.ndarray:
    a = as_numpy(_OP, name, value)
    if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
        raise ArgumentError(f"{_OP}: '{name}' must be a real numeric array; got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ArgumentError(f"{_OP}: '{name}' must be {ndim}-D {shape}; got shape {list(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _per_object(name: str, value: object, n: int) -> np.ndarray:
    a = _real(name, value, ndim=1, shape=f"[N] (N = {n})")
    if a.shape[0] != n:
        raise ArgumentError(f"{_OP}: '{name}' must have length N = {n} (one per position); got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise ArgumentError(f"{_OP}: '{name}' must be finite; found NaN or inf")
    return a


def _flip(name: str, value: object, n: int) -> np.ndarray:
    if value is None:
        return np.ones(n)
    a = as_numpy(_OP, name, value)
    if a.ndim == 0:
        a = np.full(n, a)
    a = _per_object(name, a, n)
    if not np.isin(a, (-1.0, 1.0)).all():
        raise ArgumentError(f"{_OP}: '{name}' must be +1 or -1 for every object")
    return a


def _maps(value: object) -> np.ndarray:
    a = as_numpy(_OP, "maps", value)
    if a.dtype.kind != "f":
        raise ArgumentError(f"{_OP}: 'maps' must be float32 or float64; got dtype {a.dtype}")
    if a.ndim not in (2, 3):
        raise ArgumentError(
            f"{_OP}: 'maps' must be 2-D [ny, nx] or 3-D [B, ny, nx]; got shape {list(a.shape)}"
        )
    if a.size == 0:
        raise ArgumentError(f"{_OP}: 'maps' must not be empty; got shape {list(a.shape)}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32 if a.dtype.itemsize < 4 else np.float64)
    return native(a if a.ndim == 3 else a[None])


def _groups(value: object, n: int, num_groups: int | None) -> tuple[np.ndarray | None, int]:
    if num_groups is not None and (
        isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral) or num_groups < 1
    ):
        raise ArgumentError(f"{_OP}: 'num_groups' must be an integer >= 1; got {num_groups!r}")
    if value is None:
        return None, int(num_groups) if num_groups is not None else 1
    a = as_numpy(_OP, "groups", value)
    if a.dtype.kind not in "iu":
        raise ArgumentError(f"{_OP}: 'groups' must be an integer array of region ids; got dtype {a.dtype}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ArgumentError(f"{_OP}: 'groups' must be 1-D of length N = {n}; got shape {list(a.shape)}")
    if n and a.min() < 0:
        raise ArgumentError(f"{_OP}: 'groups' must be >= 0; got {int(a.min())}")
    top = int(a.max()) + 1 if n else 1
    g = int(num_groups) if num_groups is not None else top
    if top > g:
        raise ArgumentError(f"{_OP}: 'groups' must be < num_groups = {g}; got {top - 1}")
    return np.ascontiguousarray(a, dtype=np.int64), g


def _mask(value: object, ny: int, nx: int) -> np.ndarray | None:
    if value is None:
        return None
    a = as_numpy(_OP, "mask", value)
    if a.shape != (ny, nx):
        raise ArgumentError(f"{_OP}: 'mask' must have the map's shape [{ny}, {nx}]; got {list(a.shape)}")
    if a.dtype.kind not in "biuf":
        raise ArgumentError(
            f"{_OP}: 'mask' must be boolean or numeric (nonzero = valid); got dtype {a.dtype}"
        )
    a = native(a)
    if a.dtype not in _MASK_DTYPES:
        a = a != 0
    return a


def oriented_stack(
    maps: object,
    positions: object,
    angles: object,
    *,
    flip_x: object = None,
    flip_y: object = None,
    weights: object = None,
    groups: object = None,
    num_groups: int | None = None,
    mask: object = None,
    half_width: int,
    step: float = 1.0,
    projection: Projection = "flat",
    interpolation: Interpolation = "bilinear",
) -> OrientedStack:
    """Oriented stack of `maps` around `positions`, per group.

    Args:
        maps: [ny, nx] or [B, ny, nx] float32/float64 (a 2-D map gives B = 1).
        positions: [N, 2] object centres (y, x) in fractional pixels.
        angles: [N] orientation α in radians, from +x toward +y.
        flip_x, flip_y: None (no flip), ±1, or [N] of ±1: u′ = flip_x·u, v′ = flip_y·v.
        weights: [N] finite weights w ≥ 0 (default 1).
        groups: [N] integer region ids in [0, G); G = `num_groups`, else max(groups) + 1.
        num_groups: number of groups G (default max(groups) + 1, or 1 without groups).
        mask: [ny, nx], nonzero = valid (bool/uint8/int32/int64 as they are, other numeric dtypes
            through ``!= 0``; see the module docstring for the masking rule).
        half_width: n ≥ 1; the stack is (2n + 1) × (2n + 1).
        step: Δ, the output pixel size in input pixels.
        projection: only "flat" so far ("tan" and "zea" are not implemented yet).
        interpolation: "nearest", "bilinear" (default) or "bicubic" (Keys, a = −0.5).

    Returns:
        :class:`OrientedStack` with ``sum`` [G, B, P, P], ``weight_sum`` [G, P, P] and ``count`` [G]
        (objects with at least one valid sample; fully masked objects contribute nothing).
        ``.stack()`` gives ``sum / weight_sum``.
    """
    if projection not in _PROJECTIONS:
        raise ArgumentError(f"{_OP}: 'projection' must be one of {list(_PROJECTIONS)}; got {projection!r}")
    if projection != "flat":
        raise ArgumentError(
            f"{_OP}: projection={projection!r} is not implemented yet; only projection='flat' is available"
        )
    if interpolation not in _INTERPOLATION:
        raise ArgumentError(
            f"{_OP}: 'interpolation' must be one of {list(_INTERPOLATION)}; got {interpolation!r}"
        )
    if isinstance(half_width, bool) or not isinstance(half_width, numbers.Integral) or half_width < 1:
        raise ArgumentError(f"{_OP}: 'half_width' must be an integer >= 1; got {half_width!r}")
    if (
        isinstance(step, bool)
        or not isinstance(step, numbers.Real)
        or not math.isfinite(float(step))
        or float(step) <= 0
    ):
        raise ArgumentError(f"{_OP}: 'step' must be a finite number > 0; got {step!r}")

    m = _maps(maps)
    pos = _real("positions", positions, ndim=2, shape="[N, 2] of (y, x)")
    if pos.shape[1] != 2:
        raise ArgumentError(f"{_OP}: 'positions' must have shape [N, 2] of (y, x); got {list(pos.shape)}")
    if not np.isfinite(pos).all():
        raise ArgumentError(f"{_OP}: 'positions' must be finite; found NaN or inf")
    n_obj = pos.shape[0]
    ang = _per_object("angles", angles, n_obj)
    fx = _flip("flip_x", flip_x, n_obj)
    fy = _flip("flip_y", flip_y, n_obj)
    flips = None if flip_x is None and flip_y is None else np.ascontiguousarray(np.stack([fx, fy], axis=1))
    w = None
    if weights is not None:
        w = _per_object("weights", weights, n_obj)
        if (w < 0).any():
            raise ArgumentError(f"{_OP}: 'weights' must be >= 0; got {float(w.min())}")
    grp, g = _groups(groups, n_obj, num_groups)
    msk = _mask(mask, m.shape[1], m.shape[2])

    p = 2 * int(half_width) + 1
    out_sum = np.zeros((g, m.shape[0], p, p), dtype=np.float64)
    out_wsum = np.zeros((g, p, p), dtype=np.float64)
    out_count = np.zeros(g, dtype=np.int64)
    keep = (m, pos, ang, flips, w, grp, msk)  # alive until the native call returns
    _native.cpu().oriented_stack(
        view(m),
        view(pos),
        view(ang),
        optional_view(flips),
        optional_view(w),
        optional_view(grp),
        optional_view(msk),
        int(half_width),
        float(step),
        _INTERPOLATION[interpolation],
        view(out_sum),
        view(out_wsum),
        view(out_count),
    )
    del keep
    return OrientedStack(out_sum, out_wsum, out_count)
