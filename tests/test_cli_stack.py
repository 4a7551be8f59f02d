"""``feedbackkit stack``: FITS map + CSV catalog → .npz and .png, end to end."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from feedbackkit.cli import main
from feedbackkit.stacking import MapGeometry, multipoles, oriented_stack
from feedbackkit.stacking.catalog import Catalog

# A CAR map of 6′ pixels around (RA, Dec) = (0, 0): x grows westward, RA 0 at column 79.5.
SHAPE, CDELT, CRPIX = (100, 160), 0.1, (80.5, 50.5)
HEADER = {
    "CTYPE1": "RA---CAR",
    "CTYPE2": "DEC--CAR",
    "CRVAL1": 0.0,
    "CRVAL2": 0.0,
    "CRPIX1": CRPIX[0],
    "CRPIX2": CRPIX[1],
    "CDELT1": -CDELT,
    "CDELT2": CDELT,
}
HALF_WIDTH_ARCMIN, RES_ARCMIN = 60.0, 10.0  # n = 6, 13 × 13 stack
N_OBJ = 24


@pytest.fixture
def inputs(tmp_path):
    """(map path, catalog path, map array, catalog columns as a dict)."""
    pytest.importorskip("astropy")
    from astropy.io import fits

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    data = (np.cos(xx / 6.0) * np.sin(yy / 4.0) + 0.05 * rng.normal(size=SHAPE)).astype(np.float32)
    header = fits.Header()
    for key, value in HEADER.items():
        header[key] = value
    fits.PrimaryHDU(data, header=header).writeto(tmp_path / "map.fits")
    catalog = {
        "ra": np.mod(rng.uniform(-5.0, 5.0, N_OBJ), 360.0),  # across RA 0
        "dec": rng.uniform(-2.5, 2.5, N_OBJ),
        "angle": rng.uniform(-180.0, 180.0, N_OBJ),
        "flip_x": rng.choice([-1, 1], N_OBJ),
        "weight": rng.uniform(0.5, 1.5, N_OBJ),
        "region": np.array([3, 10, 42])[np.arange(N_OBJ) % 3],
    }
    lines = ["RA,Dec,Angle,flip_x,weight,region"]
    lines += [",".join(repr(float(catalog[k][i])) for k in catalog) for i in range(N_OBJ)]
    (tmp_path / "cat.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "map.fits", tmp_path / "cat.csv", data, catalog


def run(map_path, catalog_path, out, *extra: str) -> int:
    argv = ["stack", str(map_path), str(catalog_path), "--out", str(out), "--quiet"]
    argv += ["--half-width-arcmin", str(HALF_WIDTH_ARCMIN), "--res-arcmin", str(RES_ARCMIN), *extra]
    return main(argv)


def direct_stack(data, catalog, projection: str):
    """The same stack from a direct oriented_stack call, positions computed independently."""
    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.Header()
    for key, value in HEADER.items():
        header[key] = value
    common = {
        "flip_x": catalog["flip_x"],
        "weights": catalog["weight"],
        "groups": np.searchsorted([3, 10, 42], catalog["region"]),
        "half_width": 6,
        "projection": projection,
    }
    angles = np.deg2rad(catalog["angle"])
    if projection == "flat":
        x, y = WCS(header).world_to_pixel_values(catalog["ra"], catalog["dec"])
        step = RES_ARCMIN / (CDELT * 60)
        return oriented_stack(data, np.stack([y, x], 1), angles, step=step, **common)
    geometry = MapGeometry("car", (0.0, 0.0), (CRPIX[0] - 1, CRPIX[1] - 1), ((-CDELT, 0.0), (0.0, CDELT)))
    positions = np.deg2rad(np.stack([catalog["dec"], catalog["ra"]], 1))
    step = math.radians(RES_ARCMIN / 60)
    return oriented_stack(data, positions, angles, step=step, geometry=geometry, **common)


@pytest.mark.parametrize("projection", ["flat", "tan"])
def test_stack_end_to_end_matches_a_direct_call(inputs, tmp_path, projection):
    map_path, catalog_path, data, catalog = inputs
    out, png = tmp_path / "stack.npz", tmp_path / "stack.png"
    assert (
        run(map_path, catalog_path, out, "--projection", projection, "--plot", str(png), "--m-max", "3") == 0
    )

    ref = direct_stack(data, catalog, projection)
    with np.load(out) as npz:
        got = {k: npz[k] for k in npz.files}
    assert got["regions"].tolist() == [3, 10, 42] and got["count"].tolist() == [8, 8, 8]
    np.testing.assert_allclose(got["region_sum"], ref.sum, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["region_weight_sum"], ref.weight_sum, rtol=1e-12)
    total = ref.total().stack()[0]
    np.testing.assert_allclose(got["stack"], total, rtol=1e-12, atol=1e-12)
    c, s = multipoles(total, m_max=3)
    np.testing.assert_allclose(got["C"], c, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["S"], s, rtol=1e-10, atol=1e-12)
    # Region errors: the jackknife over the three regions' own stacks (equal counts).
    profiles = [np.concatenate([a.ravel() for a in multipoles(st, m_max=3)]) for st in ref.stack()]
    loo = np.stack([np.delete(profiles, g, axis=0).mean(axis=0) for g in range(3)])
    d = loo - loo.mean(axis=0)
    errors = np.sqrt(np.diag(2 / 3 * d.T @ d))
    np.testing.assert_allclose(got["C_err"].ravel(), errors[: c.size], rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(got["S_err"].ravel(), errors[c.size :], rtol=1e-8, atol=1e-14)
    np.testing.assert_array_equal(got["radii"], np.arange(7.0))
    np.testing.assert_allclose(got["radii_arcmin"], np.arange(7.0) * RES_ARCMIN)
    assert int(got["half_width"]) == 6 and float(got["step_arcmin"]) == RES_ARCMIN
    assert str(got["projection"]) == projection and int(got["objects"]) == N_OBJ
    arguments = json.loads(str(got["arguments"]))
    assert arguments["half_width_arcmin"] == HALF_WIDTH_ARCMIN and arguments["projection"] == projection
    assert json.loads(str(got["geometry"]))["projection"] == "car"
    assert {"feedbackkit", "numpy", "astropy", "python"} <= set(json.loads(str(got["versions"])))

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    image = imread(png)
    assert image.ndim == 3 and image.shape[1] > 2 * image.shape[0]  # image + three profile panels


def test_chunks_flips_and_columns(inputs, tmp_path):
    map_path, catalog_path, data, catalog = inputs
    assert run(map_path, catalog_path, tmp_path / "one.npz", "--projection", "flat") == 0
    assert (
        run(map_path, catalog_path, tmp_path / "chunked.npz", "--projection", "flat", "--chunk-size", "5")
        == 0
    )
    with np.load(tmp_path / "one.npz") as one, np.load(tmp_path / "chunked.npz") as chunked:
        np.testing.assert_allclose(chunked["region_sum"], one["region_sum"], rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(chunked["count"], one["count"])
        flipped = one["region_sum"]
    assert run(map_path, catalog_path, tmp_path / "noflip.npz", "--projection", "flat", "--no-flips") == 0
    catalog = {**catalog, "flip_x": np.ones(N_OBJ)}
    with np.load(tmp_path / "noflip.npz") as noflip:
        np.testing.assert_allclose(
            noflip["region_sum"], direct_stack(data, catalog, "flat").sum, rtol=1e-12, atol=1e-12
        )
        assert not np.allclose(noflip["region_sum"], flipped)
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(catalog_path.read_text().replace("Angle", "PA", 1))
    assert (
        run(map_path, renamed, tmp_path / "renamed.npz", "--projection", "flat", "--column", "angle=pa") == 0
    )
    with np.load(tmp_path / "renamed.npz") as npz:
        np.testing.assert_array_equal(npz["region_sum"], flipped)


def test_missing_column_exits_2_with_one_red_line(inputs, tmp_path, capsys):
    map_path = inputs[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("ra,dec,weight\n1,2,1\n")
    assert run(map_path, bad, tmp_path / "s.npz") == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("error: read_catalog: ")
    assert "lacks the required column(s) ['angle']; columns found: ['ra', 'dec', 'weight']" in out
    assert "Traceback" not in out and not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"map": "missing.fits"}, "read_map: 'path' '{tmp}/missing.fits' does not exist"),
        ({"out": "no/dir/s.npz"}, "--out '{tmp}/no/dir/s.npz': directory '{tmp}/no/dir' does not exist"),
        ({"extra": ["--res-arcmin", "0"]}, "--res-arcmin must be a finite number > 0; got 0.0"),
        (
            {"extra": ["--half-width-arcmin", "1"]},
            "--half-width-arcmin (1.0) must be at least --res-arcmin (10.0)",
        ),
        ({"extra": ["--column", "angle"]}, "--column must be FIELD=NAME; got 'angle'"),
        ({"extra": ["--chunk-size", "0"]}, "stack_catalog: 'chunk_size' must be an integer >= 1; got 0"),
        ({"extra": ["--hdu", "3"]}, "read_map: 'hdu' 3 is not in the file"),
    ],
)
def test_bad_input_exits_2(inputs, tmp_path, capsys, change, message):
    map_path, catalog_path, _, _ = inputs
    map_arg = tmp_path / change["map"] if "map" in change else map_path
    out = tmp_path / change.get("out", "s.npz")
    assert run(map_arg, catalog_path, out, *change.get("extra", [])) == 2
    printed = capsys.readouterr().out
    assert printed.startswith("error: ") and printed.count("\n") == 1
    assert message.format(tmp=tmp_path) in printed


def test_without_astropy_exits_2_naming_the_extra(inputs, tmp_path, capsys, monkeypatch):
    map_path, catalog_path, _, _ = inputs
    for name in ("astropy", "astropy.io", "astropy.io.fits", "astropy.wcs"):
        monkeypatch.setitem(sys.modules, name, None)
    assert run(map_path, catalog_path, tmp_path / "s.npz") == 2
    assert "pip install 'feedbackkit[astro]'" in capsys.readouterr().out


def test_objects_off_the_map_and_a_single_region(inputs, tmp_path, capsys):
    map_path = inputs[0]
    far = tmp_path / "far.csv"
    far.write_text("ra,dec,angle\n180,0,0\n170,10,0\n")
    assert run(map_path, far, tmp_path / "far.npz") == 2
    assert "none of the 2 catalog objects has a valid sample on the map" in capsys.readouterr().out
    near = tmp_path / "near.csv"
    near.write_text("ra,dec,angle\n0,0,0\n1,1,30\n")
    assert main(["stack", str(map_path), str(near), "--out", str(tmp_path / "near.npz")]) == 0
    assert "no region errors: fewer than two regions" in capsys.readouterr().out
    with np.load(tmp_path / "near.npz") as npz:
        assert npz["count"].tolist() == [2] and "C_err" not in npz.files and "covariance" not in npz.files


def test_stack_catalog_wraps_ra_and_masks_non_finite_pixels(inputs):
    from feedbackkit.stacking.io import read_map
    from feedbackkit.stacking.sky_stack import stack_catalog

    map_path, _, _, _ = inputs
    maps, geometry = read_map(map_path)

    def stack(ra, *, data=maps, projection="tan"):
        ra = np.asarray(ra, dtype=np.float64)
        n = ra.size
        catalog = Catalog(
            ra, np.full(n, 0.5), np.full(n, 0.3), np.ones(n), np.ones(n), np.ones(n), np.zeros(n, np.int64)
        )
        return stack_catalog(
            data, geometry, catalog, half_width=5, step_rad=math.radians(0.1), projection=projection
        )

    for projection in ("tan", "flat"):
        west, east = stack([359.9, 0.1], projection=projection), stack([-0.1, 360.1], projection=projection)
        np.testing.assert_allclose(west.result.sum, east.result.sum, rtol=0, atol=1e-12)
        assert west.result.count.tolist() == [2] and (west.result.weight_sum == 2).all()
    holed = maps.copy()
    holed[50, 79] = np.nan  # inside the stack of the object at RA 0.1, Dec 0.5 (pixel y 54.5, x 78.5)
    masked = stack([0.1], data=holed).result
    assert np.isfinite(masked.sum).all() and masked.weight_sum.min() == 0 and masked.count.tolist() == [1]


def test_plot_without_matplotlib_exits_2_before_stacking(inputs, tmp_path, capsys, monkeypatch):
    map_path, catalog_path, _, _ = inputs
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert run(map_path, catalog_path, tmp_path / "s.npz", "--plot", str(tmp_path / "s.png")) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().out and not (tmp_path / "s.npz").exists()
