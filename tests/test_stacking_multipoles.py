"""Tests of the `stacking` profiles: multipoles, region_covariance, radial_bins (CPU, NumPy)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from feedbackkit.stacking import (
    ArgumentError,
    multipoles,
    oriented_stack,
    radial_bins,
    region_covariance,
)


def polar_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(r, θ) of every pixel of a (2n+1)² image, θ from +x (columns) toward +y (rows)."""
    off = np.arange(2 * n + 1, dtype=np.float64) - n
    v, u = np.meshgrid(off, off, indexing="ij")
    return np.hypot(u, v), np.arctan2(v, u)


def analytic_image(n: int, sigma: float = 15.0):
    r, th = polar_grid(n)

    def a_of(rr):
        return 2.0 + np.exp(-0.5 * (rr / 25.0) ** 2)

    def b_of(rr):
        return np.exp(-0.5 * (rr / sigma) ** 2)

    def d_of(rr):
        return 0.3 * (rr / n) * np.exp(-0.5 * (rr / 20.0) ** 2)

    img = a_of(r) + b_of(r) * np.cos(2 * th) + d_of(r) * np.sin(th)
    return img, a_of, b_of, d_of


def test_analytic_image_recovers_b_and_sin_term() -> None:
    n = 30
    img, a_of, b_of, d_of = analytic_image(n)
    c, s = multipoles(img)
    assert c.shape == s.shape == (5, n + 1)
    assert c.dtype == s.dtype == np.float64
    r = np.arange(n + 1, dtype=np.float64)
    sel = r >= 10
    np.testing.assert_allclose(c[2, sel], b_of(r[sel]), rtol=5e-3)
    np.testing.assert_allclose(s[1, sel], d_of(r[sel]), rtol=5e-3)
    np.testing.assert_allclose(c[0, sel], a_of(r[sel]), rtol=5e-3)
    # Terms absent from the image vanish (up to the interpolation's own anisotropy).
    for m in (1, 3):
        assert np.abs(c[m]).max() < 1e-2
    assert np.abs(s[2]).max() < 1e-2
    np.testing.assert_array_equal(s[0], 0.0)


def test_constant_image() -> None:
    img = np.full((21, 21), 3.25)
    c, s = multipoles(img, m_max=6)
    np.testing.assert_allclose(c[0], 3.25, rtol=1e-14)
    np.testing.assert_allclose(c[1:], 0.0, atol=1e-12)
    np.testing.assert_allclose(s, 0.0, atol=1e-12)


def test_explicit_radii_and_n_theta_match_direct_sum() -> None:
    from scipy.ndimage import map_coordinates

    rng = np.random.default_rng(1)
    n = 8
    img = rng.normal(size=(2 * n + 1, 2 * n + 1))
    radii = np.array([0.0, 1.5, 3.25, 8.0])
    nt = 37
    c, s = multipoles(img, m_max=3, radii=radii, n_theta=nt)
    th = 2 * np.pi * np.arange(nt) / nt
    for k, r in enumerate(radii):
        x, y = n + r * np.cos(th), n + r * np.sin(th)
        f = map_coordinates(img, [y, x], order=1, mode="nearest")
        np.testing.assert_allclose(c[0, k], f.mean(), rtol=1e-12, atol=1e-13)
        for m in range(1, 4):
            np.testing.assert_allclose(c[m, k], 2 / nt * (f * np.cos(m * th)).sum(), atol=1e-12)
            np.testing.assert_allclose(s[m, k], 2 / nt * (f * np.sin(m * th)).sum(), atol=1e-12)


def test_rot90_maps_c2_to_minus_c2() -> None:
    n = 30
    img, *_ = analytic_image(n)
    c, s = multipoles(img)
    # np.rot90: out[i, j] = img[j, P - 1 - i], i.e. out(θ) = img(θ + 90°): cos 2θ -> -cos 2θ,
    # sin θ -> cos θ.
    c_rot, s_rot = multipoles(np.rot90(img))
    np.testing.assert_allclose(c_rot[2], -c[2], atol=1e-12)
    np.testing.assert_allclose(c_rot[0], c[0], atol=1e-12)
    np.testing.assert_allclose(c_rot[1], s[1], atol=1e-12)
    np.testing.assert_allclose(s_rot[1], -c[1], atol=1e-12)


def test_batch_dims_float32_and_determinism() -> None:
    rng = np.random.default_rng(2)
    imgs = rng.normal(size=(2, 3, 11, 11))
    c, s = multipoles(imgs, m_max=2)
    assert c.shape == s.shape == (2, 3, 3, 6)
    for i in range(2):
        for j in range(3):
            ci, si = multipoles(imgs[i, j], m_max=2)
            np.testing.assert_array_equal(c[i, j], ci)
            np.testing.assert_array_equal(s[i, j], si)
    c32, _ = multipoles(imgs.astype(np.float32), m_max=2)
    np.testing.assert_allclose(c32, c, atol=1e-5)
    # Non-contiguous input and empty batches.
    c_t, _ = multipoles(np.swapaxes(imgs, 0, 1), m_max=2)
    np.testing.assert_array_equal(c_t, np.swapaxes(c, 0, 1))
    c0, s0 = multipoles(np.zeros((0, 11, 11)))
    assert c0.shape == s0.shape == (0, 5, 6)


def test_bitwise_identical_across_thread_counts() -> None:
    code = (
        "import numpy as np; from feedbackkit.stacking import multipoles;"
        "img = np.random.default_rng(3).normal(size=(4, 41, 41));"
        "c, s = multipoles(img); print(c.tobytes().hex()[:4000], s.sum().hex())"
    )
    outs = []
    for threads in ("1", "4"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        outs.append(
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout
        )
    assert outs[0] and outs[0] == outs[1]


def test_nan_pixel_poisons_only_rings_that_touch_it() -> None:
    n = 10
    img = np.ones((2 * n + 1, 2 * n + 1))
    img[n, n + 5] = np.nan  # on the ring r = 5 at θ = 0
    c, s = multipoles(img, radii=[2.0, 5.0, 9.0])
    assert np.isnan(c[:, 1]).all() and np.isnan(s[:, 1]).all()
    assert np.isfinite(c[:, [0, 2]]).all() and np.isfinite(s[:, [0, 2]]).all()


def test_oriented_stack_of_elongated_gaussians_has_positive_c2() -> None:
    rng = np.random.default_rng(4)
    ny, nx = 160, 160
    centres = [(40.0, 40.0), (40.0, 120.0), (120.0, 40.0), (120.0, 120.0)]
    angles = rng.uniform(0, 2 * np.pi, size=len(centres))
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    m = np.zeros((ny, nx))
    for (y0, x0), a in zip(centres, angles, strict=True):
        dx, dy = xx - x0, yy - y0
        along = dx * math.cos(a) + dy * math.sin(a)
        across = -dx * math.sin(a) + dy * math.cos(a)
        m += np.exp(-0.5 * ((along / 6.0) ** 2 + (across / 2.5) ** 2))
    st = oriented_stack(m, np.array(centres), angles, half_width=15).stack()[0, 0]
    c, s = multipoles(st)
    assert (c[2, 2:12] > 0).all()
    # Symmetric about both axes: odd terms and sines vanish (up to the two interpolations'
    # anisotropy).
    assert np.abs(c[[1, 3]]).max() < 5e-3 * c[2].max()
    assert np.abs(s[1:]).max() < 5e-3 * c[2].max()
    # Elongated along y instead (angles + 90°): C_2 changes sign.
    st_y = oriented_stack(m, np.array(centres), angles - np.pi / 2, half_width=15).stack()[0, 0]
    c_y, _ = multipoles(st_y)
    assert (c_y[2, 2:12] < 0).all()


def test_region_covariance_matches_np_cov_and_jackknife() -> None:
    rng = np.random.default_rng(5)
    g, p = 12, 7
    x = rng.normal(size=(g, p))
    counts = rng.integers(1, 50, size=g)
    mean, cov = region_covariance(x, counts)
    np.testing.assert_allclose(mean, (counts[:, None] * x).sum(0) / counts.sum(), rtol=1e-13)
    np.testing.assert_allclose(cov, np.cov(x.T, aweights=counts) / g, rtol=1e-13)
    assert mean.shape == (p,) and cov.shape == (p, p)
    # Equal counts: the delete-one-region jackknife covariance of the mean.
    mean_eq, cov_eq = region_covariance(x, np.full(g, 3))
    loo = (x.sum(0)[None, :] - x) / (g - 1)
    d = loo - loo.mean(0)
    np.testing.assert_allclose(mean_eq, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(cov_eq, (g - 1) / g * d.T @ d, rtol=1e-12, atol=1e-15)
    # P = 1 stays 2-D.
    _, cov1 = region_covariance(x[:, :1], counts)
    assert cov1.shape == (1, 1)


def test_radial_bins() -> None:
    prof = np.arange(2 * 11, dtype=np.float64).reshape(2, 11)
    out = radial_bins(prof, 3)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[0], [1.0, 4.0, 7.0])  # pixels 9, 10 dropped
    np.testing.assert_allclose(out[1], [12.0, 15.0, 18.0])
    np.testing.assert_array_equal(radial_bins(prof, 1), prof)
    np.testing.assert_allclose(radial_bins(np.ones((3, 5, 8)), 4), np.ones((3, 5, 2)))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: multipoles(np.zeros((10, 10))), "image"),
        (lambda: multipoles(np.zeros((11, 9))), "image"),
        (lambda: multipoles(np.zeros(11)), "image"),
        (lambda: multipoles(np.zeros((11, 11), dtype=complex)), "image"),
        (lambda: multipoles(np.zeros((11, 11)), m_max=-1), "m_max"),
        (lambda: multipoles(np.zeros((11, 11)), m_max=2.0), "m_max"),
        (lambda: multipoles(np.zeros((11, 11)), radii=[6.0]), "radii"),
        (lambda: multipoles(np.zeros((11, 11)), radii=[-1.0]), "radii"),
        (lambda: multipoles(np.zeros((11, 11)), radii=[np.nan]), "radii"),
        (lambda: multipoles(np.zeros((11, 11)), radii=[]), "radii"),
        (lambda: multipoles(np.zeros((11, 11)), n_theta=8), "n_theta"),
        (lambda: region_covariance(np.zeros(5), np.ones(5)), "profiles"),
        (lambda: region_covariance(np.zeros((1, 3)), np.ones(1)), "profiles"),
        (lambda: region_covariance(np.zeros((4, 3)), np.ones(3)), "counts"),
        (lambda: region_covariance(np.zeros((4, 3)), [1, -1, 1, 1]), "counts"),
        (lambda: region_covariance(np.zeros((4, 3)), [1, 0, 0, 0]), "counts"),
        (lambda: region_covariance(np.zeros((4, 3)), [1, np.inf, 0, 0]), "counts"),
        (lambda: radial_bins(np.zeros(5), 0), "width"),
        (lambda: radial_bins(np.zeros(5), 6), "width"),
        (lambda: radial_bins(np.float64(1.0), 1), "profile"),
    ],
)
def test_bad_arguments_name_the_argument(call, name) -> None:
    with pytest.raises(ArgumentError, match=f"'{name}'"):
        call()
