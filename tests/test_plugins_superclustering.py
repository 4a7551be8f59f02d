"""Built-in estimator plugin of paper 33 (Superclustering with ACT and DES II):
oriented_stack_multipoles — injection recovery and the stack's invariances."""

from __future__ import annotations

import numpy as np
import pytest

from feedbackkit import registry
from feedbackkit.plugins import superclustering as sc
from feedbackkit.stacking import ArgumentError, multipoles, oriented_stack
from feedbackkit.stacking.estimate import MultipoleEstimate

HALF = 18
SPACING, PER_SIDE = 44, 6  # a 6 × 6 grid of objects, 44 px apart


def template(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """An elliptical Gaussian along +u (σ 6 and 3 px) plus an offset lobe on the +v side."""
    return np.exp(-0.5 * ((u / 6.0) ** 2 + (v / 3.0) ** 2)) + 0.4 * np.exp(
        -0.5 * (u**2 + (v - 7.0) ** 2) / 9.0
    )


def injected(seed: int = 0):
    """Map of oriented, flipped templates: an object at (y0, x0) with angle α and flip s holds
    template(a, s·b) at offsets (a, b) = R(−α)(x − x0, y − y0), so its oriented stack is the template."""
    rng = np.random.default_rng(seed)
    size = SPACING * (PER_SIDE + 1)
    grid = np.meshgrid(
        SPACING * (1.0 + np.arange(PER_SIDE)), SPACING * (1.0 + np.arange(PER_SIDE)), indexing="ij"
    )
    y0, x0 = (c.ravel() + rng.uniform(-0.5, 0.5, c.size) for c in grid)
    angles = rng.uniform(0, 2 * np.pi, y0.size)
    flips = rng.choice([-1.0, 1.0], y0.size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    sky = np.zeros((size, size))
    for y, x, alpha, s in zip(y0, x0, angles, flips, strict=True):
        dx, dy = xx - x, yy - y
        a = dx * np.cos(alpha) + dy * np.sin(alpha)
        b = -dx * np.sin(alpha) + dy * np.cos(alpha)
        sky += template(a, s * b)
    groups = np.arange(y0.size) % 4
    return {
        "maps": sky,
        "positions": np.stack([y0, x0], 1),
        "angles": angles,
        "flip_y": flips,
        "groups": groups,
    }


@pytest.fixture(scope="module")
def data():
    return injected()


def run(data, **options) -> MultipoleEstimate:
    return sc.oriented_stack_multipoles(data, half_width=HALF, interpolation="bicubic", **options)


def test_registry_discovers_the_estimator():
    (entry,) = registry.entries()["oriented_stack_multipoles"]
    assert entry.builtin and entry.target == "feedbackkit.plugins.superclustering:oriented_stack_multipoles"
    method = registry.get("oriented_stack_multipoles")
    assert method.kind == "estimator" and method.available()


def test_method_metadata():
    m = sc.oriented_stack_multipoles
    assert m.name == "oriented_stack_multipoles" and m.kind == "estimator" and m.requires == ()
    assert m.paper.arxiv == "2409.04535" and m.paper.year == 2024
    assert m.paper.title.startswith(
        "Superclustering with the Atacama Cosmology Telescope and Dark Energy Survey: II"
    )
    assert set(m.extras) == {"stack_multipoles", "stack_catalog", "read_map", "read_catalog"}


def test_injected_templates_are_recovered(data):
    est = run(data, m_max=4)
    off = np.arange(-HALF, HALF + 1, dtype=np.float64)
    v, u = np.meshgrid(off, off, indexing="ij")
    c_ref, s_ref = multipoles(template(u, v), m_max=4)
    resolved = slice(2, 15)  # where the template is resolved and well inside the stack
    for m, ours, ref in [(0, est.C, c_ref), (2, est.C, c_ref), (1, est.S, s_ref)]:
        scale = np.abs(ref[m, resolved]).max()
        np.testing.assert_allclose(ours[0, m, resolved], ref[m, resolved], rtol=0, atol=0.01 * scale)
    assert c_ref[2, 5] > 0.1 and s_ref[1, 7] > 0.05  # the signals tested above are not tiny
    assert est.counts.tolist() == [9, 9, 9, 9] and est.C_err.shape == est.C.shape
    # Every object's stack turned by its own δ_k = 2πk/K (a flipped object turns the other way
    # for the same change of angle): the multipoles m = 1 … 4 average out.
    k = np.arange(data["angles"].size)
    spread = run({**data, "angles": data["angles"] + data["flip_y"] * 2 * np.pi * k / k.size}, m_max=4)
    assert np.abs(spread.C[0, 1:, resolved]).max() < 0.03 * np.abs(c_ref[2, resolved]).max()
    assert np.abs(spread.S[0, 1:, resolved]).max() < 0.03 * np.abs(c_ref[2, resolved]).max()


def test_turning_every_angle_by_pi_negates_the_odd_multipoles(data):
    est = run(data)
    turned = run({**data, "angles": data["angles"] + np.pi})
    np.testing.assert_allclose(turned.stack[0], est.stack[0, ::-1, ::-1], rtol=0, atol=1e-9)
    sign = np.array([1.0, -1.0, 1.0, -1.0, 1.0])[:, None]
    np.testing.assert_allclose(turned.C[0], sign * est.C[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(turned.S[0], sign * est.S[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(turned.C_err, est.C_err, rtol=0, atol=1e-9)


def test_toggling_every_flip_negates_the_sine_terms(data):
    est = run(data)
    toggled = run({**data, "flip_y": -data["flip_y"]})
    np.testing.assert_allclose(toggled.stack[0], est.stack[0, ::-1, :], rtol=0, atol=1e-9)
    np.testing.assert_allclose(toggled.S, -est.S, rtol=0, atol=1e-9)
    np.testing.assert_allclose(toggled.C, est.C, rtol=0, atol=1e-9)
    assert np.abs(est.S[0, 1, 5:10]).min() > 0.05  # the lobe's S_1 is there to be negated


def test_accepts_an_oriented_stack_and_checks_its_data(data):
    summed = oriented_stack(**data, half_width=HALF, interpolation="bicubic")
    from_sums = sc.oriented_stack_multipoles(summed, m_max=2, bin_width=2)
    direct = run(data, m_max=2, bin_width=2)
    np.testing.assert_array_equal(from_sums.C, direct.C)
    np.testing.assert_array_equal(from_sums.covariance, direct.covariance)
    with pytest.raises(
        ArgumentError, match=r"options are \['m_max', 'bin_width', 'n_theta'\]; got also \['step'\]"
    ):
        sc.oriented_stack_multipoles(summed, step=2.0)
    with pytest.raises(ArgumentError, match=r"missing \['angles'\], unknown \['angle'\]"):
        sc.oriented_stack_multipoles({"maps": data["maps"], "positions": data["positions"], "angle": 0})
    with pytest.raises(ArgumentError, match=r"'data' must be a mapping .* or an OrientedStack; got list"):
        sc.oriented_stack_multipoles([1, 2, 3], half_width=2)
