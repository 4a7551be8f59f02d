"""Oriented stack of a catalog of sky positions on a map, in chunks of objects.

:func:`stack_catalog` turns a :class:`~feedbackkit.stacking.catalog.Catalog` into the inputs of
:func:`~feedbackkit.stacking.oriented_stack` and sums the per-group accumulators of successive
chunks of objects (the sums are additive, so chunking changes only the order of the float64
additions, and lets a caller report progress):

- ``projection="tan"`` or ``"zea"`` (spherical): positions are (dec, ra) in radians, the step is
  the stack resolution in radians, and the map's geometry maps the sky to pixels exactly.
- ``projection="flat"``: positions are the objects' pixel coordinates (y, x) from
  :meth:`MapGeometry.sky_to_pixel` and the step is the resolution divided by the map's pixel
  size (square root of the pixel area). Pixel offsets stand in for angles, which is right only
  for small stacks on a map whose pixels are nearly square on the sky around every object (a
  TAN map, or a CAR map near the equator). Objects without a pixel (the far hemisphere of a TAN
  map) are left out.

Catalog regions may be any integers ≥ 0; they are relabelled 0 … G − 1 in increasing order
(``regions`` gives the label of every group). Non-finite map pixels are masked (and zeroed), so
they never reach a sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import ArgumentError
from ._arguments import Interpolation, Projection
from .catalog import Catalog
from .geometry import MapGeometry
from .oriented import OrientedStack, oriented_stack

__all__ = ["CatalogStack", "stack_catalog"]

_OP = "stack_catalog"


@dataclass(frozen=True, eq=False)
class CatalogStack:
    """The summed accumulators of :func:`stack_catalog` and the region id of each group."""

    result: OrientedStack  #: per-group sums, G = len(regions)
    regions: np.ndarray  #: int64 [G]: the catalog's region id of each group


def _sampling(
    geometry: MapGeometry, catalog: Catalog, projection: Projection, step_rad: float
) -> tuple[np.ndarray, np.ndarray, float, dict[str, Any]]:
    """(positions, which catalog objects they are, step, extra keyword arguments)."""
    if projection == "flat":
        y, x = geometry.sky_to_pixel(catalog.ra, catalog.dec)
        keep = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        step = math.degrees(step_rad) / geometry.pixel_scale_deg
        return np.stack([y[keep], x[keep]], axis=1), keep, step, {}
    positions = np.deg2rad(np.stack([catalog.dec, catalog.ra], axis=1))
    return positions, np.arange(len(catalog)), step_rad, {"geometry": geometry}


def stack_catalog(
    maps: np.ndarray,
    geometry: MapGeometry,
    catalog: Catalog,
    *,
    half_width: int,
    step_rad: float,
    projection: Projection = "tan",
    interpolation: Interpolation = "bilinear",
    use_flips: bool = True,
    chunk_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> CatalogStack:
    """Oriented stack of every catalog object, grouped by region.

    Args:
        maps: [ny, nx] or [B, ny, nx] float map(s) described by `geometry`.
        geometry: the maps' :class:`MapGeometry`.
        catalog: objects (angles in radians, flips, weights, regions).
        half_width: n; the stack is (2n + 1) × (2n + 1) pixels.
        step_rad: stack pixel size in radians.
        projection: "tan" (default), "zea" or "flat" (module docstring).
        interpolation: as :func:`oriented_stack`.
        use_flips: apply the catalog's flip_x, flip_y (False: no flips).
        chunk_size: objects per kernel call.
        progress: called with the number of catalog objects done after each chunk (and first
            with the number left out, if any); the calls add up to len(catalog).

    Returns:
        :class:`CatalogStack`.
    """
    if not isinstance(catalog, Catalog):
        raise ArgumentError(f"{_OP}: 'catalog' must be a Catalog; got {type(catalog).__name__}")
    if len(catalog) == 0:
        raise ArgumentError(f"{_OP}: 'catalog' has no objects")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ArgumentError(f"{_OP}: 'chunk_size' must be an integer >= 1; got {chunk_size!r}")
    if not (isinstance(step_rad, (int, float)) and math.isfinite(step_rad) and step_rad > 0):
        raise ArgumentError(f"{_OP}: 'step_rad' must be a finite number > 0; got {step_rad!r}")
    maps = np.asarray(maps)
    mask = None
    finite = np.isfinite(maps)
    if not finite.all():
        mask = finite.all(axis=0) if maps.ndim == 3 else finite
        maps = np.where(finite, maps, 0).astype(maps.dtype, copy=False)
    positions, index, step, extra = _sampling(geometry, catalog, projection, step_rad)
    regions, groups = np.unique(catalog.region, return_inverse=True)
    groups = groups.reshape(-1)[index]
    if progress is not None and index.size < len(catalog):
        progress(len(catalog) - index.size)
    total: OrientedStack | None = None
    for start in range(0, max(index.size, 1), chunk_size):
        part = slice(start, start + chunk_size)
        chunk = index[part]
        result = oriented_stack(
            maps,
            positions[part],
            catalog.angle[chunk],
            flip_x=catalog.flip_x[chunk] if use_flips else None,
            flip_y=catalog.flip_y[chunk] if use_flips else None,
            weights=catalog.weight[chunk],
            groups=groups[part],
            num_groups=regions.size,
            mask=mask,
            half_width=half_width,
            step=step,
            projection=projection,
            interpolation=interpolation,
            **extra,
        )
        total = result if total is None else _add(total, result)
        if progress is not None:
            progress(chunk.size)
    assert total is not None
    return CatalogStack(total, regions.astype(np.int64))


def _add(a: OrientedStack, b: OrientedStack) -> OrientedStack:
    return OrientedStack(a.sum + b.sum, a.weight_sum + b.weight_sum, a.count + b.count)
