"""Helpers shared by the map and catalog readers: the path check, and astropy imported on first
use (an optional extra, ``pip install 'feedbackkit[astro]'``, needed only for FITS files)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from .._errors import ArgumentError

__all__ = ["astropy_fits", "astropy_wcs", "existing_file", "is_fits"]

_FITS_MAGIC = b"SIMPLE  ="
_GZIP_MAGIC = b"\x1f\x8b"


def _module(op: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"{op}: reading FITS files needs astropy, which is not installed; "
            "install it with: pip install 'feedbackkit[astro]'"
        ) from error


def astropy_fits(op: str) -> ModuleType:
    """``astropy.io.fits``, or an ImportError naming `op` and the extra to install."""
    return _module(op, "astropy.io.fits")


def astropy_wcs(op: str) -> ModuleType:
    """``astropy.wcs``, or an ImportError naming `op` and the extra to install."""
    return _module(op, "astropy.wcs")


def existing_file(op: str, path: str | os.PathLike[str]) -> Path:
    """`path` as a Path; FileNotFoundError if nothing is there, ArgumentError if it is not a file."""
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentError(f"{op}: 'path' must be a str or os.PathLike; got {type(path).__name__}")
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{op}: 'path' {str(file)!r} does not exist")
    if not file.is_file():
        raise ArgumentError(f"{op}: 'path' {str(file)!r} is not a regular file")
    return file


def is_fits(op: str, file: Path) -> bool:
    """Whether `file` holds FITS (by its first bytes; gzip-compressed FITS by its name)."""
    try:
        with file.open("rb") as stream:
            head = stream.read(len(_FITS_MAGIC))
    except OSError as error:
        raise ArgumentError(f"{op}: cannot read {str(file)!r}: {error}") from error
    if head.startswith(_GZIP_MAGIC):
        return ".fit" in file.name.lower()
    return head == _FITS_MAGIC
