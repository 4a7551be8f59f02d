"""Reading FITS maps (CAR / TAN WCS) and catalogs (CSV / FITS tables) for the `stacking` family."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from feedbackkit.stacking import ArgumentError, MapGeometry
from feedbackkit.stacking.io import Catalog, geometry_from_wcs, read_catalog, read_map, sky_to_pixel

STACKING_DIR = Path(__file__).resolve().parents[1] / "python" / "feedbackkit" / "stacking"


def astropy():
    """(astropy.io.fits, astropy.wcs.WCS), or skip the test."""
    pytest.importorskip("astropy")
    from astropy.io import fits
    from astropy.wcs import WCS

    return fits, WCS


def header(ctype: str, crval, crpix, cdelt, shape, **extra):
    """A FITS header dict of a 2-D celestial image (shape = (ny, nx))."""
    h = {
        "NAXIS": 2,
        "NAXIS1": shape[1],
        "NAXIS2": shape[0],
        "CTYPE1": f"RA---{ctype}",
        "CTYPE2": f"DEC--{ctype}",
        "CRVAL1": crval[0],
        "CRVAL2": crval[1],
        "CRPIX1": crpix[0],
        "CRPIX2": crpix[1],
        "CDELT1": cdelt[0],
        "CDELT2": cdelt[1],
    }
    h.update(extra)
    return h


CAR = header("CAR", (0.0, 0.0), (10.0, 8.0), (-0.1, 0.1), (16, 20))
TAN = header("TAN", (0.0, 30.0), (10.0, 8.0), (-0.1, 0.1), (16, 20))


def write_map(path: Path, data: np.ndarray, hdr: dict) -> Path:
    fits, _ = astropy()
    h = fits.Header()
    for key, value in hdr.items():
        if not key.startswith("NAXIS"):
            h[key] = value
    fits.PrimaryHDU(data, header=h).writeto(path)
    return path


def assert_matches_astropy(geometry: MapGeometry, wcs, ra, dec) -> None:
    """geometry.sky_to_pixel agrees with astropy's world_to_pixel to 1e-9 pixels."""
    x_ref, y_ref = wcs.world_to_pixel_values(ra, dec)
    y, x = sky_to_pixel(geometry, ra, dec)
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-9)


# ---- maps: geometry against astropy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "crval", "cdelt"),
    [
        ("CAR", (30.0, 0.0), (-0.05, 0.05)),
        ("TAN", (150.0, -30.0), (-0.02, 0.02)),
        ("CAR", (0.0, 0.0), (0.1, 0.1)),
    ],
)
def test_fits_round_trip_matches_astropy(tmp_path, ctype, crval, cdelt):
    fits, WCS = astropy()
    shape = (60, 90)
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    hdr = header(ctype, crval, (40.5, 25.0), cdelt, shape)
    maps, geometry = read_map(write_map(tmp_path / "m.fits", data, hdr))
    assert maps.dtype == np.float32 and maps.dtype.isnative  # FITS stores big-endian
    np.testing.assert_array_equal(maps, data)
    assert geometry == MapGeometry(ctype.lower(), crval, (39.5, 24.0), ((cdelt[0], 0.0), (0.0, cdelt[1])))
    wcs = WCS(fits.getheader(tmp_path / "m.fits"))
    rng = np.random.default_rng(1)
    ra, dec = wcs.pixel_to_world_values(rng.uniform(-0.5, 89.5, 200), rng.uniform(-0.5, 59.5, 200))
    assert_matches_astropy(geometry, wcs, ra, dec)


@pytest.mark.parametrize(
    "scale",
    [
        {"CD1_1": -0.0173, "CD1_2": 0.0100, "CD2_1": 0.0100, "CD2_2": 0.0173},
        {"PC1_1": 0.866, "PC1_2": -0.5, "PC2_1": 0.5, "PC2_2": 0.866},
        {"CUNIT1": "arcmin", "CUNIT2": "arcmin", "CDELT1": -1.2, "CDELT2": 1.2, "CRVAL1": 600.0},
    ],
    ids=["CD", "PC", "arcmin"],
)
def test_rotated_and_rescaled_tan_matches_astropy(tmp_path, scale):
    fits, WCS = astropy()
    hdr = header("TAN", (10.0, 45.0), (32.0, 30.5), (-0.02, 0.02), (64, 64), **scale)
    if "CD1_1" in scale:
        del hdr["CDELT1"], hdr["CDELT2"]
    _, geometry = read_map(write_map(tmp_path / "m.fits", np.zeros((64, 64)), hdr))
    wcs = WCS(fits.getheader(tmp_path / "m.fits"))
    np.testing.assert_allclose(np.asarray(geometry.cd), wcs.pixel_scale_matrix, rtol=1e-12)
    rng = np.random.default_rng(2)
    ra, dec = wcs.pixel_to_world_values(rng.uniform(0, 63, 100), rng.uniform(0, 63, 100))
    assert_matches_astropy(geometry, wcs, ra, dec)


def test_high_declination_tan_field(tmp_path):
    fits, WCS = astropy()
    hdr = header("TAN", (200.0, 80.0), (150.5, 150.5), (-0.01, 0.01), (300, 300))
    _, geometry = read_map(write_map(tmp_path / "m.fits", np.zeros((300, 300), np.float32), hdr))
    wcs = WCS(fits.getheader(tmp_path / "m.fits"))
    rng = np.random.default_rng(3)
    ra, dec = wcs.pixel_to_world_values(rng.uniform(0, 299, 300), rng.uniform(0, 299, 300))
    assert np.ptp(ra) > 15  # meridians converge: a 3° field spans > 15° of RA at dec 80
    assert_matches_astropy(geometry, wcs, ra, dec)
    # The pole lies 10° north of the centre, outside the field, at gnomonic η = tan 10° (radians).
    y, x = sky_to_pixel(geometry, 0.0, 90.0)
    np.testing.assert_allclose(
        [y, x], [149.5 + math.degrees(math.tan(math.radians(10))) / 0.01, 149.5], atol=1e-9
    )


@pytest.mark.parametrize("crval1", [0.0, 355.0])
def test_ra_wraps_at_zero_on_a_car_map(tmp_path, crval1):
    """A CAR map spanning RA 350°..10° (x grows westward): RA 359.9 and 0.1 are 4 pixels apart."""
    fits, WCS = astropy()
    x_of_ra0 = 199.5  # 0-based column of RA 0
    crpix1 = x_of_ra0 + 1 + ((crval1 + 180) % 360 - 180) / -0.05  # RA 0 at ξ = −CRVAL1
    hdr = header("CAR", (crval1, 0.0), (crpix1, 20.5), (-0.05, 0.05), (40, 400))
    _, geometry = read_map(write_map(tmp_path / "m.fits", np.zeros((40, 400), np.float32), hdr))
    ra, dec = np.array([359.9, 0.1, -0.1, 350.0, 10.0]), np.zeros(5)
    y, x = sky_to_pixel(geometry, ra, dec)
    np.testing.assert_allclose(x, x_of_ra0 + np.array([2.0, -2.0, 2.0, 200.0, -200.0]), atol=1e-9)
    np.testing.assert_allclose(y, 19.5, atol=1e-12)
    assert_matches_astropy(geometry, WCS(fits.getheader(tmp_path / "m.fits")), ra[:3], dec[:3])


def test_three_d_maps_and_dtypes(tmp_path):
    astropy()
    base = header("CAR", (0.0, 0.0), (10.0, 8.0), (-0.1, 0.1), (16, 20))
    cube = np.arange(3 * 16 * 20, dtype=np.float64).reshape(3, 16, 20)
    # A third WCS axis (frequency), and the common map library's style (WCSAXES = 2, NAXIS = 3).
    for name, extra in [
        ("freq", {"CTYPE3": "FREQ", "CRVAL3": 1.5e11, "CDELT3": 1e9}),
        ("plain", {"WCSAXES": 2}),
    ]:
        maps, geometry = read_map(write_map(tmp_path / f"{name}.fits", cube, {**base, **extra}))
        assert maps.shape == (3, 16, 20) and maps.dtype == np.float64 and maps.dtype.isnative
        np.testing.assert_array_equal(maps, cube)
        assert geometry.crpix == (9.0, 7.0)
    maps, _ = read_map(write_map(tmp_path / "int.fits", np.arange(320, dtype=np.int16).reshape(16, 20), base))
    assert maps.dtype == np.float64 and maps[3, 4] == 64.0


def test_gzipped_map(tmp_path):
    fits, _ = astropy()
    h = fits.Header()
    for key, value in CAR.items():
        if not key.startswith("NAXIS"):
            h[key] = value
    fits.PrimaryHDU(np.full((16, 20), 2.5, np.float32), header=h).writeto(tmp_path / "m.fits.gz")
    maps, geometry = read_map(tmp_path / "m.fits.gz")
    assert maps.shape == (16, 20) and (maps == 2.5).all() and geometry.projection == "car"


def test_hdu_selection(tmp_path):
    fits, _ = astropy()
    h = fits.Header()
    for key, value in header("TAN", (5.0, 5.0), (5.0, 5.0), (-0.1, 0.1), (9, 9)).items():
        if not key.startswith("NAXIS"):
            h[key] = value
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="D", array=np.zeros(2))], name="CAT")
    image = fits.ImageHDU(np.ones((9, 9), np.float32), header=h, name="MAP")
    fits.HDUList([fits.PrimaryHDU(), table, image]).writeto(tmp_path / "multi.fits")
    for hdu in (None, 2, "MAP"):
        maps, geometry = read_map(tmp_path / "multi.fits", hdu=hdu)
        assert maps.shape == (9, 9) and geometry.projection == "tan"
    with pytest.raises(ArgumentError, match="'hdu' 'CAT' is a BinTableHDU, not an image"):
        read_map(tmp_path / "multi.fits", hdu="CAT")
    with pytest.raises(ArgumentError, match=r"'hdu' 7 is not in the file; HDUs: 0 PRIMARY"):
        read_map(tmp_path / "multi.fits", hdu=7)


# ---- maps: refused inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hdr", "match"),
    [
        (
            {**CAR, "CTYPE1": "GLON-CAR", "CTYPE2": "GLAT-CAR"},
            r"'GLON-CAR'/'GLAT-CAR'.*RA---CAR/DEC--CAR or RA---TAN",
        ),
        (
            {**TAN, "CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN"},
            r"unsupported celestial CTYPE 'RA---SIN'/'DEC--SIN'",
        ),
        ({**CAR, "CTYPE1": "DEC--CAR", "CTYPE2": "RA---CAR"}, r"RA must be FITS axis 1 \(x\).*RA on axis 2"),
        ({**CAR, "CRVAL2": 10.0}, r"CAR map needs CRVAL2 = 0; got CRVAL2 = 10"),
        ({**CAR, "LATPOLE": -90.0}, r"LATPOLE must be 90 for CAR; got -90"),
        ({**TAN, "LONPOLE": 0.0}, r"LONPOLE must be 180 for TAN; got 0"),
        ({**TAN, "CRVAL2": 90.0}, r"LONPOLE must be 180 for TAN; got 0 \(the FITS default at CRVAL2 = 90"),
        ({**CAR, "PV1_1": 10.0, "LONPOLE": 0.0}, r"does not follow the standard CAR projection"),
        ({**TAN, "RADESYS": "FK4"}, r"RADESYS must be one of \['ICRS', 'FK5'\]; got 'FK4'"),
        ({k: v for k, v in CAR.items() if k.startswith("NAXIS")}, r"no celestial axes"),
    ],
    ids=["galactic", "sin", "swapped", "car-crval2", "latpole", "lonpole", "tan-pole", "pv", "fk4", "no-wcs"],
)
def test_unsupported_wcs_is_refused_with_a_clear_message(tmp_path, hdr, match):
    path = write_map(tmp_path / "m.fits", np.zeros((16, 20), np.float32), hdr)
    with pytest.raises(ArgumentError, match=match):
        read_map(path)


def test_tan_at_the_pole_with_explicit_lonpole_is_supported(tmp_path):
    fits, WCS = astropy()
    path = write_map(
        tmp_path / "m.fits", np.zeros((16, 20), np.float32), {**TAN, "CRVAL2": 90.0, "LONPOLE": 180.0}
    )
    _, geometry = read_map(path)
    rng = np.random.default_rng(4)
    ra, dec = WCS(fits.getheader(path)).pixel_to_world_values(rng.uniform(0, 19, 50), rng.uniform(0, 15, 50))
    assert_matches_astropy(geometry, WCS(fits.getheader(path)), ra, dec)


def test_sip_distortion_is_refused(tmp_path):
    hdr = {
        **TAN,
        "CTYPE1": "RA---TAN-SIP",
        "CTYPE2": "DEC--TAN-SIP",
        "A_ORDER": 2,
        "B_ORDER": 2,
        "A_2_0": 1e-5,
    }
    path = write_map(tmp_path / "m.fits", np.zeros((16, 20), np.float32), hdr)
    with pytest.raises(ArgumentError, match=r"distortions \(SIP, lookup tables\) are not supported"):
        read_map(path)


def test_bad_map_files(tmp_path):
    astropy()
    with pytest.raises(FileNotFoundError, match=r"read_map: 'path' .*missing.fits' does not exist"):
        read_map(tmp_path / "missing.fits")
    (tmp_path / "text.fits").write_text("not a FITS file\n")
    with pytest.raises(ArgumentError, match=r"read_map: cannot read .*text\.fits' as a FITS image"):
        read_map(tmp_path / "text.fits")
    with pytest.raises(ArgumentError, match="is not a regular file"):
        read_map(tmp_path)
    path = write_map(tmp_path / "line.fits", np.zeros(20, np.float32), {})
    with pytest.raises(ArgumentError, match="no image HDU with 2 or more axes"):
        read_map(path)
    path = write_map(tmp_path / "4d.fits", np.zeros((2, 2, 16, 20), np.float32), CAR)
    with pytest.raises(
        ArgumentError, match=r"2-D \[ny, nx\] or 3-D \[B, ny, nx\] image; got shape \[2, 2, 16, 20\]"
    ):
        read_map(path)


def test_geometry_from_wcs_checks_its_argument():
    astropy()
    with pytest.raises(ArgumentError, match=r"'wcs' must be an astropy\.wcs\.WCS; got dict"):
        geometry_from_wcs({"CTYPE1": "RA---TAN"})
    with pytest.raises(ArgumentError, match="'geometry' must be a MapGeometry"):
        sky_to_pixel("car", 0.0, 0.0)


def test_without_astropy_fits_needs_the_extra_but_csv_does_not(tmp_path, monkeypatch):
    for name in ("astropy", "astropy.io", "astropy.io.fits", "astropy.wcs"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"read_map: .*needs astropy.*pip install 'feedbackkit\[astro\]'"):
        read_map(tmp_path / "m.fits")
    (tmp_path / "c.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 2850)
    with pytest.raises(ImportError, match=r"read_catalog: .*pip install 'feedbackkit\[astro\]'"):
        read_catalog(tmp_path / "c.fits")
    (tmp_path / "c.csv").write_text("ra,dec,angle\n1,2,3\n")
    assert len(read_catalog(tmp_path / "c.csv")) == 1


def test_readers_import_astropy_lazily():
    """No module of the family imports astropy at import time (it is an optional extra)."""
    for path in STACKING_DIR.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] in ("astropy", "matplotlib") for n in names), path


# ---- catalogs -----------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "c.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_catalog_case_insensitive_with_defaults(tmp_path):
    text = "# a comment line\n\nRA, Dec ,ANGLE,Weight\n10.5, -3.25, 90, 2\n# another\n359.9, 80, -45, 0\n"
    cat = read_catalog(write(tmp_path, text))
    assert isinstance(cat, Catalog) and len(cat) == 2
    np.testing.assert_array_equal(cat.ra, [10.5, 359.9])
    np.testing.assert_array_equal(cat.dec, [-3.25, 80.0])
    np.testing.assert_allclose(cat.angle, [math.pi / 2, -math.pi / 4], rtol=1e-15)
    np.testing.assert_array_equal(cat.weight, [2.0, 0.0])
    np.testing.assert_array_equal(cat.flip_x, [1.0, 1.0])
    np.testing.assert_array_equal(cat.flip_y, [1.0, 1.0])
    assert cat.region.dtype == np.int64 and cat.region.tolist() == [0, 0]
    for a in (cat.ra, cat.dec, cat.angle, cat.weight, cat.flip_x):
        assert a.dtype == np.float64


def test_csv_catalog_column_mapping_flips_regions_and_radians(tmp_path):
    text = "ra,dec,PA,fx,flip_y,jk\n1,2,0.5,-1,1,3\n3,4,-0.25,1,-1,7\n"
    cat = read_catalog(
        write(tmp_path, text), columns={"angle": "pa", "flip_x": "FX", "region": "jk"}, angle_unit="rad"
    )
    np.testing.assert_array_equal(cat.angle, [0.5, -0.25])
    np.testing.assert_array_equal(cat.flip_x, [-1.0, 1.0])
    np.testing.assert_array_equal(cat.flip_y, [1.0, -1.0])
    assert cat.region.tolist() == [3, 7]


def test_fits_table_catalog(tmp_path):
    fits, _ = astropy()
    columns = [
        fits.Column(name="RA", format="D", array=np.array([10.0, 20.0, 30.0])),
        fits.Column(name="DEC", format="E", array=np.array([-1.0, 0.0, 1.0])),
        fits.Column(name="Angle", format="D", array=np.array([0.0, 90.0, 180.0])),
        fits.Column(name="flip_y", format="I", array=np.array([1, -1, 1])),
        fits.Column(name="region", format="J", array=np.array([2, 0, 2])),
        fits.Column(name="name", format="5A", array=np.array(["a", "b", "c"])),
    ]
    fits.BinTableHDU.from_columns(columns, name="OBJECTS").writeto(tmp_path / "cat.fits")
    for hdu in (None, 1, "OBJECTS"):
        cat = read_catalog(tmp_path / "cat.fits", hdu=hdu)
        assert cat.ra.dtype == np.float64 and cat.ra.dtype.isnative
        np.testing.assert_array_equal(cat.ra, [10.0, 20.0, 30.0])
        np.testing.assert_allclose(cat.angle, [0.0, math.pi / 2, math.pi], rtol=1e-15)
        np.testing.assert_array_equal(cat.flip_y, [1.0, -1.0, 1.0])
        assert cat.region.tolist() == [2, 0, 2]
    with pytest.raises(
        ArgumentError, match=r"column 'name' \(the 'weight' field\) must hold numbers; row 1 has 'a'"
    ):
        read_catalog(tmp_path / "cat.fits", columns={"weight": "name"})
    with pytest.raises(ArgumentError, match=r"'hdu' 0 of .* is an image, not a table"):
        read_catalog(tmp_path / "cat.fits", hdu=0)
    vector = fits.Column(name="ra", format="2D", array=np.zeros((3, 2)))
    fits.BinTableHDU.from_columns([vector, *columns[1:3]]).writeto(tmp_path / "vec.fits")
    with pytest.raises(ArgumentError, match=r"column 'ra' holds arrays \(shape \[2\] per row\)"):
        read_catalog(tmp_path / "vec.fits")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"is empty; expected a header row"),
        ("# only a comment\n\n", r"is empty; expected a header row"),
        ("ra,dec,angle\n", r"has a header but no objects"),
        ("1.0,2.0,3.0\n4,5,6\n", r"starts with data; a header row naming the columns is required"),
        (
            "RA,Dec,weight\n1,2,1\n",
            r"lacks the required column\(s\) \['angle'\]; columns found: \['ra', 'dec', 'weight'\]",
        ),
        (
            "x,y\n1,2\n",
            r"lacks the required column\(s\) \['ra', 'dec', 'angle'\]; columns found: \['x', 'y'\]",
        ),
        ("ra,dec,angle\n1,2,3\n4,nan,6\n", r"column 'dec' must be finite; NaN or inf at row\(s\) 2"),
        ("ra,dec,angle\ninf,2,3\n", r"column 'ra' must be finite; NaN or inf at row\(s\) 1"),
        ("ra,dec,angle\n1,2,3\n1,2,-inf\n", r"column 'angle' must be finite; NaN or inf at row\(s\) 2"),
        ("ra,dec,angle\n1,95,3\n", r"column 'dec' must be in \[-90, 90\] degrees; got 95 at row\(s\) 1"),
        (
            "ra,dec,angle,flip_x\n1,2,3,1\n1,2,3,0\n",
            r"column 'flip_x' must be \+1 or -1; got 0 at row\(s\) 2",
        ),
        ("ra,dec,angle,flip_y\n1,2,3,2\n", r"column 'flip_y' must be \+1 or -1; got 2 at row\(s\) 1"),
        ("ra,dec,angle,weight\n1,2,3,-0.5\n", r"column 'weight' must be >= 0; got -0.5 at row\(s\) 1"),
        (
            "ra,dec,angle,region\n1,2,3,1.5\n",
            r"column 'region' must be an integer >= 0; got 1.5 at row\(s\) 1",
        ),
        ("ra,dec,angle,region\n1,2,3,-1\n", r"column 'region' must be an integer >= 0; got -1"),
        ("ra,dec,angle\n1,2,north\n", r"column 'angle' must hold numbers; row 1 has 'north'"),
        ("ra,dec,angle\n1,2,3\n1,2\n", r"row 2 has 2 fields; the header has 3"),
        ("ra,dec,angle,RA\n1,2,3,4\n", r"has two columns named 'ra'"),
    ],
)
def test_bad_csv_catalogs(tmp_path, text, match):
    with pytest.raises(ArgumentError, match=match):
        read_catalog(write(tmp_path, text))


@pytest.mark.filterwarnings("ignore:Header block contains null bytes", "ignore:Error validating header")
def test_bad_catalog_arguments_and_files(tmp_path):
    good = write(tmp_path, "ra,dec,angle\n1,2,3\n")
    with pytest.raises(ArgumentError, match=r"'columns' has unknown field\(s\) \['pa'\]"):
        read_catalog(good, columns={"pa": "angle"})
    with pytest.raises(ArgumentError, match="'angle_unit' must be 'deg' or 'rad'; got 'arcmin'"):
        read_catalog(good, angle_unit="arcmin")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"column 'pa' \(the 'angle' field\) must be finite"):
        read_catalog(write(tmp_path, "ra,dec,pa\n1,2,nan\n"), columns={"angle": "pa"})
    with pytest.raises(FileNotFoundError, match=r"read_catalog: 'path' .*nope\.csv' does not exist"):
        read_catalog(tmp_path / "nope.csv")
    with pytest.raises(ArgumentError, match="is not a regular file"):
        read_catalog(tmp_path)
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x01ra,dec\n")
    with pytest.raises(ArgumentError, match=r"cannot read .*binary\.csv' as UTF-8 CSV text"):
        read_catalog(tmp_path / "binary.csv")
    astropy()
    (tmp_path / "broken.fits").write_bytes(b"SIMPLE  =                    T" + b"\x00" * 100)
    with pytest.raises(ArgumentError, match=r"cannot read .*broken\.fits' as a FITS table"):
        read_catalog(tmp_path / "broken.fits")
