"""Public API of the `stacking` family: oriented stacking of sky maps (NumPy in, NumPy out).

:func:`oriented_stack` cuts a (2n+1)×(2n+1) grid around every object, rotated by the object's
angle and optionally flipped, and sums it per group in one fused gather (C++ / OpenMP, or CUDA),
without per-object cutouts. This package never imports torch itself. Torch tensors are accepted
when torch is already imported and give torch results on their device: CPU tensors run the CPU
kernels, CUDA tensors the CUDA kernels on the device's current stream (every array input must
then be a tensor on that device; see ``check`` for the validation of per-object values).

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

Accumulation is in float64 with a fixed order (objects in chunks of 256 by index; each output
pixel adds a chunk's objects in index order, then the chunks in order), so results are bitwise
identical for every OpenMP thread count, and on CUDA for every run; CPU and CUDA agree to rounding.

Spherical sampling (``projection="tan"`` or ``"zea"``, with a :class:`MapGeometry` of a CAR or
TAN map): ``positions`` are ``(dec, ra)`` in radians and ``step`` is in radians. Each object's
stack is a gnomonic (TAN) or zenithal equal-area (ZEA) plane centred on the object, whose +x
axis is the map's +x direction there (east if the map's x grows with RA, else west) and +y
likewise (north or south); (u′, v′) are rotated by α in that plane and projected back to the
sphere, then to map pixels through the map's own projection. So for a standard map (RA growing
to the left) the stack looks like the map around the object, and at small offsets the spherical
stack agrees with the flat one.

Profiles (:mod:`.profiles`): :func:`multipoles` (ring multipoles C_m(r), S_m(r) of a stack),
:func:`radial_bins` and :func:`region_covariance` (jackknife-by-region errors);
:func:`object_multipoles` reads each object's rings straight from the map.
:func:`stack_multipoles` (:mod:`.estimate`) chains them: total stack, C_m(r), S_m(r) and
jackknife-by-region errors from the per-group sums of one pass.

Files (:mod:`.io`, :mod:`.catalog`, astropy as the optional extra ``feedbackkit[astro]``):
:func:`read_map` reads a FITS map with a CAR or TAN WCS into (maps, :class:`MapGeometry`);
:func:`read_catalog` reads ra, dec, angle, flip_x, flip_y, weight, region from CSV or a FITS
table; :func:`stack_catalog` stacks a catalog on such a map in chunks (with a progress bar), and
``feedbackkit stack MAP.fits CATALOG`` does it all from the command line.
"""

from __future__ import annotations

from .._errors import ArgumentError
from .catalog import Catalog, read_catalog
from .estimate import MultipoleEstimate, oriented_multipoles, stack_multipoles
from .geometry import MapGeometry
from .io import read_map
from .object_profiles import object_multipoles
from .oriented import OrientedStack, oriented_stack
from .profiles import multipoles, radial_bins, region_covariance
from .sky_stack import CatalogStack, stack_catalog

__all__ = [
    "ArgumentError",
    "Catalog",
    "CatalogStack",
    "MapGeometry",
    "MultipoleEstimate",
    "OrientedStack",
    "multipoles",
    "object_multipoles",
    "oriented_multipoles",
    "oriented_stack",
    "radial_bins",
    "read_catalog",
    "read_map",
    "region_covariance",
    "stack_catalog",
    "stack_multipoles",
]
