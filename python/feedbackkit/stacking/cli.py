"""``feedbackkit stack MAP.fits CATALOG``: oriented stack, multipole profiles and region errors.

Reads the map (:func:`~feedbackkit.stacking.io.read_map`) and the catalog
(:func:`~feedbackkit.stacking.io.read_catalog`), stacks every object in chunks
(:func:`~feedbackkit.stacking.sky_stack.stack_catalog`, with a progress bar on a terminal),
computes C_m(r), S_m(r) with jackknife-by-region errors
(:func:`~feedbackkit.stacking.estimate.stack_multipoles`) and writes:

- ``--out FILE.npz``: ``stack`` [B, P, P], ``weight_sum`` [P, P], per region ``regions`` (catalog
  ids) [G], ``count`` [G], ``region_sum`` [G, B, P, P], ``region_weight_sum`` [G, P, P]; profiles
  ``radii`` (stack pixels) and ``radii_arcmin`` [n_r], ``C``, ``S`` [B, m_max + 1, n_r],
  ``region_C``, ``region_S`` [R, B, m_max + 1, n_r] of the R non-empty ``jackknife_regions``,
  and, with at least two non-empty regions, ``C_err``, ``S_err`` and ``covariance`` (of
  ``concatenate([C.ravel(), S.ravel()])``); metadata ``half_width``, ``step_arcmin``,
  ``projection``, ``objects`` (catalog size), ``arguments``, ``geometry`` and ``versions`` (JSON
  strings).
- ``--plot FILE.png`` (optional): the stack of the first map and its profiles.

The stack has 2n + 1 pixels a side with n = round(half-width / resolution), so its half-width
is n × resolution. Bad input (ArgumentError, a missing or unreadable file, astropy or
matplotlib missing) prints one red ``error:`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import platform
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from .._errors import ArgumentError
from .catalog import FIELDS
from .estimate import stack_multipoles
from .io import read_catalog, read_map
from .plot import plot_estimate
from .sky_stack import stack_catalog

__all__ = ["add_stack_parser", "run_stack"]


def add_stack_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``stack`` subcommand to the ``feedbackkit`` parser's subparsers."""
    p = sub.add_parser(
        "stack",
        help="oriented stack of a FITS map around a catalog: C_m(r), S_m(r) with region errors",
        description=(
            "Oriented stack of a FITS map around the objects of a catalog: writes the stack, its "
            "multipoles C_m(r), S_m(r) and their jackknife-by-region errors (.npz), and a PNG."
        ),
        epilog=(
            "Catalog angles are α, from the map's +x axis (columns) toward +y (rows), in degrees "
            "unless --angle-unit rad; on a standard map (RA growing to the left) a position angle "
            "PA east of north is α = 90° + PA."
        ),
    )
    p.add_argument("map", metavar="MAP.fits", help="FITS map with a CAR or TAN WCS (2-D, or 3-D: B maps)")
    p.add_argument(
        "catalog",
        metavar="CATALOG",
        help="CSV or FITS table: ra, dec, angle [, flip_x, flip_y, weight, region]",
    )
    p.add_argument("--out", required=True, metavar="FILE.npz", help="output arrays (.npz)")
    p.add_argument("--plot", metavar="FILE.png", help="also write a PNG of the stack and its profiles")
    p.add_argument(
        "--half-width-arcmin",
        type=float,
        default=20.0,
        metavar="ARCMIN",
        help="stack half-width (default 20)",
    )
    p.add_argument(
        "--res-arcmin", type=float, default=0.5, metavar="ARCMIN", help="stack pixel size (default 0.5)"
    )
    p.add_argument("--m-max", type=int, default=4, metavar="M", help="highest multipole order (default 4)")
    p.add_argument(
        "--bin-width",
        type=int,
        default=1,
        metavar="PIXELS",
        help="radial bin width in stack pixels (default 1)",
    )
    p.add_argument("--projection", choices=("tan", "zea", "flat"), default="tan", help="default tan")
    p.add_argument(
        "--interpolation",
        choices=("nearest", "bilinear", "bicubic"),
        default="bilinear",
        help="default bilinear",
    )
    p.add_argument("--no-flips", action="store_true", help="ignore the catalog's flip_x, flip_y")
    p.add_argument(
        "--angle-unit", choices=("deg", "rad"), default="deg", help="of the angle column (default deg)"
    )
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=NAME",
        help=f"read FIELD ({', '.join(FIELDS)}) from column NAME; repeatable",
    )
    p.add_argument("--hdu", help="map HDU: index or EXTNAME (default: the first image)")
    p.add_argument(
        "--chunk-size", type=int, default=10_000, metavar="N", help="objects per kernel call (default 10000)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    p.set_defaults(handler=run_stack)


def run_stack(args: argparse.Namespace, console: Console) -> int:
    """Run ``feedbackkit stack``; 0 on success, 2 (after one error line) on bad input."""
    try:
        _stack(args, console)
    except (ArgumentError, OSError, ImportError) as error:
        console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True, highlight=False)
        return 2
    return 0


def _positive(option: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ArgumentError(f"stack: {option} must be a finite number > 0; got {value}")
    return value


def _columns(pairs: list[str]) -> dict[str, str] | None:
    columns = {}
    for pair in pairs:
        field, sep, name = pair.partition("=")
        if not sep or not field or not name:
            raise ArgumentError(f"stack: --column must be FIELD=NAME; got {pair!r}")
        columns[field.strip().lower()] = name.strip()
    return columns or None


def _writable(option: str, path: str) -> Path:
    file = Path(path)
    if not file.parent.is_dir():
        raise ArgumentError(f"stack: {option} {path!r}: directory {str(file.parent)!r} does not exist")
    return file


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("feedbackkit", "numpy", "astropy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


@contextlib.contextmanager
def _progress(console: Console, total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    with Progress(console=console, disable=quiet or not console.is_terminal, transient=True) as bar:
        task = bar.add_task("stacking", total=total)
        yield lambda done: bar.advance(task, done)


def _stack(args: argparse.Namespace, console: Console) -> None:
    half_width_arcmin = _positive("--half-width-arcmin", args.half_width_arcmin)
    res_arcmin = _positive("--res-arcmin", args.res_arcmin)
    n = round(half_width_arcmin / res_arcmin)
    if n < 1:
        raise ArgumentError(
            f"stack: --half-width-arcmin ({half_width_arcmin}) must be at least --res-arcmin ({res_arcmin})"
        )
    out = _writable("--out", args.out)
    plot = _writable("--plot", args.plot) if args.plot else None
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("stack: --plot needs matplotlib; install it with: pip install matplotlib")
    hdu = int(args.hdu) if args.hdu is not None and args.hdu.lstrip("-").isdigit() else args.hdu

    maps, geometry = read_map(args.map, hdu=hdu)
    catalog = read_catalog(args.catalog, columns=_columns(args.column), angle_unit=args.angle_unit)
    with _progress(console, len(catalog), args.quiet) as advance:
        stacked = stack_catalog(
            maps,
            geometry,
            catalog,
            half_width=n,
            step_rad=math.radians(res_arcmin / 60.0),
            projection=args.projection,
            interpolation=args.interpolation,
            use_flips=not args.no_flips,
            chunk_size=args.chunk_size,
            progress=advance,
        )
    stacked_objects = int(stacked.result.count.sum())
    if stacked_objects == 0:
        raise ArgumentError(
            f"stack: none of the {len(catalog)} catalog objects has a valid sample on the map; "
            "check the map's coverage and the catalog's ra, dec"
        )
    estimate = stack_multipoles(stacked.result, m_max=args.m_max, bin_width=args.bin_width)

    arrays: dict[str, Any] = {
        "stack": estimate.stack,
        "weight_sum": estimate.weight_sum,
        "regions": stacked.regions,
        "count": stacked.result.count,
        "region_sum": stacked.result.sum,
        "region_weight_sum": stacked.result.weight_sum,
        "radii": estimate.radii,
        "radii_arcmin": estimate.radii * res_arcmin,
        "C": estimate.C,
        "S": estimate.S,
        "jackknife_regions": stacked.regions[estimate.regions],
        "region_C": estimate.region_C,
        "region_S": estimate.region_S,
        "half_width": np.int64(n),
        "step_arcmin": np.float64(res_arcmin),
        "projection": np.str_(args.projection),
        "objects": np.int64(len(catalog)),
        "arguments": np.str_(json.dumps({k: v for k, v in vars(args).items() if k != "handler"})),
        "geometry": np.str_(json.dumps(dataclasses.asdict(geometry))),
        "versions": np.str_(json.dumps(_versions())),
    }
    if estimate.covariance is not None:
        arrays.update(C_err=estimate.C_err, S_err=estimate.S_err, covariance=estimate.covariance)
    with out.open("wb") as stream:
        np.savez(stream, **arrays)
    if plot is not None:
        plot_estimate(
            plot, estimate, step_arcmin=res_arcmin, title=f"{Path(args.map).name}: {len(catalog)} objects"
        )
    if not args.quiet:
        console.print(
            f"stacked {stacked_objects} of {len(catalog)} objects in {stacked.regions.size} region(s) "
            f"({2 * n + 1}² pixels of {res_arcmin:g}′, projection {args.projection}) → {out}"
            + (f", {plot}" if plot is not None else ""),
            soft_wrap=True,
            highlight=False,
        )
        if estimate.covariance is None:
            console.print("[yellow]note:[/] no region errors: fewer than two regions hold stacked objects")
