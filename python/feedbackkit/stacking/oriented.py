"""The oriented stack: one fused gather of every object's rotated, flipped grid, summed per group
(conventions in the package docstring)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .. import _native
from .._errors import ArgumentError
from ._arguments import Interpolation, Projection, sampling_args, stack_weights_groups
from ._views import optional_view, view

__all__ = ["OrientedStack", "oriented_stack"]

_OP = "oriented_stack"


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
    geometry: object = None,
    interpolation: Interpolation = "bilinear",
) -> OrientedStack:
    """Oriented stack of `maps` around `positions`, per group.

    Args:
        maps: [ny, nx] or [B, ny, nx] float32/float64 (a 2-D map gives B = 1).
        positions: [N, 2] object centres: (y, x) in fractional pixels for ``projection="flat"``,
            (dec, ra) in radians for "tan" and "zea".
        angles: [N] orientation α in radians, from +x toward +y.
        flip_x, flip_y: None (no flip), ±1, or [N] of ±1: u′ = flip_x·u, v′ = flip_y·v.
        weights: [N] finite weights w ≥ 0 (default 1).
        groups: [N] integer region ids in [0, G); G = `num_groups`, else max(groups) + 1.
        num_groups: number of groups G (default max(groups) + 1, or 1 without groups).
        mask: [ny, nx], nonzero = valid (bool/uint8/int32/int64 as they are, other numeric dtypes
            through ``!= 0``; see the package docstring for the masking rule).
        half_width: n ≥ 1; the stack is (2n + 1) × (2n + 1).
        step: Δ, the output pixel size: in map pixels ("flat") or radians ("tan", "zea").
        projection: "flat" (pixel offsets on the map), or "tan" / "zea" (a gnomonic or zenithal
            equal-area plane centred on each object, sampled through `geometry`).
        geometry: the map's :class:`~feedbackkit.stacking.MapGeometry` (CAR or TAN); required by
            "tan" and "zea", refused by "flat".
        interpolation: "nearest", "bilinear" (default) or "bicubic" (Keys, a = −0.5).

    Returns:
        :class:`OrientedStack` with ``sum`` [G, B, P, P], ``weight_sum`` [G, P, P] and ``count`` [G]
        (objects with at least one valid sample; fully masked objects contribute nothing).
        ``.stack()`` gives ``sum / weight_sum``.
    """
    if isinstance(half_width, bool) or not isinstance(half_width, numbers.Integral) or half_width < 1:
        raise ArgumentError(f"{_OP}: 'half_width' must be an integer >= 1; got {half_width!r}")
    args = sampling_args(
        _OP,
        maps,
        positions,
        angles,
        flip_x=flip_x,
        flip_y=flip_y,
        mask=mask,
        step=step,
        projection=projection,
        interpolation=interpolation,
        geometry=geometry,
    )
    w, grp, g = stack_weights_groups(_OP, weights, groups, num_groups, args.positions.shape[0])

    p = 2 * int(half_width) + 1
    out_sum = np.zeros((g, args.maps.shape[0], p, p), dtype=np.float64)
    out_wsum = np.zeros((g, p, p), dtype=np.float64)
    out_count = np.zeros(g, dtype=np.int64)
    keep = (args, w, grp)  # alive until the native call returns
    _native.cpu().oriented_stack(
        view(args.maps),
        view(args.positions),
        view(args.angles),
        optional_view(args.flips),
        optional_view(w),
        optional_view(grp),
        optional_view(args.mask),
        int(half_width),
        args.step,
        args.interpolation,
        args.projection,
        args.geometry,
        view(out_sum),
        view(out_wsum),
        view(out_count),
    )
    del keep
    return OrientedStack(out_sum, out_wsum, out_count)
