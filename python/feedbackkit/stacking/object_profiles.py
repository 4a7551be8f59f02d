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

from .. import _native
from .._errors import ArgumentError
from ._arguments import Interpolation, Projection, sampling_args
from ._views import optional_view, view
from .profiles import int_at_least, ring_radii, ring_samples

__all__ = ["object_multipoles"]

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
) -> tuple[np.ndarray, np.ndarray]:
    """Per-object ring multipoles C_m(r), S_m(r) straight from the map.

    Args:
        maps, positions, angles, flip_x, flip_y, mask, step, projection, geometry,
            interpolation: as for :func:`~feedbackkit.stacking.oriented_stack`.
        radii: [n_r] ring radii in stack pixels (units of `step`), finite and >= 0.
        m_max: highest multipole order (>= 0).
        n_theta: samples per ring (default 20·n_r, at least 2·m_max + 1).

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
    )
    r = ring_radii(_OP, radii, default=np.zeros(0), top=None)
    nt = ring_samples(_OP, n_theta, r.shape[0], m_max)
    shape = (args.positions.shape[0], args.maps.shape[0], m_max + 1, r.shape[0])
    c = np.zeros(shape, dtype=np.float64)
    s = np.zeros(shape, dtype=np.float64)
    if shape[0] == 0:
        return c, s
    keep = (args, r)  # alive until the native call returns
    _native.cpu().object_multipoles(
        view(args.maps),
        view(args.positions),
        view(args.angles),
        optional_view(args.flips),
        optional_view(args.mask),
        args.step,
        args.interpolation,
        args.projection,
        args.geometry,
        view(r),
        nt,
        m_max,
        view(c),
        view(s),
    )
    del keep
    return c, s
