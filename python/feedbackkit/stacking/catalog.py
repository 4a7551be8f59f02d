"""Object catalogs for oriented stacking: CSV files or FITS binary tables.

Columns (names case-insensitive; :func:`read_catalog`'s ``columns`` renames them):

==========  ========  ===================================================================
column      required  meaning
==========  ========  ===================================================================
ra, dec     yes       sky position in degrees (dec in [−90, 90]; ra taken as given, any
                      finite value, so 359.9 and −0.1 are the same place)
angle       yes       orientation α of the object, **degrees** by default (``angle_unit``),
                      in the convention of :func:`~feedbackkit.stacking.oriented_stack`:
                      measured from the map's +x axis (columns) toward its +y axis (rows) at
                      the object. For a standard map (RA growing to the left, Dec upward),
                      a position angle PA (east of north) is α = 90° + PA.
flip_x      no        +1 or −1 (default +1): mirror the stack's x offsets (u′ = flip_x·u)
flip_y      no        +1 or −1 (default +1): mirror the stack's y offsets (v′ = flip_y·v)
weight      no        finite weight ≥ 0 (default 1)
region      no        integer id ≥ 0 of the jackknife region (default 0)
==========  ========  ===================================================================

``angle`` is required rather than defaulting to 0: an oriented stack whose angle column was
misspelt would silently be an unoriented one. Give a column of zeros for an unoriented stack.

CSV: UTF-8 text, comma-separated, one header row naming the columns, then one row per object;
blank lines and lines starting with ``#`` are skipped. FITS: the first table HDU (or ``hdu``),
scalar columns only; needs astropy (``pip install 'feedbackkit[astro]'``). The format is told
from the file's first bytes, not its name.

Every problem is an ArgumentError naming the file, the column and what was wrong (missing
columns are listed with the columns found); a missing file is a FileNotFoundError.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._errors import ArgumentError
from ._readers import astropy_fits, existing_file, is_fits

__all__ = ["FIELDS", "Catalog", "read_catalog"]

_OP = "read_catalog"
_REQUIRED = ("ra", "dec", "angle")
_DEFAULTS = {"flip_x": 1.0, "flip_y": 1.0, "weight": 1.0, "region": 0.0}
FIELDS = (*_REQUIRED, *_DEFAULTS)  #: every column a catalog may have
_SHOWN = 5  # offending rows quoted in a message


def _not_a_flip(a: np.ndarray) -> np.ndarray:
    return ~np.isin(a, (-1.0, 1.0))


# Value rules beyond finiteness: field -> (which rows break it, what was expected).
_RULES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "dec": (lambda a: np.abs(a) > 90, "must be in [-90, 90] degrees"),
    "flip_x": (_not_a_flip, "must be +1 or -1"),
    "flip_y": (_not_a_flip, "must be +1 or -1"),
    "weight": (lambda a: a < 0, "must be >= 0"),
    "region": (lambda a: (a < 0) | (a != np.round(a)), "must be an integer >= 0"),
}

AngleUnit = Literal["deg", "rad"]


@dataclass(frozen=True, eq=False)
class Catalog:
    """N objects: NumPy arrays of length N (see the module docstring for the conventions)."""

    ra: np.ndarray  #: float64, degrees
    dec: np.ndarray  #: float64, degrees
    angle: np.ndarray  #: float64, radians (α from the map's +x toward +y)
    flip_x: np.ndarray  #: float64, ±1
    flip_y: np.ndarray  #: float64, ±1
    weight: np.ndarray  #: float64, ≥ 0
    region: np.ndarray  #: int64, ≥ 0

    def __len__(self) -> int:
        return int(self.ra.shape[0])

    def __post_init__(self) -> None:
        n = len(self)
        for f in fields(self):
            a = getattr(self, f.name)
            if not isinstance(a, np.ndarray) or a.shape != (n,):
                raise ArgumentError(f"Catalog: '{f.name}' must be a 1-D NumPy array of length N = {n}")


def _rows(values: np.ndarray) -> str:
    rows = np.flatnonzero(values)[:_SHOWN] + 1
    more = " …" if np.count_nonzero(values) > _SHOWN else ""
    return f"row(s) {', '.join(map(str, rows))}{more}"


def _read_csv(file: Path) -> dict[str, np.ndarray]:
    try:
        with file.open(newline="", encoding="utf-8-sig") as stream:
            lines = [line for line in stream if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as error:
        raise ArgumentError(f"{_OP}: cannot read {str(file)!r} as UTF-8 CSV text: {error}") from error
    if not lines:
        raise ArgumentError(f"{_OP}: {str(file)!r} is empty; expected a header row naming the columns")
    reader = csv.reader(lines, skipinitialspace=True)
    header = [name.strip().lower() for name in next(reader)]
    if all(_is_number(name) for name in header):
        raise ArgumentError(
            f"{_OP}: {str(file)!r} starts with data; a header row naming the columns is required"
        )
    rows = list(reader)
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ArgumentError(
                f"{_OP}: {str(file)!r} row {number} has {len(row)} fields; the header has {len(header)}"
            )
    return _named_columns(file, header, [[row[i] for row in rows] for i in range(len(header))])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_fits(file: Path, hdu: int | str | None) -> dict[str, np.ndarray]:
    fits = astropy_fits(_OP)
    try:
        with file.open("rb") as stream, fits.open(stream, memmap=False) as hdul:
            table = _table_hdu(file, hdul, hdu)
            names = [str(name) for name in table.columns.names]
            data = [np.array(table.data[name]) for name in names] if table.data is not None else []
    except ArgumentError:
        raise
    except (OSError, ValueError, TypeError) as error:
        raise ArgumentError(f"{_OP}: cannot read {str(file)!r} as a FITS table: {error}") from error
    if not data:
        data = [np.zeros(0) for _ in names]
    for name, column in zip(names, data, strict=True):
        if column.ndim != 1:
            raise ArgumentError(
                f"{_OP}: {str(file)!r} column {name!r} holds arrays (shape {list(column.shape[1:])} "
                "per row); only scalar columns are supported"
            )
    return _named_columns(file, [name.lower() for name in names], data)


def _table_hdu(file: Path, hdul: Any, hdu: int | str | None) -> Any:
    if hdu is None:
        tables = [item for item in hdul if not item.is_image]
        if not tables:
            raise ArgumentError(f"{_OP}: {str(file)!r} has no table HDU")
        return tables[0]
    try:
        item = hdul[hdul.index_of(hdu)]
    except (KeyError, IndexError) as error:
        raise ArgumentError(f"{_OP}: 'hdu' {hdu!r} is not in {str(file)!r}") from error
    if item.is_image:
        raise ArgumentError(f"{_OP}: 'hdu' {hdu!r} of {str(file)!r} is an image, not a table")
    return item


def _named_columns(file: Path, names: list[str], columns: list[Any]) -> dict[str, Any]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ArgumentError(
                f"{_OP}: {str(file)!r} has two columns named {name!r} (names are case-insensitive)"
            )
        seen.add(name)
    return dict(zip(names, columns, strict=True))


def _where(file: Path, field: str, name: str) -> str:
    alias = "" if name == field else f" (the '{field}' field)"
    return f"{_OP}: {str(file)!r} column {name!r}{alias}"


def _numbers(file: Path, field: str, name: str, values: Any) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)  # numbers, or text that parses as numbers
    except (TypeError, ValueError):
        items = np.asarray(values).tolist()
    bad = next(((i, v) for i, v in enumerate(items, start=1) if not _is_number(str(v))), None)
    detail = f"; row {bad[0]} has {bad[1]!r}" if bad is not None else ""
    raise ArgumentError(f"{_where(file, field, name)} must hold numbers{detail}")


def _checked(file: Path, field: str, name: str, a: np.ndarray) -> np.ndarray:
    where = _where(file, field, name)
    bad = ~np.isfinite(a)
    if bad.any():
        raise ArgumentError(f"{where} must be finite; NaN or inf at {_rows(bad)}")
    if field in _RULES:
        rule, expected = _RULES[field]
        bad = rule(a)
        if bad.any():
            shown = ", ".join(f"{v:g}" for v in a[bad][:_SHOWN])
            raise ArgumentError(f"{where} {expected}; got {shown} at {_rows(bad)}")
    return a


def _column_names(columns: Mapping[str, str] | None) -> dict[str, str]:
    if columns is None:
        return {f: f for f in FIELDS}
    if not isinstance(columns, Mapping):
        raise ArgumentError(f"{_OP}: 'columns' must be a mapping of field -> column name; got {columns!r}")
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise ArgumentError(f"{_OP}: 'columns' has unknown field(s) {unknown}; fields are {list(FIELDS)}")
    if not all(isinstance(v, str) and v for v in columns.values()):
        raise ArgumentError(f"{_OP}: 'columns' values must be non-empty column names; got {dict(columns)}")
    return {f: columns.get(f, f).lower() for f in FIELDS}


def read_catalog(
    path: str | os.PathLike[str],
    *,
    columns: Mapping[str, str] | None = None,
    angle_unit: AngleUnit = "deg",
    hdu: int | str | None = None,
) -> Catalog:
    """Read a catalog of objects to stack from a CSV file or a FITS table.

    Args:
        path: CSV file or FITS file (told apart by content).
        columns: field -> column name in the file, for columns not named like the fields, e.g.
            ``{"angle": "pa_stack", "region": "jk"}`` (case-insensitive).
        angle_unit: unit of the angle column, "deg" (default) or "rad".
        hdu: FITS only: index or EXTNAME of the table HDU (default: the first table).

    Returns:
        :class:`Catalog`; ``angle`` in radians, missing optional columns at their defaults
        (flip_x = flip_y = +1, weight = 1, region = 0).

    Raises:
        FileNotFoundError: nothing at `path`.
        ArgumentError: unreadable or empty file, missing columns, or bad values (module docstring).
        ImportError: a FITS catalog and no astropy.
    """
    if angle_unit not in ("deg", "rad"):
        raise ArgumentError(f"{_OP}: 'angle_unit' must be 'deg' or 'rad'; got {angle_unit!r}")
    names = _column_names(columns)
    file = existing_file(_OP, path)
    table = _read_fits(file, hdu) if is_fits(_OP, file) else _read_csv(file)
    missing = [names[f] for f in _REQUIRED if names[f] not in table]
    if missing:
        raise ArgumentError(
            f"{_OP}: {str(file)!r} lacks the required column(s) {missing}; columns found: {list(table)}"
        )
    n = len(table[names["ra"]])
    if n == 0:
        raise ArgumentError(f"{_OP}: {str(file)!r} has a header but no objects")
    values: dict[str, np.ndarray] = {}
    for field in FIELDS:
        name = names[field]
        if name in table:
            values[field] = _checked(file, field, name, _numbers(file, field, name, table[name]))
        else:
            values[field] = np.full(n, _DEFAULTS[field])
    angle = values["angle"]
    return Catalog(
        ra=values["ra"],
        dec=values["dec"],
        angle=np.deg2rad(angle) if angle_unit == "deg" else angle,
        flip_x=values["flip_x"],
        flip_y=values["flip_y"],
        weight=values["weight"],
        region=values["region"].astype(np.int64),
    )
