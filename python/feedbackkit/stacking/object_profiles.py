"""Ring multipoles of every object read straight from the map, without cutouts or a stack.

Each object's ring of radius r is sampled at θ_j = 2πj / n_theta (j = 0 … n_theta − 1) at the
offsets ``u = r·step·cos θ_j``, ``v = r·step·sin θ_j`` of the object's own frame: the frame of
:func:`~feedbackkit.stacking.oriented_stack` (same positions, angles, flips, projection,
geometry and interpolation), so r is in stack pixels and θ is measured from the stack's +x
toward +y. The samples are projected as in :func:`~feedbackkit.stacking.multipoles`:
C_0 = ring mean, C_m = (2/n_θ) Σ f cos mθ, S_m = (2/n_θ) Σ f sin mθ. Where a stack would
interpolate twice (map → stack → ring), this interpolates once (map → ring).
"""

from __future__ import annotations

import numpy as np

from .._errors import ArgumentError
from ._arguments import INTERPOLATION_CODES, PROJECTION_CODES, Interpolation, Projection, sampling_args
from ._views import Array, Arrays
from .profiles import int_at_least, ring_radii, ring_samples

__all__ = ["object_multipoles", "object_ring_sums"]

_OP = "object_multipoles"


def object_multipoles(
    maps: object,
    positions: object,
    angles: object,
    *,
    radii: object,
    m_max: int = 4,
    n_theta: int | None = None,
    flip_x: object = None,
    flip_y: object = None,
    mask: object = None,
    step: float = 1.0,
    projection: Projection = "flat",
    geometry: object = None,
    interpolation: Interpolation = "bilinear",
    check: bool = False,
) -> tuple[Array, Array]:
    """Per-object ring multipoles C_m(r), S_m(r) straight from the map.

    Args:
        maps, positions, angles, flip_x, flip_y, mask, step, projection, geometry,
            interpolation: as for :func:`~feedbackkit.stacking.oriented_stack`.
        radii: [n_r] ring radii in stack pixels (units of `step`), finite and >= 0.
        m_max: highest multipole order (>= 0).
        n_theta: samples per ring (default 20·n_r, at least 2·m_max + 1).
        check: CUDA tensors only: validate the per-object values first (host syncs); without it
            an invalid object's rings are NaN. Host inputs are always validated.

    Array inputs and results follow :func:`~feedbackkit.stacking.oriented_stack` (NumPy, or torch
    tensors on the inputs' device); `radii` are host values (a CUDA tensor is copied back).

    Returns:
        (C, S), float64 [N, B, m_max + 1, n_r] each. A ring with any masked or off-map sample
        is NaN (its harmonics would be biased), S[..., 0, :] is 0 otherwise.
    """
    m_max = int_at_least(_OP, "m_max", m_max, 0)
    if radii is None:
        raise ArgumentError(f"{_OP}: 'radii' is required (ring radii in stack pixels)")
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
    )
    r = ring_radii(_OP, radii, default=np.zeros(0), top=None)
    return args.xp.run(
        _OP,
        object_ring_sums,
        args.maps,
        args.positions,
        args.angles,
        args.flips,
        args.mask,
        args.xp.upload(r),
        m_max,
        ring_samples(_OP, n_theta, r.shape[0], m_max),
        args.step,
        args.interpolation,
        args.projection,
        args.geometry,
    )


def object_ring_sums(
    xp: Arrays,
    maps: Array,
    positions: Array,
    angles: Array,
    flips: Array | None,
    mask: Array | None,
    radii: Array,
    m_max: int,
    n_theta: int,
    step: float,
    interpolation: str,
    projection: str,
    geometry: tuple[float, ...] | None,
) -> tuple[Array, Array]:
    """Allocates (C, S) and runs the native kernel on validated, converted inputs; the NumPy path
    and the torch op share it."""
    shape = (positions.shape[0], maps.shape[0], m_max + 1, radii.shape[0])
    c, s = xp.empty(shape, "float64"), xp.empty(shape, "float64")
    interp, code = INTERPOLATION_CODES[interpolation], PROJECTION_CODES[projection]
    xp.launch(
        "object_multipoles",
        [maps, positions, angles, flips, mask, step, interp, code, geometry, radii, n_theta, m_max, c, s],
        workspace=("multipoles_workspace_bytes", n_theta, m_max),
    )
    return c, s
