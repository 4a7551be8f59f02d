"""Reading sky maps (FITS images with a CAR or TAN WCS) and object catalogs (CSV or FITS tables).

- :func:`read_map` returns the map as a NumPy array, [ny, nx] or [B, ny, nx], and its
  :class:`~feedbackkit.stacking.MapGeometry`, built by :func:`geometry_from_wcs`.
- :func:`read_catalog` returns a :class:`Catalog` (see :mod:`.catalog`).
- :func:`sky_to_pixel` gives the fractional 0-based pixel coordinates (y, x) of sky positions.

Supported WCS: equatorial (RADESYS ICRS or FK5) ``RA---CAR``/``DEC--CAR`` with CRVAL2 = 0 and
``RA---TAN``/``DEC--TAN``, RA on FITS axis 1 (x, columns) and Dec on axis 2 (y, rows), scale and
rotation given either as CDELTi + PCi_j or as CDi_j, in any angular CUNIT; LONPOLE / LATPOLE must
be the projection's defaults (CAR: 0 / 90; TAN: 180), and no distortion (SIP, lookup tables) is
allowed. A 3-D image holds B maps along a third, non-celestial axis (``NAXIS3 = B``, as written
by the common map library for T, Q, U). Anything else is refused with an ArgumentError naming
what was found: a silently wrong projection would give a silently wrong stack. As a last guard,
the geometry must reproduce astropy's own pixel → sky mapping at nine pixels of the map to
1e-6 pixels.

Data are returned in native byte order (FITS stores big-endian): float32 stays float32, other
floating types keep their precision, and integer images (without BSCALE/BZERO, which astropy
applies itself) become float64.

astropy is an optional extra (``pip install 'feedbackkit[astro]'``), imported on first use;
this module imports without it (and never imports torch). CSV catalogs need no astropy.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from .._errors import ArgumentError
from ._readers import astropy_fits, astropy_wcs, existing_file
from .catalog import Catalog, read_catalog
from .geometry import MapGeometry

__all__ = ["Catalog", "geometry_from_wcs", "read_catalog", "read_map", "sky_to_pixel"]

_CTYPES = {("RA---CAR", "DEC--CAR"): "car", ("RA---TAN", "DEC--TAN"): "tan"}
_SUPPORTED = "RA---CAR/DEC--CAR or RA---TAN/DEC--TAN"
_FRAMES = ("ICRS", "FK5")
_DEFAULT_LONPOLE = {"car": 0.0, "tan": 180.0}
_CAR_LATPOLE = 90.0
_TOLERANCE_PX = 1e-6


def _celestial_axes(op: str, wcs: Any) -> str:
    """The projection ("car" / "tan") of a WCS whose axes 1 and 2 are RA and Dec."""
    ctype = [str(c) for c in wcs.wcs.ctype]
    lng, lat = int(wcs.wcs.lng), int(wcs.wcs.lat)
    if lng < 0 or lat < 0:
        raise ArgumentError(f"{op}: the WCS has no celestial axes (CTYPE {ctype}); expected {_SUPPORTED}")
    pair = (ctype[lng], ctype[lat])
    projection = _CTYPES.get(pair)
    if projection is None:
        raise ArgumentError(
            f"{op}: unsupported celestial CTYPE {pair[0]!r}/{pair[1]!r}; expected equatorial {_SUPPORTED}"
        )
    if (lng, lat) != (0, 1):
        raise ArgumentError(
            f"{op}: RA must be FITS axis 1 (x) and Dec axis 2 (y); got RA on axis {lng + 1} "
            f"and Dec on axis {lat + 1}"
        )
    return projection


def _check_projection_parameters(op: str, wcs: Any, projection: str) -> None:
    frame = str(wcs.wcs.radesys).strip()
    if frame not in _FRAMES:
        raise ArgumentError(f"{op}: RADESYS must be one of {list(_FRAMES)}; got {frame!r}")
    if projection == "car" and float(wcs.wcs.crval[1]) != 0.0:
        raise ArgumentError(
            f"{op}: a CAR map needs CRVAL2 = 0; got CRVAL2 = {float(wcs.wcs.crval[1])} "
            "(an oblique plate carrée is not supported)"
        )
    lonpole = float(wcs.wcs.lonpole)
    if lonpole != _DEFAULT_LONPOLE[projection]:
        raise ArgumentError(
            f"{op}: LONPOLE must be {_DEFAULT_LONPOLE[projection]:g} for {projection.upper()}; "
            f"got {lonpole:g}"
            + (" (the FITS default at CRVAL2 = 90; set LONPOLE = 180)" if lonpole == 0 else "")
        )
    if projection == "car" and float(wcs.wcs.latpole) != _CAR_LATPOLE:
        raise ArgumentError(f"{op}: LATPOLE must be 90 for CAR; got {float(wcs.wcs.latpole):g}")


def _scale_matrix(op: str, wcs: Any) -> np.ndarray:
    scale = np.asarray(wcs.pixel_scale_matrix, dtype=np.float64)
    if scale[:2, 2:].any() or scale[2:, :2].any():
        raise ArgumentError(f"{op}: the PC/CD matrix couples RA/Dec with a third axis; it must not")
    return scale[:2, :2]


def _check_against_wcs(op: str, geometry: MapGeometry, wcs: Any) -> None:
    """The geometry must map nine pixels of the map like astropy does (to 1e-6 pixels)."""
    shape = wcs.pixel_shape
    if shape is not None:
        xs = np.array([0.25, 0.5, 0.75]) * (shape[0] - 1)
        ys = np.array([0.25, 0.5, 0.75]) * (shape[1] - 1)
    else:
        xs = geometry.crpix[0] + np.array([-10.0, 0.0, 10.0])
        ys = geometry.crpix[1] + np.array([-10.0, 0.0, 10.0])
    x, y = (a.ravel() for a in np.meshgrid(xs, ys))
    pixels = np.zeros((x.size, wcs.naxis))
    pixels[:, 0], pixels[:, 1] = x, y
    world = wcs.wcs_pix2world(pixels, 0)
    on_sky = np.isfinite(world[:, 0]) & np.isfinite(world[:, 1])
    y2, x2 = geometry.sky_to_pixel(world[on_sky, 0], world[on_sky, 1])
    deviation = float(np.max(np.hypot(x2 - x[on_sky], y2 - y[on_sky]), initial=0.0))
    if not deviation <= _TOLERANCE_PX:
        raise ArgumentError(
            f"{op}: the WCS does not follow the standard {geometry.projection.upper()} projection "
            f"(it deviates by {deviation:.3g} pixels); PVi_m parameters and other non-standard "
            "keywords are not supported"
        )


def geometry_from_wcs(wcs: Any) -> MapGeometry:
    """The :class:`MapGeometry` of an astropy WCS (requirements in the module docstring).

    Args:
        wcs: an ``astropy.wcs.WCS`` with RA, Dec as its first two axes (a third, non-celestial
            axis is allowed).

    Returns:
        MapGeometry with ``crval = (CRVAL1, CRVAL2)`` in degrees, ``crpix = (CRPIX1 − 1,
        CRPIX2 − 1)`` (0-based) and ``cd`` = the WCS pixel scale matrix in degrees per pixel.
    """
    return _geometry("geometry_from_wcs", wcs)


def _geometry(op: str, wcs: Any) -> MapGeometry:
    wcs_module = astropy_wcs(op)
    if not isinstance(wcs, wcs_module.WCS):
        raise ArgumentError(f"{op}: 'wcs' must be an astropy.wcs.WCS; got {type(wcs).__name__}")
    if wcs.has_distortion:
        raise ArgumentError(f"{op}: distortions (SIP, lookup tables) are not supported; the WCS has one")
    try:
        wcs.wcs.set()
    except ValueError as error:
        raise ArgumentError(f"{op}: invalid WCS: {error}") from error
    projection = _celestial_axes(op, wcs)
    _check_projection_parameters(op, wcs, projection)
    cd = _scale_matrix(op, wcs)
    geometry = MapGeometry(
        projection,  # type: ignore[arg-type]
        (float(wcs.wcs.crval[0]), float(wcs.wcs.crval[1])),
        (float(wcs.wcs.crpix[0]) - 1.0, float(wcs.wcs.crpix[1]) - 1.0),
        ((float(cd[0, 0]), float(cd[0, 1])), (float(cd[1, 0]), float(cd[1, 1]))),
    )
    _check_against_wcs(op, geometry, wcs)
    return geometry


def _hdu_list(hdul: Any) -> str:
    return ", ".join(f"{i} {h.name} ({type(h).__name__})" for i, h in enumerate(hdul))


def _image_hdu(op: str, hdul: Any, hdu: int | str | None) -> int:
    if hdu is None:
        for index, item in enumerate(hdul):
            if item.is_image and int(item.header.get("NAXIS", 0)) >= 2:
                return index
        raise ArgumentError(f"{op}: the file has no image HDU with 2 or more axes; HDUs: {_hdu_list(hdul)}")
    if isinstance(hdu, bool) or not isinstance(hdu, (int, str)):
        raise ArgumentError(f"{op}: 'hdu' must be an int index, a str EXTNAME or None; got {hdu!r}")
    try:
        index = int(hdul.index_of(hdu))
        item = hdul[index]
    except (KeyError, IndexError) as error:
        raise ArgumentError(f"{op}: 'hdu' {hdu!r} is not in the file; HDUs: {_hdu_list(hdul)}") from error
    if not item.is_image:
        raise ArgumentError(f"{op}: 'hdu' {hdu!r} is a {type(item).__name__}, not an image")
    return index


def _native_float(op: str, data: Any, hdu: int) -> np.ndarray:
    if data is None:
        raise ArgumentError(f"{op}: HDU {hdu} holds no data")
    a = np.asarray(data)
    if a.ndim not in (2, 3):
        raise ArgumentError(
            f"{op}: HDU {hdu} must hold a 2-D [ny, nx] or 3-D [B, ny, nx] image; got shape {list(a.shape)}"
        )
    if a.dtype.kind in "iu":
        return a.astype(np.float64)
    if a.dtype.kind != "f":
        raise ArgumentError(f"{op}: HDU {hdu} must hold numbers; got dtype {a.dtype}")
    return a.astype(a.dtype.newbyteorder("="), order="C")  # always a copy: `a` may map the file


def read_map(path: str | os.PathLike[str], *, hdu: int | str | None = None) -> tuple[np.ndarray, MapGeometry]:
    """Read a FITS sky map and its geometry.

    Args:
        path: FITS file (gzip-compressed allowed).
        hdu: index or EXTNAME of the image HDU; default the first image HDU with 2 or more axes.

    Returns:
        (maps, geometry): maps [ny, nx] or [B, ny, nx] in native byte order (float32 stays
        float32, integers become float64); geometry from :func:`geometry_from_wcs`.

    Raises:
        FileNotFoundError: nothing at `path`.
        ArgumentError: not a readable FITS image, or a WCS this reader does not support.
        ImportError: astropy is not installed.
    """
    op = "read_map"
    fits = astropy_fits(op)
    wcs_module = astropy_wcs(op)
    file = existing_file(op, path)
    try:
        with file.open("rb") as stream, fits.open(stream) as hdul:
            index = _image_hdu(op, hdul, hdu)
            # A memory map of the file, copied once into native byte order (FITS is big-endian).
            maps = _native_float(op, hdul[index].data, index)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", wcs_module.FITSFixedWarning)
                wcs = wcs_module.WCS(hdul[index].header, fobj=hdul)
    except ArgumentError:
        raise
    except (OSError, ValueError, TypeError) as error:
        raise ArgumentError(f"{op}: cannot read {str(file)!r} as a FITS image: {error}") from error
    return maps, _geometry(f"{op}: {str(file)!r} HDU {index}", wcs)


def sky_to_pixel(geometry: MapGeometry, ra: object, dec: object) -> tuple[np.ndarray, np.ndarray]:
    """Fractional 0-based pixel coordinates (y, x) of sky positions (ra, dec) in degrees.

    The same as ``geometry.sky_to_pixel(ra, dec)``: arrays broadcast; non-finite inputs and TAN
    points on the far hemisphere give NaN; CAR longitudes wrap, so RA 359.9° and 0.1° land 0.2°
    apart on a map that spans RA 0°."""
    if not isinstance(geometry, MapGeometry):
        raise ArgumentError(f"sky_to_pixel: 'geometry' must be a MapGeometry; got {type(geometry).__name__}")
    return geometry.sky_to_pixel(ra, dec)
