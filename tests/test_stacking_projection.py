"""Spherical stacking (projection "tan" / "zea" on CAR and TAN maps) against astropy's WCS, and
per-object multipoles straight from the map."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from feedbackkit.stacking import MapGeometry, multipoles, object_multipoles, oriented_stack

wcs_module = pytest.importorskip("astropy.wcs")


def map_wcs(kind: str, crval, shape, res_deg: float, centre_dec: float = 0.0):
    """A real astropy WCS with RA growing to the left, and the matching MapGeometry; a CAR map's
    centre row lies at `centre_dec` (CRVAL2 stays 0)."""
    row0 = shape[0] / 2 - 0.5 - (centre_dec / res_deg if kind == "car" else 0.0)
    w = wcs_module.WCS(naxis=2)
    w.wcs.ctype = [f"RA---{kind.upper()}", f"DEC--{kind.upper()}"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [shape[1] / 2 + 0.5, row0 + 1]
    w.wcs.cd = np.array([[-res_deg, 0.0], [0.0, res_deg]])
    w.wcs.set()
    geometry = MapGeometry(kind, tuple(crval), (shape[1] / 2 - 0.5, row0), ((-res_deg, 0.0), (0.0, res_deg)))
    return w, geometry


def smooth_map(shape, seed=0):
    """A smooth random field (sum of a few long-wavelength waves) so bilinear errors stay small."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    out = np.zeros(shape)
    for _ in range(6):
        ky, kx = rng.normal(0, 0.05, 2)
        out += rng.normal() * np.cos(kx * xx + ky * yy + rng.uniform(0, 2 * math.pi))
    return out


def astropy_samples(world, dec, ra, alpha, fx, fy, n, step, proj):
    """Map pixels (y, x) of every stack sample, by astropy: the stack grid is a local TAN/ZEA WCS
    centred on the object, east-north axes turned to the map's pixel axes (x = west for a map
    with RA growing to the left), flipped and rotated by α as documented."""
    sx, sy = -1.0, 1.0  # the map's x grows toward the west, y toward the north
    c, s = math.cos(alpha), math.sin(alpha)
    local = wcs_module.WCS(naxis=2)
    local.wcs.ctype = [f"RA---{proj.upper()}", f"DEC--{proj.upper()}"]
    local.wcs.crval = [math.degrees(ra), math.degrees(dec)]
    local.wcs.crpix = [n + 1, n + 1]
    local.wcs.cd = math.degrees(step) * np.array([[sx * fx * c, -sx * fy * s], [sy * fx * s, sy * fy * c]])
    local.wcs.set()
    b, a = np.meshgrid(np.arange(2 * n + 1), np.arange(2 * n + 1))
    ra_s, dec_s = local.wcs_pix2world(b, a, 0)
    x, y = world.wcs_world2pix(ra_s, dec_s, 0)
    return y, x


CASES = [
    # (map kind, map crval, map centre dec, object (ra, dec) degrees, alpha, flips, projection)
    ("car", (0.0, 0.0), 0.0, (1.0, -2.0), 0.7, 1.0, 1.0, "tan"),
    ("car", (0.0, 0.0), 0.0, (359.6, 1.5), 2.1, -1.0, 1.0, "zea"),  # across RA = 0/360
    ("car", (180.0, 0.0), 60.0, (180.5, 60.0), -1.2, 1.0, -1.0, "tan"),  # high dec on CAR
    ("tan", (150.0, 80.0), 0.0, (152.0, 80.4), 0.3, -1.0, -1.0, "tan"),  # high-dec TAN field
    ("tan", (150.0, 80.0), 0.0, (140.0, 79.7), 4.0, 1.0, 1.0, "zea"),
]


@pytest.mark.parametrize(("kind", "crval", "centre_dec", "obj", "alpha", "fx", "fy", "proj"), CASES)
def test_spherical_stack_matches_astropy_reprojection(kind, crval, centre_dec, obj, alpha, fx, fy, proj):
    shape, res = (240, 260), 0.05  # 3′ pixels, a 12° × 13° map
    world, geometry = map_wcs(kind, crval, shape, res, centre_dec)
    m = smooth_map(shape)
    n, step = 12, math.radians(0.04)
    dec, ra = math.radians(obj[1]), math.radians(obj[0])
    res_stack = oriented_stack(
        m,
        [[dec, ra]],
        [alpha],
        flip_x=fx,
        flip_y=fy,
        half_width=n,
        step=step,
        projection=proj,
        geometry=geometry,
    )
    y, x = astropy_samples(world, dec, ra, alpha, fx, fy, n, step, proj)
    assert np.isfinite(x).all() and (x > 1).all() and (x < shape[1] - 2).all()
    assert (y > 1).all() and (y < shape[0] - 2).all()
    expected = map_coordinates(m, [y, x], order=1)
    assert res_stack.count.tolist() == [1]
    np.testing.assert_array_equal(res_stack.weight_sum[0], 1.0)
    np.testing.assert_allclose(res_stack.sum[0, 0], expected, atol=1e-7)


def test_tan_equals_flat_on_the_equator_of_a_car_map():
    """At dec 0 on a CAR map, small offsets: the spherical stack is the flat stack (same axes,
    same orientation) up to the O(θ²) projection difference."""
    shape, res = (200, 200), 0.01
    _, geometry = map_wcs("car", (0.0, 0.0), shape, res)
    m = smooth_map(shape, seed=3)
    alphas = np.array([0.0, 0.9, -2.5])
    ra = np.radians([0.1, -0.2, 0.05])
    dec = np.radians([0.0, 0.05, -0.1])
    y, x = geometry.sky_to_pixel(np.degrees(ra), np.degrees(dec))
    flips = np.array([1.0, -1.0, 1.0])
    kw = {"half_width": 10, "flip_x": flips, "interpolation": "bicubic"}
    sph = oriented_stack(
        m, np.stack([dec, ra], 1), alphas, step=math.radians(res), projection="tan", geometry=geometry, **kw
    )
    flat = oriented_stack(m, np.stack([y, x], 1), alphas, step=1.0, **kw)
    np.testing.assert_array_equal(sph.weight_sum, flat.weight_sum)
    # Offsets up to 10 pixels of 0.01° at |dec| <= 0.1°: positions agree to ~1e-3 pixel.
    np.testing.assert_allclose(sph.sum, flat.sum, atol=2e-3 * np.abs(np.gradient(m)).max() * 3)
    assert np.abs(sph.sum - flat.sum).max() > 0  # they are different computations


def test_spherical_validity_at_the_limits():
    """ZEA offsets beyond ρ = 2 and TAN-map samples on the far hemisphere are masked."""
    _, car = map_wcs("car", (0.0, 0.0), (100, 100), 1.0)
    res = oriented_stack(
        np.ones((100, 100)), [[0.0, 0.0]], [0.0], half_width=3, step=0.9, projection="zea", geometry=car
    )
    u = (np.arange(7) - 3) * 0.9
    inside = (u[None, :] ** 2 + u[:, None] ** 2) <= 4.0
    np.testing.assert_array_equal(res.weight_sum[0] > 0, inside & (res.weight_sum[0] > 0))
    assert not (res.weight_sum[0][~inside]).any()
    _, tan = map_wcs("tan", (0.0, 0.0), (100, 100), 1.0)
    far = oriented_stack(
        np.ones((100, 100)), [[0.0, math.pi]], [0.0], half_width=3, step=0.01, projection="tan", geometry=tan
    )
    assert far.count.tolist() == [0] and not far.weight_sum.any()


@pytest.mark.parametrize("projection", ["flat", "tan"])
def test_object_multipoles_equal_stack_multipoles_on_a_linear_map(projection):
    """On a map linear in the pixels, bilinear reads are exact, so rings read straight from the
    map equal rings read from a one-object stack, for every orientation and flip."""
    shape = (120, 140)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    maps = np.stack([0.3 * xx - 0.7 * yy + 2.0, 0.1 * yy + 1.0])
    _, geometry = map_wcs("car", (0.0, 0.0), shape, 0.02)
    if projection == "flat":
        pos, step, geo = np.array([[60.3, 70.6], [55.0, 64.2]]), 1.0, None
    else:
        pos, step, geo = np.radians([[0.1, 0.05], [-0.2, 359.9]]), math.radians(0.02), geometry
    angles, fx = np.array([0.4, 2.8]), np.array([1.0, -1.0])
    radii = np.array([0.0, 1.5, 4.0, 8.0])
    c, s = object_multipoles(
        maps, pos, angles, flip_x=fx, radii=radii, m_max=3, step=step, projection=projection, geometry=geo
    )
    assert c.shape == s.shape == (2, 2, 4, 4)
    for i in range(2):
        st = oriented_stack(
            maps,
            pos[i : i + 1],
            angles[i : i + 1],
            flip_x=fx[i],
            half_width=10,
            step=step,
            projection=projection,
            geometry=geo,
        )
        cs, ss = multipoles(st.stack()[0], m_max=3, radii=radii, n_theta=80)
        # Spherical rings are not exactly linear in the map pixels: compare to 1e-5 there.
        tol = 1e-9 if projection == "flat" else 1e-5
        np.testing.assert_allclose(c[i], cs, atol=tol)
        np.testing.assert_allclose(s[i], ss, atol=tol)
    if projection == "flat":
        # The gradient 0.3 x̂ − 0.7 ŷ rotated into object 0's frame gives C_1 = r·g_u, S_1 = r·g_v.
        a = angles[0]
        g_u = 0.3 * math.cos(a) - 0.7 * math.sin(a)
        g_v = -0.3 * math.sin(a) - 0.7 * math.cos(a)
        np.testing.assert_allclose(c[0, 0, 1], radii * g_u, atol=1e-9)
        np.testing.assert_allclose(s[0, 0, 1], radii * g_v, atol=1e-9)


def test_object_multipoles_nan_for_rings_leaving_the_map_or_mask():
    m = np.ones((50, 50))
    mask = np.ones((50, 50), dtype=bool)
    mask[25, 35] = False
    c, s = object_multipoles(
        m, [[25.0, 25.0], [25.0, 3.0]], [0.0, 0.0], radii=[2.0, 10.0], mask=mask, m_max=2
    )
    assert np.isnan(c[0, 0, :, 1]).all() and np.isnan(s[0, 0, :, 1]).all()  # radius 10 hits the masked pixel
    np.testing.assert_allclose(c[0, 0, :, 0], [1.0, 0.0, 0.0], atol=1e-12)
    assert np.isnan(c[1, 0, 0, 1]) and np.isfinite(c[1, 0, 0, 0])  # radius 10 leaves the map


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radii": None}, "radii"),
        ({"radii": [-1.0]}, "radii"),
        ({"m_max": -1}, "m_max"),
        ({"n_theta": 3, "m_max": 2}, "n_theta"),
        ({"angles": [0.0, 0.0]}, "angles"),
        ({"projection": "zea"}, "geometry"),
    ],
)
def test_object_multipoles_bad_arguments(kwargs, match):
    from feedbackkit.stacking import ArgumentError

    args = {"radii": [1.0], "angles": [0.0], **kwargs}
    with pytest.raises(ArgumentError, match=match):
        object_multipoles(np.ones((10, 10)), [[5.0, 5.0]], args.pop("angles"), **args)


@pytest.mark.parametrize("kind", ["car", "tan"])
def test_map_geometry_matches_astropy_both_ways(kind):
    world, geometry = map_wcs(kind, (150.0, 0.0 if kind == "car" else 65.0), (300, 400), 0.07)
    rng = np.random.default_rng(1)
    y, x = rng.uniform(-20, 320, 200), rng.uniform(-20, 420, 200)
    ra, dec = world.wcs_pix2world(x, y, 0)
    ra2, dec2 = geometry.pixel_to_sky(y, x)
    np.testing.assert_allclose((ra2 - ra + 180) % 360 - 180, 0, atol=1e-10)
    np.testing.assert_allclose(dec2, dec, atol=1e-10)
    y2, x2 = geometry.sky_to_pixel(ra, dec)
    np.testing.assert_allclose(y2, y, atol=1e-8)
    np.testing.assert_allclose(x2, x, atol=1e-8)


def test_map_geometry_far_side_and_bad_parameters():
    from feedbackkit.stacking import ArgumentError

    _, tan = map_wcs("tan", (10.0, 20.0), (100, 100), 0.1)
    y, x = tan.sky_to_pixel([190.0, 10.0], [-20.0, 20.0])  # the antipode has no gnomonic image
    assert np.isnan(y[0]) and np.isnan(x[0]) and np.isfinite(y[1])
    cd = ((-0.1, 0.0), (0.0, 0.1))
    for args, match in [
        (("sin", (0.0, 0.0), (0.0, 0.0), cd), "projection"),
        (("car", (0.0, 5.0), (0.0, 0.0), cd), "CRVAL2"),
        (("tan", (0.0, 95.0), (0.0, 0.0), cd), "dec0"),
        (("tan", (0.0, 0.0), (math.nan, 0.0), cd), "finite"),
        (("tan", (0.0, 0.0), (0.0, 0.0), ((1.0, 2.0), (2.0, 4.0))), "invertible"),
    ]:
        with pytest.raises(ArgumentError, match=match):
            MapGeometry(*args)
