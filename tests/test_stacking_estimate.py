"""The multipole estimator of paper 33 (stack → C_m(r), S_m(r) → jackknife-by-region errors)."""

from __future__ import annotations

import numpy as np
import pytest

from feedbackkit.stacking import multipoles, oriented_stack
from feedbackkit.stacking.estimate import oriented_multipoles, stack_multipoles

N_OBJ, GROUPS, HALF = 48, 4, 8


def inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:80, 0:100]
    maps = np.stack([np.sin(xx / 7.0) * np.cos(yy / 5.0) + 0.1 * rng.normal(size=xx.shape), xx / 100.0])
    positions = np.stack([rng.uniform(12, 68, N_OBJ), rng.uniform(12, 88, N_OBJ)], axis=1)
    return {
        "maps": maps,
        "positions": positions,
        "angles": rng.uniform(0, 2 * np.pi, N_OBJ),
        "flip_y": rng.choice([-1.0, 1.0], N_OBJ),
        "weights": rng.uniform(0.5, 2.0, N_OBJ),
        "groups": np.arange(N_OBJ) % GROUPS,
    }


def subset(data: dict, keep: np.ndarray) -> dict:
    return {k: (v if k == "maps" else v[keep]) for k, v in data.items() if k != "groups"}


def test_region_profiles_come_from_each_regions_own_stack():
    data = inputs()
    est = oriented_multipoles(**data, half_width=HALF, step=1.3, m_max=3)
    p = 2 * HALF + 1
    assert est.stack.shape == (2, p, p) and est.C.shape == est.S.shape == (2, 4, HALF + 1)
    assert est.region_C.shape == (GROUPS, 2, 4, HALF + 1) and est.covariance.shape == (2 * est.C.size,) * 2
    np.testing.assert_array_equal(est.radii, np.arange(HALF + 1.0))
    np.testing.assert_array_equal(est.counts, [N_OBJ // GROUPS] * GROUPS)
    for g in range(GROUPS):
        own = oriented_stack(**subset(data, data["groups"] == g), half_width=HALF, step=1.3)
        c, s = multipoles(own.stack()[0], m_max=3)
        np.testing.assert_allclose(est.region_C[g], c, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(est.region_S[g], s, rtol=1e-12, atol=1e-14)
    whole = oriented_stack(**subset(data, np.ones(N_OBJ, bool)), half_width=HALF, step=1.3)
    np.testing.assert_allclose(est.stack, whole.stack()[0], rtol=1e-12)
    c, s = multipoles(whole.stack()[0], m_max=3)
    np.testing.assert_allclose(est.C, c, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(est.S, s, rtol=1e-12, atol=1e-14)


def test_errors_are_the_delete_one_region_jackknife_with_equal_counts():
    est = oriented_multipoles(**inputs(1), half_width=HALF, step=1.0, m_max=2)
    x = np.concatenate([est.region_C.reshape(GROUPS, -1), est.region_S.reshape(GROUPS, -1)], axis=1)
    loo = np.stack([np.delete(x, g, axis=0).mean(axis=0) for g in range(GROUPS)])
    d = loo - loo.mean(axis=0)
    jackknife = (GROUPS - 1) / GROUPS * d.T @ d
    np.testing.assert_allclose(est.covariance, jackknife, rtol=1e-10, atol=1e-16)
    errors = np.sqrt(np.diag(jackknife))
    np.testing.assert_allclose(est.C_err.ravel(), errors[: est.C.size], rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(est.S_err.ravel(), errors[est.C.size :], rtol=1e-10, atol=1e-16)
    assert (est.C_err[:, 1:, 2:] > 0).all() and (est.S_err[:, 0] == 0).all()


def test_unequal_counts_weight_the_covariance():
    data = inputs(2)
    data["groups"] = np.where(np.arange(N_OBJ) < 30, 0, np.arange(N_OBJ) % 3)
    est = oriented_multipoles(**data, half_width=HALF, step=1.0, m_max=1)
    counts = np.bincount(data["groups"]).astype(float)
    x = np.concatenate([est.region_C.reshape(3, -1), est.region_S.reshape(3, -1)], axis=1)
    mean = counts @ x / counts.sum()
    d = x - mean
    v1, v2 = counts.sum(), (counts**2).sum()
    expected = (d.T * counts) @ d / (v1 - v2 / v1) / 3
    np.testing.assert_allclose(est.covariance, expected, rtol=1e-10, atol=1e-16)


def test_empty_regions_are_left_out_and_one_region_gives_no_errors():
    data = inputs(3)
    base = oriented_stack(**data, half_width=HALF, num_groups=GROUPS)
    padded = oriented_stack(**data, half_width=HALF, num_groups=GROUPS + 2)
    ref, est = stack_multipoles(base), stack_multipoles(padded)
    assert est.counts.tolist() == [*ref.counts.tolist(), 0, 0] and est.regions.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(est.covariance, ref.covariance)
    one = stack_multipoles(oriented_stack(**subset(data, np.ones(N_OBJ, bool)), half_width=HALF))
    assert one.C_err is None and one.S_err is None and one.covariance is None
    np.testing.assert_allclose(one.C, ref.C, rtol=1e-12, atol=1e-14)


def test_radial_bins_average_consecutive_radii():
    data = inputs(4)
    fine = oriented_multipoles(**data, half_width=HALF, m_max=2)
    coarse = oriented_multipoles(**data, half_width=HALF, m_max=2, bin_width=3)
    np.testing.assert_allclose(coarse.radii, [1.0, 4.0, 7.0])
    np.testing.assert_allclose(coarse.C, fine.C[..., :9].reshape(2, 3, 3, 3).mean(-1), rtol=1e-13)
    np.testing.assert_allclose(
        coarse.region_S, fine.region_S[..., :9].reshape(4, 2, 3, 3, 3).mean(-1), rtol=1e-13
    )
    assert coarse.covariance.shape == (2 * 2 * 3 * 3,) * 2


def test_bad_bin_width_names_the_argument():
    with pytest.raises(ValueError, match="'width' must be <= n_r = 9; got 10"):
        oriented_multipoles(**inputs(), half_width=HALF, bin_width=10)
