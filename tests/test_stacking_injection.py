"""The spec's correctness checks of oriented stacking (flat projection): injection, random angles,
α → α + π, flips, and the jackknife from per-group sums.

The injected map holds well-separated copies of one template, written in the stack frame (u, v):
an elliptical Gaussian along +x (σ = 20 and 10 pixels: resolved, so that the two bilinear
samplings, of the map and of the rings, smooth C_m(r) by under 1 %), a lobe on +x (it gives C_1)
and a lobe on +y (it gives S_1, the spec's odd term). Object i is drawn at angle α_i on the sides
its flips give (it reads T(flip_x·u, flip_y·v)), plus white noise, so that the oriented stack with
those flips is the template.

Noise levels are derived, not guessed: the stack and the ring multipoles are linear maps of the
map, A (stack sampling) and D (ring sampling and projection on cos mθ, sin mθ), both built here as
sparse matrices from the documented conventions, so white noise of standard deviation σ gives
Var[C_m(r)] = σ² (D A Aᵀ Dᵀ)_kk exactly.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from test_stacking import sample_coords

from feedbackkit.stacking import multipoles, oriented_stack, region_covariance

SIGMA_MAJOR, SIGMA_MINOR = 20.0, 10.0
LOBES = ((22.0, 0.0), (0.0, 20.0))  # (u, v) centres: on +x (C_1) and on +y (S_1)
LOBE_SIGMA, LOBE_AMPLITUDE = 8.0, 0.4
HALF_WIDTH = 50
CELL = 150  # > 2 (n√2 + 2): no cutout leaves its object's cell
OBJECTS = 64
M_MAX = 4
ORDERS = np.arange(M_MAX + 1)[:, None]


def template(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.exp(-0.5 * ((u / SIGMA_MAJOR) ** 2 + (v / SIGMA_MINOR) ** 2))
    for lu, lv in LOBES:
        out += LOBE_AMPLITUDE * np.exp(-0.5 * ((u - lu) ** 2 + (v - lv) ** 2) / LOBE_SIGMA**2)
    return out


def template_multipoles(n: int, n_theta: int = 4096) -> np.ndarray:
    """[C or S, m, r] of the analytic template on rings r = 0 … n: its angular integrals, from a
    fine polar grid."""
    r = np.arange(n + 1.0)[:, None]
    theta = 2 * np.pi * np.arange(n_theta) / n_theta
    f = template(r * np.cos(theta), r * np.sin(theta))
    c = (2 / n_theta) * (f * np.cos(ORDERS[..., None] * theta)).sum(-1)
    c[0] /= 2
    s = (2 / n_theta) * (f * np.sin(ORDERS[..., None] * theta)).sum(-1)
    return np.stack([c, s])


def injected_map(rng, angles, flip_x, flip_y, noise: float):
    """White noise plus one template per object, on a grid of CELL-wide cells; returns the map and
    the (y, x) centres (fractional, near the cell centres)."""
    side = math.ceil(math.sqrt(len(angles)))
    m = noise * rng.standard_normal((side * CELL, side * CELL))
    cells = np.stack(np.divmod(np.arange(len(angles)), side), axis=1) * CELL
    centres = cells + CELL / 2 + rng.uniform(-0.5, 0.5, size=cells.shape)
    yy, xx = np.mgrid[0:CELL, 0:CELL].astype(np.float64)
    for (y0, x0), (cy, cx), a, fx, fy in zip(centres, cells, angles, flip_x, flip_y, strict=True):
        dx, dy = xx + cx - x0, yy + cy - y0
        along, across = dx * math.cos(a) + dy * math.sin(a), -dx * math.sin(a) + dy * math.cos(a)
        m[cy : cy + CELL, cx : cx + CELL] += template(fx * along, fy * across)
    return m, centres


def bilinear_matrix(y: np.ndarray, x: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """[K, ny·nx]: row k samples an image of `shape` at (y, x).flat[k] with the documented bilinear
    rule (pixels floor and floor + 1 with weights 1 − t and t; zero weights never read)."""
    y, x = np.ravel(y), np.ravel(x)
    iy, ix = np.floor(y), np.floor(x)
    ty, tx = y - iy, x - ix
    rows, cols, vals = [], [], []
    for dy, wy in ((0, 1 - ty), (1, ty)):
        for dx, wx in ((0, 1 - tx), (1, tx)):
            rows.append(np.arange(y.size))
            cols.append(((iy + dy) * shape[1] + ix + dx).astype(np.int64))
            vals.append(wy * wx)
    rows, cols, vals = (np.concatenate(a) for a in (rows, cols, vals))
    keep = vals != 0
    return sparse.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(y.size, shape[0] * shape[1]))


def ring_functionals(n: int) -> sparse.csr_matrix:
    """[(C or S, m, r), P²]: multipoles' defaults (rings r = 0 … n, n_θ = 20(n + 1), bilinear) as
    linear functionals of a P × P image."""
    n_r = n + 1
    n_theta = 20 * n_r
    theta = 2 * np.pi * np.arange(n_theta) / n_theta
    r = np.arange(n_r)[:, None]
    rings = bilinear_matrix(n + r * np.sin(theta), n + r * np.cos(theta), (2 * n + 1, 2 * n + 1))
    cos_w = (2 / n_theta) * np.cos(ORDERS * theta)
    cos_w[0] /= 2
    sin_w = (2 / n_theta) * np.sin(ORDERS * theta)
    per_ring = [sparse.kron(sparse.eye(n_r), w[None, :]) for w in (*cos_w, *sin_w)]
    return sparse.vstack(per_ring).tocsr() @ rings


def white_noise_std(m_shape, centres, angles, flip_x, flip_y, n: int, sigma: float) -> np.ndarray:
    """[C or S, m, r]: standard deviation of the multipoles of the unit-weight bilinear stack of
    white noise of standard deviation `sigma` (every sample inside the map): σ² (D A Aᵀ Dᵀ)_kk."""
    objects = zip(centres, angles, flip_x, flip_y, strict=True)
    ys, xs = zip(*(sample_coords(c, a, n, 1.0, fx, fy) for c, a, fx, fy in objects), strict=True)
    samples = bilinear_matrix(np.stack(ys), np.stack(xs), m_shape)
    k, p2 = len(angles), (2 * n + 1) ** 2
    stack = sparse.kron(np.ones((1, k)), sparse.eye(p2)).tocsr() @ samples / k
    d = ring_functionals(n)
    var = np.asarray((d @ (stack @ stack.T)).multiply(d).sum(axis=1)).ravel()
    return sigma * np.sqrt(var).reshape(2, M_MAX + 1, n + 1)


def z_scores(residual: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """residual / sd where the noise reaches the term (the ring r = 1 has no S_4, for instance)."""
    informative = sd > 1e-9 * sd.max()
    return residual[informative] / sd[informative]


def stack_multipoles(m, centres, angles, **kwargs) -> np.ndarray:
    """[C or S, m, r] of the oriented stack of a single map."""
    image = oriented_stack(m, centres, angles, half_width=HALF_WIDTH, **kwargs).stack()[0, 0]
    return np.stack(multipoles(image, m_max=M_MAX))


def test_injected_template_is_recovered_within_one_percent():
    """Stacked with each object's angle and flips, C_2(r) and S_1(r) (and C_1(r)) equal the
    template's angular integrals to 1 % on the rings where the template is resolved."""
    rng = np.random.default_rng(11)
    angles = rng.uniform(-np.pi, np.pi, OBJECTS)
    flip_x, flip_y = rng.choice([-1.0, 1.0], size=(2, OBJECTS))
    noise = 3e-4
    m, centres = injected_map(rng, angles, flip_x, flip_y, noise)
    got = stack_multipoles(m, centres, angles, flip_x=flip_x, flip_y=flip_y)
    want = template_multipoles(HALF_WIDTH)
    sd = white_noise_std(m.shape, centres, angles, flip_x, flip_y, HALF_WIDTH, noise)
    r = np.arange(HALF_WIDTH + 1)
    for kind, order in ((0, 2), (1, 1), (0, 1)):  # C_2, S_1 (the spec's) and C_1
        g, w, s = got[kind, order], want[kind, order], sd[kind, order]
        # resolved: rings of 3 pixels and more where the term is at least a fifth of its peak
        resolved = (r >= 3) & (np.abs(w) >= 0.2 * np.abs(w).max())
        assert resolved.sum() >= 10
        assert (5 * s[resolved] <= 0.002 * np.abs(w[resolved])).all()  # noise: < 1/5 of the budget
        np.testing.assert_allclose(g[resolved], w[resolved], rtol=0.01)
    # The lobes are on the sides the flips say: without flips they mostly cancel.
    plain = stack_multipoles(m, centres, angles)
    assert np.abs(plain[1, 1]).max() < 0.5 * np.abs(want[1, 1]).max()


def test_random_angles_leave_no_anisotropy_beyond_noise():
    """All objects share one orientation β and are stacked at uniform random angles α_i: each
    appears rotated by ψ_i = α_i − β, so C_m → C_m cos mψ + S_m sin mψ and S_m → S_m cos mψ −
    C_m sin mψ; over uniform ψ their variance is (C_m² + S_m²)/2 per object (shape noise)."""
    rng = np.random.default_rng(12)
    beta, noise = 0.7, 0.1
    ones = np.ones(OBJECTS)
    m, centres = injected_map(rng, beta * ones, ones, ones, noise)
    alpha = rng.uniform(-np.pi, np.pi, OBJECTS)
    got = stack_multipoles(m, centres, alpha)[:, 1:, 1:]  # m ≥ 1, r ≥ 1
    tc, ts = template_multipoles(HALF_WIDTH)
    white = white_noise_std(m.shape, centres, alpha, ones, ones, HALF_WIDTH, noise)[:, 1:, 1:]
    shape_var = ((tc**2 + ts**2) / (2 * OBJECTS))[1:, 1:]
    assert (np.abs(z_scores(got, np.sqrt(shape_var + white**2))) < 5).all()
    # Sharper, and a check that the noise level is not loose: given the drawn ψ_i, the expected
    # multipoles are known; what is left is the white noise alone, with unit variance.
    psi = alpha - beta
    cos_m, sin_m = np.cos(ORDERS * psi).mean(1)[:, None], np.sin(ORDERS * psi).mean(1)[:, None]
    expected = np.stack([tc * cos_m + ts * sin_m, ts * cos_m - tc * sin_m])[:, 1:, 1:]
    z = z_scores(got - expected, white)
    assert np.abs(z).max() < 5
    assert 0.8 < np.sqrt(np.mean(z**2)) < 1.2
    # Control: stacked at their true angle the objects' C_2 stands far above that noise.
    aligned = stack_multipoles(m, centres, beta * ones)[0, 2, 1:]
    assert (aligned[4:40] > 5 * np.sqrt(shape_var[1] + white[0, 1] ** 2)[4:40]).all()


def test_alpha_plus_pi_without_flips_keeps_even_terms_and_odd_terms_vanish():
    """Lobes on balanced random sides (half on each): with no flips the odd terms vanish within
    the white noise, and turning every angle by π changes no even term."""
    rng = np.random.default_rng(13)
    sides = np.repeat([-1.0, 1.0], OBJECTS // 2)
    side_x, side_y = rng.permutation(sides), rng.permutation(sides)
    angles = rng.uniform(-np.pi, np.pi, OBJECTS)
    noise = 0.1
    m, centres = injected_map(rng, angles, side_x, side_y, noise)
    plain = stack_multipoles(m, centres, angles)
    turned = stack_multipoles(m, centres, angles + np.pi)
    even = ORDERS[:, 0] % 2 == 0
    scale = np.abs(plain).max()
    np.testing.assert_allclose(turned[:, even], plain[:, even], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(turned[:, ~even], -plain[:, ~even], rtol=0, atol=1e-12 * scale)
    white = white_noise_std(m.shape, centres, angles, np.ones(OBJECTS), np.ones(OBJECTS), HALF_WIDTH, noise)
    z = z_scores(plain[:, ~even], white[:, ~even])
    assert np.abs(z).max() < 5 and np.sqrt(np.mean(z**2)) < 1.3
    flipped = stack_multipoles(m, centres, angles, flip_x=side_x, flip_y=side_y)
    assert flipped[0, 1, 20] > 20 * white[0, 1, 20] and flipped[1, 1, 20] > 20 * white[1, 1, 20]


# ---- exact symmetries and the jackknife, on random catalogs ------------------------------------

MAP_SIZE = 64


def random_catalog(rng, k: int, n: int, step: float):
    """k objects whose cutouts lie inside a MAP_SIZE² map: positions, angles, flips, weights."""
    margin = n * step * math.sqrt(2) + 3
    positions = rng.uniform(margin, MAP_SIZE - 1 - margin, size=(k, 2))
    flip_x, flip_y = rng.choice([-1.0, 1.0], size=(2, k))
    return positions, rng.uniform(-4, 4, k), flip_x, flip_y, rng.uniform(0.2, 2.0, k)


def profile(res) -> np.ndarray:
    """[G, …]: every group's C_m(r) and S_m(r) of every map, flattened."""
    c, s = multipoles(res.stack(), m_max=M_MAX)
    return np.concatenate([c.reshape(len(c), -1), s.reshape(len(s), -1)], axis=1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 12),
    n=st.integers(2, 9),
    step=st.floats(0.5, 1.5),
    interpolation=st.sampled_from(["nearest", "bilinear", "bicubic"]),
)
def test_flips_and_half_turns_act_on_multipoles_by_parity(seed, k, n, step, interpolation):
    """Toggling flip_x mirrors the stack in x: C_m → (−1)^m C_m, S_m → (−1)^(m+1) S_m (C_1 of a
    lobe on +x changes sign); toggling flip_y mirrors it in y: S_m → −S_m (S_1 changes sign);
    α → α + π turns it by π: C_m, S_m → (−1)^m C_m, S_m."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(2, MAP_SIZE, MAP_SIZE))
    positions, angles, flip_x, flip_y, weights = random_catalog(rng, k, n, step)

    def harmonics(angles, flip_x, flip_y):
        res = oriented_stack(
            maps,
            positions,
            angles,
            flip_x=flip_x,
            flip_y=flip_y,
            weights=weights,
            half_width=n,
            step=step,
            interpolation=interpolation,
        )
        return np.stack(multipoles(res.stack()[0], m_max=M_MAX))  # [C or S, B, m, r]

    base = harmonics(angles, flip_x, flip_y)
    parity = (-1.0) ** ORDERS
    odd_sine = np.stack([parity, -parity])[:, None]  # [C or S, 1, m, 1]
    atol = 1e-12 * np.abs(base).max()
    np.testing.assert_allclose(harmonics(angles, -flip_x, flip_y), odd_sine * base, rtol=0, atol=atol)
    np.testing.assert_allclose(harmonics(angles, flip_x, -flip_y), [base[0], -base[1]], rtol=0, atol=atol)
    np.testing.assert_allclose(harmonics(angles + np.pi, flip_x, flip_y), parity * base, rtol=0, atol=atol)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    regions=st.integers(2, 6),
    per_region=st.integers(1, 4),
    n=st.integers(2, 6),
    interpolation=st.sampled_from(["bilinear", "bicubic"]),
)
def test_group_sums_reproduce_the_delete_one_region_jackknife(seed, regions, per_region, n, interpolation):
    """Brute force: re-stack without each region in turn. With equal region sizes, the jackknife
    mean and covariance of the multipoles equal region_covariance of the per-group profiles of
    one pass."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(2, MAP_SIZE, MAP_SIZE))
    positions, angles, flip_x, flip_y, _ = random_catalog(rng, regions * per_region, n, 1.0)
    groups = rng.permutation(np.repeat(np.arange(regions), per_region))

    def stack(keep, **kwargs):
        return oriented_stack(
            maps,
            positions[keep],
            angles[keep],
            flip_x=flip_x[keep],
            flip_y=flip_y[keep],
            half_width=n,
            interpolation=interpolation,
            **kwargs,
        )

    every = np.ones(len(groups), dtype=bool)
    per_group = stack(every, groups=groups)
    assert per_group.count.tolist() == [per_region] * regions
    mean, cov = region_covariance(profile(per_group), per_group.count)

    delete_one = np.concatenate([profile(stack(groups != g)) for g in range(regions)])
    jackknife_mean = delete_one.mean(axis=0)
    deviation = delete_one - jackknife_mean
    jackknife_cov = (regions - 1) / regions * deviation.T @ deviation

    (full,) = profile(stack(every))
    scale = np.abs(full).max()
    np.testing.assert_allclose(mean, full, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(jackknife_mean, full, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(cov, jackknife_cov, rtol=0, atol=1e-12 * scale**2)
