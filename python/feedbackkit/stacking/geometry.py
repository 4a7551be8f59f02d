"""How a map's pixels lie on the sky: a CAR (plate carrée) or TAN (gnomonic) projection.

:class:`MapGeometry` holds the FITS-WCS quantities that matter for these two projections, with
0-based pixel indices (FITS CRPIX is 1-based: ``crpix = CRPIX − 1``):

- ``crval = (ra0, dec0)`` in degrees: the sky position of the reference pixel;
- ``crpix = (x, y)``: the 0-based pixel coordinates of that reference point;
- ``cd``: the 2 × 2 matrix in degrees per pixel mapping pixel offsets to intermediate world
  coordinates, ``(ξ, η) = cd @ (x − crpix_x, y − crpix_y)`` (FITS ``CD`` = ``CDELT·PC``).

Intermediate coordinates (ξ, η), in degrees:

- CAR: ``ξ = ra − ra0`` wrapped into [−180°, 180°), ``η = dec``. Only ``dec0 = 0`` is
  supported (a CAR map with CRVAL2 ≠ 0 is an oblique projection).
- TAN: the gnomonic projection about (ra0, dec0): with ``cos c = sin δ₀ sin δ + cos δ₀ cos δ
  cos Δα``, ``ξ = cos δ sin Δα / cos c`` and ``η = (cos δ₀ sin δ − sin δ₀ cos δ cos Δα) / cos c``
  (radians converted to degrees); points with ``cos c ≤ 0`` (the far hemisphere) have no pixel
  (NaN).

The same formulas run in the native kernels (``csrc/stacking/stacking.h``) for spherical
stacking. Torch-free; NumPy in, NumPy out; whole arrays at once, never a per-object loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._errors import ArgumentError

__all__ = ["MapGeometry", "SkyProjection"]

SkyProjection = Literal["car", "tan"]
# Codes must match csrc/stacking/stacking.h::SkyProjection.
_CODES = {"car": 0, "tan": 1}


@dataclass(frozen=True)
class MapGeometry:
    """Pixel ↔ sky mapping of a CAR or TAN map (see the module docstring)."""

    projection: SkyProjection
    crval: tuple[float, float]  #: (ra0, dec0), degrees
    crpix: tuple[float, float]  #: (x, y), 0-based pixels
    cd: tuple[tuple[float, float], tuple[float, float]]  #: degrees per pixel, rows (ξ, η), columns (x, y)

    def __post_init__(self) -> None:
        if self.projection not in _CODES:
            raise ArgumentError(
                f"MapGeometry: 'projection' must be one of {list(_CODES)}; got {self.projection!r}"
            )
        values = (*self.crval, *self.crpix, *self.cd[0], *self.cd[1])
        if len(self.crval) != 2 or len(self.crpix) != 2 or len(self.cd) != 2 or len(values) != 8:
            raise ArgumentError("MapGeometry: 'crval' and 'crpix' must be pairs and 'cd' a 2 × 2 matrix")
        if not all(math.isfinite(float(v)) for v in values):
            raise ArgumentError(f"MapGeometry: every parameter must be finite; got {values}")
        if not -90.0 <= float(self.crval[1]) <= 90.0:
            raise ArgumentError(
                f"MapGeometry: 'crval' dec0 must be in [-90, 90] degrees; got {self.crval[1]}"
            )
        if self.projection == "car" and float(self.crval[1]) != 0.0:
            raise ArgumentError(
                f"MapGeometry: CAR maps need crval dec0 = 0 (CRVAL2 = 0); got {self.crval[1]} "
                "(an oblique plate carrée is not supported)"
            )
        if abs(np.linalg.det(self._cd())) == 0.0:
            raise ArgumentError(f"MapGeometry: 'cd' must be invertible; got {self.cd}")

    def _cd(self) -> np.ndarray:
        return np.asarray(self.cd, dtype=np.float64).reshape(2, 2)

    @property
    def pixel_scale_deg(self) -> float:
        """Square root of the pixel area, in degrees (|det cd|^½)."""
        return float(math.sqrt(abs(np.linalg.det(self._cd()))))

    def native(self) -> np.ndarray:
        """The float64 [9] vector the native kernels read: projection code, ra0, dec0 (radians),
        crpix x, y, and the inverse of ``cd`` in pixels per radian, row-major."""
        inv = np.linalg.inv(np.deg2rad(self._cd()))
        ra0, dec0 = (math.radians(float(v)) for v in self.crval)
        head = [float(_CODES[self.projection]), ra0, dec0, float(self.crpix[0]), float(self.crpix[1])]
        return np.array([*head, *inv.ravel()], dtype=np.float64)

    def sky_to_pixel(self, ra: object, dec: object) -> tuple[np.ndarray, np.ndarray]:
        """Fractional 0-based pixel coordinates (y, x) of sky positions (ra, dec) in degrees.

        Arrays broadcast; non-finite inputs and TAN points on the far hemisphere give NaN."""
        ra_r = np.deg2rad(np.asarray(ra, dtype=np.float64))
        dec_r = np.deg2rad(np.asarray(dec, dtype=np.float64))
        ra0, dec0 = (math.radians(float(v)) for v in self.crval)
        d_ra = ra_r - ra0
        if self.projection == "car":
            xi = np.rad2deg(np.mod(d_ra + math.pi, 2 * math.pi) - math.pi)
            eta = np.rad2deg(dec_r)
        else:
            cos_dec = np.cos(dec_r)
            cos_c = math.sin(dec0) * np.sin(dec_r) + math.cos(dec0) * cos_dec * np.cos(d_ra)
            with np.errstate(divide="ignore", invalid="ignore"):
                front = np.where(cos_c > 0, 1.0 / cos_c, np.nan)
            xi = np.rad2deg(cos_dec * np.sin(d_ra) * front)
            eta = np.rad2deg(
                (math.cos(dec0) * np.sin(dec_r) - math.sin(dec0) * cos_dec * np.cos(d_ra)) * front
            )
        inv = np.linalg.inv(self._cd())
        x = self.crpix[0] + inv[0, 0] * xi + inv[0, 1] * eta
        y = self.crpix[1] + inv[1, 0] * xi + inv[1, 1] * eta
        return y, x

    def pixel_to_sky(self, y: object, x: object) -> tuple[np.ndarray, np.ndarray]:
        """Sky positions (ra, dec) in degrees, ra in [0, 360), of 0-based pixel coordinates (y, x).

        CAR pixels beyond |η| > 90° give NaN."""
        dx = np.asarray(x, dtype=np.float64) - self.crpix[0]
        dy = np.asarray(y, dtype=np.float64) - self.crpix[1]
        cd = self._cd()
        xi = np.deg2rad(cd[0, 0] * dx + cd[0, 1] * dy)
        eta = np.deg2rad(cd[1, 0] * dx + cd[1, 1] * dy)
        ra0, dec0 = (math.radians(float(v)) for v in self.crval)
        if self.projection == "car":
            ra = ra0 + xi
            dec = np.where(np.abs(eta) <= math.pi / 2, eta, np.nan)
        else:
            # Inverse gnomonic: the unit vector (ξ, η, 1)/‖·‖ in the frame (east, north, centre).
            norm = np.sqrt(1.0 + xi * xi + eta * eta)
            dec = np.arcsin((math.sin(dec0) + eta * math.cos(dec0)) / norm)
            ra = ra0 + np.arctan2(xi, math.cos(dec0) - eta * math.sin(dec0))
        return np.rad2deg(np.mod(ra, 2 * math.pi)), np.rad2deg(dec)
