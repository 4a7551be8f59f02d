"""The oriented stack: one fused gather of every object's rotated, flipped grid, summed per group
(conventions in the package docstring)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .._errors import ArgumentError
from ._arguments import (
    INTERPOLATION_CODES,
    PROJECTION_CODES,
    Interpolation,
    Projection,
    sampling_args,
    stack_weights_groups,
)
from ._views import Array, Arrays

__all__ = ["OrientedStack", "oriented_stack", "stack_sums"]

_OP = "oriented_stack"


@dataclass(frozen=True)
class OrientedStack:
    """Per-group accumulators of an oriented stack (G groups, B maps, P = 2n + 1): NumPy arrays,
    or torch tensors on the inputs' device when torch tensors were passed.

    A dataclass rather than a NamedTuple: a tuple field named ``count`` would shadow
    ``tuple.count``."""

    sum: Array  #: float64 [G, B, P, P]: Σ w·m·f
    weight_sum: Array  #: float64 [G, P, P]: Σ w·m
    count: Array  #: int64 [G]: objects with at least one valid sample (any weight, 0 included)

    def stack(self) -> Array:
        """``sum / weight_sum`` per group, float64 [G, B, P, P]; NaN where the weight sum is 0."""
        den = self.weight_sum[:, None, :, :]
        if not isinstance(self.sum, np.ndarray):  # a torch tensor: no errstate, no np.where
            return (self.sum / den).masked_fill(~(den > 0), math.nan)
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


def stack_sums(
    xp: Arrays,
    maps: Array,
    positions: Array,
    angles: Array,
    flips: Array | None,
    weights: Array | None,
    groups: Array | None,
    mask: Array | None,
    num_groups: int,
    half_width: int,
    step: float,
    interpolation: str,
    projection: str,
    geometry: tuple[float, ...] | None,
) -> tuple[Array, Array, Array]:
    """Allocates (sum, weight_sum, count) and runs the native kernel on validated, converted inputs
    (see :class:`~._arguments.SamplingArgs`); the NumPy path and the torch op share it."""
    p = 2 * half_width + 1
    outputs = (
        xp.empty((num_groups, maps.shape[0], p, p), "float64"),
        xp.empty((num_groups, p, p), "float64"),
        xp.empty((num_groups,), "int64"),
    )
    interp, code = INTERPOLATION_CODES[interpolation], PROJECTION_CODES[projection]
    inputs = (maps, positions, angles, flips, weights, groups, mask)
    sizes = (positions.shape[0], num_groups, maps.shape[0], half_width, code)
    xp.launch(
        "oriented_stack",
        [*inputs, half_width, step, interp, code, geometry, *outputs],
        workspace=("oriented_stack_workspace_bytes", *sizes),
    )
    return outputs


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
    check: bool = False,
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
        check: CUDA tensors only: validate the per-object values first (finite positions, angles
            and weights, |dec| ≤ π/2, flips ±1, weights ≥ 0, groups in range), which costs host
            syncs. Without it an invalid object contributes nothing and is not counted. Host
            inputs are always validated.

    Array inputs are NumPy arrays (or array-likes), or torch tensors: torch CPU tensors run the
    CPU kernel, CUDA tensors the CUDA kernel on the device's current stream (every array input
    must then be a tensor on that device). Results are NumPy arrays, or torch tensors on the
    inputs' device when any input was a torch tensor. On CUDA, leaving `num_groups` out with
    `groups` costs a host sync (G = max(groups) + 1 is read back).

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
        check=check,
        more_arrays={"weights": weights, "groups": groups},
    )
    xp = args.xp
    w, grp, g = stack_weights_groups(_OP, xp, weights, groups, num_groups, args.positions.shape[0])
    sums = xp.run(
        _OP,
        stack_sums,
        args.maps,
        args.positions,
        args.angles,
        args.flips,
        w,
        grp,
        args.mask,
        g,
        int(half_width),
        args.step,
        args.interpolation,
        args.projection,
        args.geometry,
    )
    return OrientedStack(*sums)
