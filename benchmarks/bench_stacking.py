"""Benchmark cases of the `stacking` family: oriented_stack against what stacking users run instead.

The spec's workload: a 3600 × 4800 CAR map of 0.5′ pixels (float32; B = 1 or 3 maps), N objects at
uniform random positions (every rotated cutout inside the map), uniform random angles, random
flips along both axes and random weights; (2n + 1)² cutouts at the map's resolution (step 1 px, or
0.5′ for ``projection="tan"``).

Implementations, timed per object (``Workload.items``; a slow one runs on a subset of the objects,
as many as its sample budget allows, so that a case takes seconds, not hours):

- ``feedbackkit``: ``oriented_stack`` on all N objects (NumPy inputs on the CPU, torch tensors on
  CUDA); flat projection, or ``"tan"`` with the map's MapGeometry and positions (dec, ra).
- ``scipy.map_coordinates`` (CPU, when scipy is installed; the CPU baseline of flat cases): the
  batched gather a NumPy user writes: sample positions computed in NumPy for chunks of objects,
  one ``map_coordinates`` call per chunk and map (order 1 for bilinear; order 3 on the map's
  spline coefficients for bicubic, prefiltered once in setup and not timed), then the weighted
  sum over objects.
- ``loop`` (with scipy): the same gather one object at a time (a plain Python loop over objects).
- ``torch.grid_sample`` (the CUDA baseline): the torch user's gather on the case's device
  (chunks of objects, ``align_corners=True``; torch's bicubic is cubic convolution with a = −0.75,
  ours a = −0.5).
- ``pixell.thumbnails`` (CPU, when pixell is installed; the baseline of tan cases):
  ``pixell.reproject.thumbnails`` at its defaults (4× FFT oversampling, 2′ apodisation, cubic
  spline; CAR thumbnails, or ``proj="tan"`` for tan cases, which reprojects spherically like
  ours) with r = n·0.5′ and res = 0.5′, so that it returns (2n + 1)² thumbnails, and
  ``pol=False`` (the B maps are not I, Q, U). It has no rotation, flips or sum: it does less.

Where: the CPU (2 cores) runs flat N ∈ {10³, 10⁴} with n = 40 and N = 10³ with n = 160, both
interpolations, B ∈ {1, 3}, and tan N = 10⁴, n = 40, B = 1, both interpolations. CUDA runs the
whole flat grid (N ∈ {10³, 10⁴, 10⁵}, n ∈ {40, 160}) against torch.grid_sample, and tan
N = 10⁵, 81 × 81 bilinear. ``--quick`` runs the targets only: CPU N = 10⁴, 81 × 81 bilinear,
B = 1 (feedbackkit ≥ 30× pixell and ≥ 1× scipy per object: the ``speed-up over`` column, or
``speedup_over`` in the JSON); CUDA N = 10⁵, 81 × 81 bilinear, B = 1.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from feedbackkit.bench import Case, Workload
from feedbackkit.stacking import MapGeometry, oriented_stack

MAP_SHAPE = (3600, 4800)
RES_DEG = 0.5 / 60
STEP_RAD = math.radians(RES_DEG)
# A CAR map centred on (ra, dec) = (0, 0), RA growing to the left (x), Dec upward (y).
GEOMETRY = MapGeometry(
    "car", (0.0, 0.0), (MAP_SHAPE[1] / 2, MAP_SHAPE[0] / 2), ((-RES_DEG, 0.0), (0.0, RES_DEG))
)
# The first of these a case has is its baseline.
BASELINES = ("scipy.map_coordinates", "torch.grid_sample", "pixell.thumbnails", "feedbackkit")
# Interpolated values per call (objects × B × P²) of the baselines that run on a subset on the
# CPU, and the most objects pixell runs (about 12 ms each at 81 × 81).
CPU_SAMPLE_BUDGET = {
    "scipy.map_coordinates": 7 * 10**7,
    "torch.grid_sample": 7 * 10**7,
    "loop": 2 * 10**6,
    "pixell.thumbnails": 10**6,
}
PIXELL_MOST_OBJECTS = 30
# Values one map_coordinates / grid_sample call gathers (bounds the coordinate arrays' memory).
CHUNK_SAMPLES = {"cpu": 1 << 19, "cuda": 1 << 26}
SCIPY_ORDER = {"bilinear": 1, "bicubic": 3}


def catalog(n_obj: int, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Positions (y, x) with every rotated cutout inside the map (and pixell's apodised box),
    angles, flips and weights."""
    rng = np.random.default_rng(seed)
    margin = math.ceil(n * math.sqrt(2)) + 8
    ny, nx = MAP_SHAPE
    return {
        "positions": np.stack(
            [rng.uniform(margin, ny - 1 - margin, n_obj), rng.uniform(margin, nx - 1 - margin, n_obj)], 1
        ),
        "angles": rng.uniform(-math.pi, math.pi, n_obj),
        "flip_x": rng.choice([-1.0, 1.0], n_obj),
        "flip_y": rng.choice([-1.0, 1.0], n_obj),
        "weights": rng.uniform(0.5, 1.5, n_obj),
    }


def sample_yx(positions, cos, sin, flip_x, flip_y, offsets):
    """(y, x) [K, P, P] where K objects' cutouts sample the map (the spec's formula); NumPy or torch."""
    u = flip_x[:, None, None] * offsets[None, None, :]
    v = flip_y[:, None, None] * offsets[None, :, None]
    c, s = cos[:, None, None], sin[:, None, None]
    return positions[:, 0, None, None] + u * s + v * c, positions[:, 1, None, None] + u * c - v * s


def scipy_stack(planes: np.ndarray, cat: dict[str, np.ndarray], n: int, order: int, chunk: int) -> np.ndarray:
    """Weighted mean cutout [B, P, P] by map_coordinates, `chunk` objects per call; `planes` are
    the maps (order 1) or their spline coefficients (order 3)."""
    from scipy.ndimage import map_coordinates

    offsets = np.arange(-n, n + 1, dtype=np.float64)
    w = cat["weights"]
    total = np.zeros((planes.shape[0], 2 * n + 1, 2 * n + 1))
    for start in range(0, len(w), chunk):
        k = slice(start, start + chunk)
        angles = cat["angles"][k]
        y, x = sample_yx(
            cat["positions"][k], np.cos(angles), np.sin(angles), cat["flip_x"][k], cat["flip_y"][k], offsets
        )
        for b, plane in enumerate(planes):
            total[b] += np.tensordot(w[k], map_coordinates(plane, [y, x], order=order, prefilter=False), 1)
    return total / w.sum()


def torch_stack(
    maps: torch.Tensor, cat: dict[str, torch.Tensor], n: int, mode: str, chunk: int
) -> torch.Tensor:
    """Weighted mean cutout [B, P, P] by F.grid_sample on maps [1, B, ny, nx], `chunk` objects per call."""
    ny, nx = maps.shape[-2:]
    p = 2 * n + 1
    offsets = torch.arange(-n, n + 1, dtype=torch.float64, device=maps.device)
    w = cat["weights"]
    total = torch.zeros(maps.shape[1], p, p, dtype=torch.float64, device=maps.device)
    for start in range(0, w.shape[0], chunk):
        k = slice(start, start + chunk)
        angles = cat["angles"][k]
        y, x = sample_yx(
            cat["positions"][k], angles.cos(), angles.sin(), cat["flip_x"][k], cat["flip_y"][k], offsets
        )
        grid = torch.stack([x * (2 / (nx - 1)) - 1, y * (2 / (ny - 1)) - 1], dim=-1)
        values = F.grid_sample(maps, grid.to(maps.dtype).reshape(1, -1, p, 2), mode=mode, align_corners=True)
        total += torch.einsum("k,bkij->bij", w[k].to(values.dtype), values.reshape(maps.shape[1], -1, p, p))
    return total / w.sum()


def _subset(n_obj: int, per_object: int, budget: int | None, most: int | None = None) -> int:
    """Objects a call runs on: all N, or as many as `budget` samples allow (at least 4)."""
    k = n_obj if budget is None else max(4, budget // per_object)
    return min(n_obj, k, most or n_obj)


def _first(cat: dict, k: int) -> dict:
    return {key: value[:k] for key, value in cat.items()}


def sky_positions(pixels: np.ndarray) -> np.ndarray:
    """(dec, ra) in radians, ra in [−π, π), of pixel positions (y, x) on GEOMETRY."""
    ra, dec = GEOMETRY.pixel_to_sky(pixels[:, 0], pixels[:, 1])
    return np.deg2rad(np.stack([dec, (ra + 180) % 360 - 180], 1))


def _pixell_impl(maps: np.ndarray, positions: np.ndarray, n: int, proj: str | None):
    """pixell's thumbnails around `positions` (y, x) on an enmap of GEOMETRY, at its defaults
    except for the size and resolution of the thumbnails (and pol, see the module docstring)."""
    from astropy.wcs import WCS
    from pixell import enmap, reproject

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    wcs.wcs.crval = GEOMETRY.crval
    wcs.wcs.crpix = [c + 1 for c in GEOMETRY.crpix]  # FITS pixels are 1-based
    wcs.wcs.cdelt = [GEOMETRY.cd[0][0], GEOMETRY.cd[1][1]]
    imap = enmap.ndmap(maps if maps.shape[0] > 1 else maps[0], wcs)
    coords = sky_positions(positions)
    return lambda: reproject.thumbnails(imap, coords, r=n * STEP_RAD, res=STEP_RAD, proj=proj, pol=False)


def _flat_baselines(
    maps_t: torch.Tensor, cat: dict[str, np.ndarray], n: int, interpolation: str, budget: dict
):
    """The gathers (torch on the maps' device; scipy and the loop on the CPU) and their objects."""
    n_obj, b = len(cat["weights"]), maps_t.shape[1]
    p = 2 * n + 1
    chunk = max(1, CHUNK_SAMPLES[maps_t.device.type] // (p * p))
    k = _subset(n_obj, b * p * p, budget["torch.grid_sample"])
    cat_t = {key: torch.from_numpy(value[:k]).to(maps_t.device) for key, value in cat.items()}
    impls = {"torch.grid_sample": functools.partial(torch_stack, maps_t, cat_t, n, interpolation, chunk)}
    items = {"torch.grid_sample": k}
    if maps_t.device.type == "cpu" and importlib.util.find_spec("scipy") is not None:
        from scipy.ndimage import spline_filter

        order = SCIPY_ORDER[interpolation]
        maps = maps_t[0].numpy()
        planes = maps if order == 1 else np.stack([spline_filter(m, order=order) for m in maps])
        for name, per_call in (("scipy.map_coordinates", chunk), ("loop", 1)):
            items[name] = k = _subset(n_obj, b * p * p, budget[name])
            impls[name] = functools.partial(scipy_stack, planes, _first(cat, k), n, order, per_call)
    return impls, items


def _setup(n_obj: int, n: int, interpolation: str, b: int, projection: str):
    per_object = b * (2 * n + 1) ** 2

    def setup(device: torch.device) -> Workload:
        cuda = device.type == "cuda"
        budget = dict.fromkeys(CPU_SAMPLE_BUDGET) if cuda else CPU_SAMPLE_BUDGET
        cat = catalog(n_obj, n)
        generator = torch.Generator(device=device).manual_seed(b)
        maps_t = torch.randn((1, b, *MAP_SHAPE), generator=generator, device=device)
        inputs = dict(cat)
        spherical = {}
        if projection != "flat":
            inputs["positions"] = sky_positions(cat["positions"])
            spherical = {"projection": projection, "geometry": GEOMETRY, "step": STEP_RAD}
        if cuda:
            inputs = {key: torch.from_numpy(value).to(device) for key, value in inputs.items()}
        impls = {
            "feedbackkit": functools.partial(
                oriented_stack,
                maps_t[0] if cuda else maps_t[0].numpy(),
                **inputs,
                half_width=n,
                interpolation=interpolation,
                **spherical,
            )
        }
        items = {"feedbackkit": n_obj}
        if projection == "flat":
            more_impls, more_items = _flat_baselines(maps_t, cat, n, interpolation, budget)
            impls.update(more_impls)
            items.update(more_items)
        if not cuda and importlib.util.find_spec("pixell") is not None:
            k = _subset(n_obj, per_object, budget["pixell.thumbnails"], PIXELL_MOST_OBJECTS)
            proj = None if projection == "flat" else projection
            impls["pixell.thumbnails"] = _pixell_impl(maps_t[0].numpy(), cat["positions"][:k], n, proj)
            items["pixell.thumbnails"] = k
        return Workload(
            impls=impls,
            baseline=next(name for name in BASELINES if name in impls),
            items=items,
            samples_per_item=per_object,
        )

    return setup


def _grid(device: str, quick: bool) -> list[tuple[int, int, str, int, str]]:
    """(N, n, interpolation, B, projection) points of a device."""
    n_big = 10**4 if device == "cpu" else 10**5
    if quick:
        return [(n_big, 40, "bilinear", 1, "flat")]
    interpolations, maps = ["bilinear", "bicubic"], [1, 3]
    if device == "cpu":
        flat = [
            *itertools.product([10**3, 10**4], [40], interpolations, maps),
            *itertools.product([10**3], [160], interpolations, maps),
        ]
        tan = [(n_big, 40, interpolation, 1) for interpolation in interpolations]
    else:
        flat = list(itertools.product([10**3, 10**4, 10**5], [40, 160], interpolations, maps))
        tan = [(n_big, 40, "bilinear", 1)]
    return [(*point, "flat") for point in flat] + [(*point, "tan") for point in tan]


def cases(quick: bool) -> list[Case]:
    """oriented_stack against scipy's map_coordinates gather, a per-object loop, torch's
    grid_sample and pixell's thumbnails (CPU); against grid_sample on CUDA."""
    return [
        Case(
            family="stacking",
            op="oriented_stack",
            params={"N": n_obj, "n": n, "interpolation": interp, "B": b, "projection": projection},
            setup=_setup(n_obj, n, interp, b, projection),
            devices=(device,),
        )
        for device in ("cpu", "cuda")
        for n_obj, n, interp, b, projection in _grid(device, quick)
    ]
