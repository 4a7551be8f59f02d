"""reward family: every public function against the float64 references written from the
documented semantics, the regression cases of the spec, masks (holes, empty and single-token
rows, NaN padding), dtypes and strides, autograd, torch.library conformance, torch.compile, and
errors for bad input."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import feedbackkit
from feedbackkit import reward
from feedbackkit.ops import reward as reward_ops
from feedbackkit.reference import reward as ref

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
MASK_DTYPES = [torch.bool, torch.uint8, torch.int32, torch.int64]
ESTIMATORS = ["k1", "abs", "k2", "k3"]
GROUP_MODES = ["grpo", "rloo", "dr_grpo", "mean"]
NAN = float("nan")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def padded_mask(lengths: list[int], length: int, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    return (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).to(dtype)


def ragged_mask(rows: int, length: int, seed: int) -> torch.Tensor:
    """Random holes, plus an all-masked row 1, a single-token row 2 and a full row 3."""
    mask = torch.rand(rows, length, generator=gen(seed)) < 0.6
    mask[1] = False
    mask[2] = False
    mask[2, length // 2] = True
    mask[3] = True
    return mask


def nan_padded(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`x` with NaN at every masked position: a kernel that reads them leaks NaN."""
    return x.masked_fill(mask == 0, NAN)


def out_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_close(
    got: torch.Tensor, expected: torch.Tensor, input_dtype: torch.dtype, tol: float | None = None
) -> None:
    """Output dtype and values; `expected` is the float64 reference on the same (rounded) inputs."""
    assert got.dtype == out_dtype(input_dtype)
    tol = tol or (1e-10 if input_dtype == torch.float64 else 1e-5)
    torch.testing.assert_close(got.double(), expected.double(), rtol=tol, atol=tol, equal_nan=True)


def assert_zero_outside(got: torch.Tensor, mask: torch.Tensor) -> None:
    assert (got[mask == 0] == 0).all(), "masked outputs must be exactly 0"


# --------------------------------------------------------------------------------------------- gae


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_mode", ["skip", "zero"])
@pytest.mark.parametrize("with_bootstrap", [False, True])
def test_gae_matches_reference(dtype, mask_mode, with_bootstrap):
    mask = ragged_mask(6, 37, seed=1)
    rewards = nan_padded(randn(6, 37, seed=2, dtype=dtype), mask)
    values = nan_padded(randn(6, 37, seed=3, dtype=dtype), mask)
    bootstrap = randn(6, seed=4, dtype=dtype) if with_bootstrap else None
    got = reward.gae(rewards, values, mask, gamma=0.97, lam=0.9, mask_mode=mask_mode, bootstrap=bootstrap)
    expected = ref.gae(rewards, values, mask, 0.97, 0.9, mask_mode, bootstrap)
    for g, e in zip(got, expected, strict=True):
        check_close(g, e, dtype)
        assert_zero_outside(g, mask)


@pytest.mark.parametrize("mask_dtype", MASK_DTYPES)
def test_gae_mask_dtypes(mask_dtype):
    mask = ragged_mask(5, 20, seed=5)
    rewards, values = randn(5, 20, seed=6), randn(5, 20, seed=7)
    got = reward.gae(rewards, values, mask.to(mask_dtype), gamma=0.9, lam=0.8)
    expected = ref.gae(rewards, values, mask, 0.9, 0.8)
    check_close(got.advantages, expected[0], torch.float32)
    check_close(got.returns, expected[1], torch.float32)


def test_gae_spec_interior_hole_is_carried_in_skip_mode():
    rewards = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    values = torch.zeros(1, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1]], dtype=torch.bool)
    skip = reward.gae(rewards, values, mask, gamma=0.5, lam=1.0, mask_mode="skip")
    assert skip.returns.tolist() == [[0.5, 0.0, 1.0]]
    assert skip.advantages.tolist() == [[0.5, 0.0, 1.0]]
    # The classic loop discounts through the masked step instead: 1·0.5² at t=0.
    assert reward.gae(rewards, values, mask, gamma=0.5, lam=1.0, mask_mode="zero").returns.tolist() == [
        [0.25, 0.0, 1.0]
    ]
    assert reward.discounted_returns(rewards, mask, gamma=0.5).tolist() == [[0.5, 0.0, 1.0]]


def test_gae_hand_computed_with_values_and_bootstrap():
    # Valid t = 0, 2 (skip): δ2 = 1 + 0.5·4 − 2 = 1; A2 = 1; δ0 = 0 + 0.5·2 − 1 = 0; A0 = 0 + 0.25·1.
    rewards = torch.tensor([[0.0, 9.0, 1.0, 9.0]], dtype=torch.float64)
    values = torch.tensor([[1.0, 9.0, 2.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 0]], dtype=torch.bool)
    got = reward.gae(
        rewards, values, mask, gamma=0.5, lam=0.5, bootstrap=torch.tensor([4.0], dtype=torch.float64)
    )
    assert got.advantages.tolist() == [[0.25, 0.0, 1.0, 0.0]]
    assert got.returns.tolist() == [[1.25, 0.0, 3.0, 0.0]]


def classic_right_padded_gae(rewards, values, mask, gamma, lam, bootstrap):
    """The loop of verl / TRL (multiplying by the mask), float64, written independently of ref."""
    m = mask.double()
    r, v = rewards.double() * m, values.double() * m
    last = mask.long().cumsum(1).argmax(1)  # index of the last valid token
    r[torch.arange(r.shape[0]), last] += gamma * bootstrap.double() * mask.any(1)
    advantages, next_value, last_gae = torch.zeros_like(r), torch.zeros_like(r[:, 0]), 0.0
    for t in reversed(range(r.shape[1])):
        delta = r[:, t] + gamma * next_value - v[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
        next_value = v[:, t]
    return advantages * m, (advantages + v) * m


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_skip_equals_zero_without_interior_holes(padding, dtype):
    lengths = [17, 0, 1, 9, 16, 3]
    mask = padded_mask(lengths, 17)
    if padding == "left":
        mask = mask.flip(1)
    rewards, values = randn(6, 17, seed=8, dtype=dtype), randn(6, 17, seed=9, dtype=dtype)
    bootstrap = randn(6, seed=10, dtype=dtype)
    skip = reward.gae(rewards, values, mask, gamma=0.99, lam=0.95, mask_mode="skip", bootstrap=bootstrap)
    zero = reward.gae(rewards, values, mask, gamma=0.99, lam=0.95, mask_mode="zero", bootstrap=bootstrap)
    classic = classic_right_padded_gae(rewards, values, mask, 0.99, 0.95, bootstrap)
    for s, z, c in zip(skip, zero, classic, strict=True):
        check_close(s, c, dtype)
        check_close(z, c, dtype)


def test_gae_all_masked_and_single_token_rows():
    rewards = torch.tensor([[NAN, NAN, NAN], [NAN, 2.0, NAN], [1.0, 2.0, 3.0]])
    values = torch.tensor([[NAN, NAN, NAN], [NAN, 0.5, NAN], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[0, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=torch.bool)
    bootstrap = torch.tensor([NAN, 10.0, 0.0])
    for mode in ("skip", "zero"):
        got = reward.gae(rewards, values, mask, gamma=0.5, lam=1.0, mask_mode=mode, bootstrap=bootstrap)
        assert got.advantages.tolist() == [[0.0, 0.0, 0.0], [0.0, 6.5, 0.0], [2.75, 3.5, 3.0]]
        assert got.returns.tolist() == [[0.0, 0.0, 0.0], [0.0, 7.0, 0.0], [2.75, 3.5, 3.0]]


@pytest.mark.parametrize("mask_mode", ["skip", "zero"])
def test_discounted_returns(mask_mode):
    mask = ragged_mask(5, 30, seed=11)
    rewards = nan_padded(randn(5, 30, seed=12, dtype=torch.float64), mask)
    bootstrap = randn(5, seed=13, dtype=torch.float64)
    got = reward.discounted_returns(rewards, mask, gamma=0.9, mask_mode=mask_mode, bootstrap=bootstrap)
    check_close(got, ref.discounted_returns(rewards, mask, 0.9, mask_mode, bootstrap), torch.float64)
    via_gae = reward.gae(
        rewards, torch.zeros_like(rewards), mask, gamma=0.9, lam=1.0, mask_mode=mask_mode, bootstrap=bootstrap
    ).returns
    check_close(got, via_gae, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gae_long_rows(dtype):
    # Long enough for a chunked scan; γ=1, λ=0.999 keeps far-away terms in every sum.
    lengths = [5000, 4097, 1, 2500]
    mask = padded_mask(lengths, 5000)
    mask[0, 100:300] = False
    rewards, values = randn(4, 5000, seed=14, dtype=dtype) * 0.1, randn(4, 5000, seed=15, dtype=dtype)
    got = reward.gae(rewards, values, mask, gamma=1.0, lam=0.999)
    expected = ref.gae(rewards, values, mask, 1.0, 0.999)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    for g, e in zip(got, expected, strict=True):
        check_close(g, e, dtype, tol)


def test_gae_extreme_gamma_lambda():
    mask = ragged_mask(4, 12, seed=16)
    rewards, values = randn(4, 12, seed=17, dtype=torch.float64), randn(4, 12, seed=18, dtype=torch.float64)
    for gamma, lam in [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)]:
        for mode in ("skip", "zero"):
            got = reward.gae(rewards, values, mask, gamma=gamma, lam=lam, mask_mode=mode)
            for g, e in zip(got, ref.gae(rewards, values, mask, gamma, lam, mode), strict=True):
                check_close(g, e, torch.float64)
    # γ = 0: the advantage is the one-step r − V.
    got = reward.gae(rewards, values, mask, gamma=0.0, lam=0.7)
    check_close(got.advantages, torch.where(mask, rewards - values, 0), torch.float64)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(0, 4),
    length=st.integers(1, 20),
    gamma=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
    lam=st.sampled_from([0.0, 0.7, 1.0]),
    mask_mode=st.sampled_from(["skip", "zero"]),
    with_bootstrap=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    seed=st.integers(0, 2**31 - 1),
)
def test_gae_property(rows, length, gamma, lam, mask_mode, with_bootstrap, dtype, seed):
    g = gen(seed)
    mask = torch.rand(rows, length, generator=g) < 0.7
    rewards = torch.randn(rows, length, generator=g, dtype=torch.float64).to(dtype)
    values = torch.randn(rows, length, generator=g, dtype=torch.float64).to(dtype)
    bootstrap = torch.randn(rows, generator=g, dtype=torch.float64).to(dtype) if with_bootstrap else None
    got = reward.gae(rewards, values, mask, gamma=gamma, lam=lam, mask_mode=mask_mode, bootstrap=bootstrap)
    expected = ref.gae(rewards, values, mask, gamma, lam, mask_mode, bootstrap)
    for g_, e in zip(got, expected, strict=True):
        check_close(g_, e, dtype)
        assert_zero_outside(g_, mask)


# ------------------------------------------------------------------------------------- kl_penalty


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("clamps", [(None, None), ((-1.0, 0.5), (-0.2, 0.8))])
def test_kl_penalty_matches_reference(dtype, estimator, clamps):
    mask = ragged_mask(5, 23, seed=20)
    logp = nan_padded(randn(5, 23, seed=21, dtype=dtype), mask)
    ref_logp = nan_padded(randn(5, 23, seed=22, dtype=dtype), mask)
    rewards = randn(5, 23, seed=23, dtype=dtype)
    log_ratio_clamp, clamp = clamps
    got = reward.kl_penalty(
        logp, ref_logp, mask, estimator=estimator, log_ratio_clamp=log_ratio_clamp, clamp=clamp,
        reward=rewards, beta=0.3,
    )  # fmt: skip
    kl, shaped, row_sum, row_count = ref.kl_penalty(
        logp, ref_logp, mask, estimator, log_ratio_clamp, clamp, rewards, 0.3
    )
    check_close(got.kl, kl, dtype)
    assert_zero_outside(got.kl, mask)
    check_close(got.shaped, shaped, dtype)
    check_close(got.row_sum, row_sum, dtype)
    assert got.row_count.dtype == torch.int64 and got.row_count.tolist() == row_count.tolist()


def test_kl_penalty_hand_computed():
    logp = torch.tensor([[0.1, 0.5, 7.0]], dtype=torch.float64)
    ref_logp = torch.tensor([[0.3, 0.1, 7.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    expected = {
        "k1": [-0.2, 0.4],
        "abs": [0.2, 0.4],
        "k2": [0.02, 0.08],
        "k3": [math.exp(0.2) - 0.2 - 1, math.exp(-0.4) + 0.4 - 1],
    }
    for estimator, kl in expected.items():
        got = reward.kl_penalty(logp, ref_logp, mask, estimator=estimator)
        assert got.kl[0].tolist() == pytest.approx([*kl, 0.0], abs=1e-15)
        assert got.row_sum.tolist() == pytest.approx([sum(kl)], abs=1e-15)
        assert got.row_count.tolist() == [2]
        assert got.shaped is None
    clamped = reward.kl_penalty(logp, ref_logp, mask, log_ratio_clamp=(-0.1, 0.3), clamp=(-1.0, 0.25)).kl
    assert clamped[0].tolist() == pytest.approx([-0.1, 0.25, 0.0], abs=1e-15)


def test_kl_penalty_shaped_keeps_reward_outside_mask():
    mask = torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    logp = torch.tensor([[0.5, NAN, 0.0], [NAN, NAN, NAN]])
    ref_logp = torch.tensor([[0.0, NAN, 1.0], [NAN, NAN, NAN]])
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    got = reward.kl_penalty(logp, ref_logp, mask, reward=rewards, beta=2.0)
    assert got.shaped.tolist() == [[0.0, 2.0, 5.0], [4.0, 5.0, 6.0]]
    assert got.kl.tolist() == [[0.5, 0.0, -1.0], [0.0, 0.0, 0.0]]
    assert got.row_sum.tolist() == [-0.5, 0.0] and got.row_count.tolist() == [2, 0]


def test_kl_penalty_without_mask():
    logp, ref_logp = randn(3, 8, seed=24, dtype=torch.float64), randn(3, 8, seed=25, dtype=torch.float64)
    got = reward.kl_penalty(logp, ref_logp, estimator="k3")
    kl, _, row_sum, _ = ref.kl_penalty(logp, ref_logp, None, "k3")
    check_close(got.kl, kl, torch.float64)
    check_close(got.row_sum, row_sum, torch.float64)
    assert got.row_count.tolist() == [8, 8, 8]


def kl_inputs(seed: int) -> tuple[torch.Tensor, ...]:
    mask = padded_mask([6, 0, 1, 4], 6)
    mask[0, 2] = False
    logp = randn(4, 6, seed=seed, dtype=torch.float64).requires_grad_()
    ref_logp = randn(4, 6, seed=seed + 1, dtype=torch.float64).requires_grad_()
    rewards = randn(4, 6, seed=seed + 2, dtype=torch.float64).requires_grad_()
    return logp, ref_logp, rewards, mask


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("clamps", [(None, None), ((-1.0, 1.0), (-0.5, 0.6))])
def test_kl_penalty_gradcheck(estimator, clamps):
    # Random δ lies far (>> the finite-difference step) from the clamp bounds and from 0 (abs).
    logp, ref_logp, rewards, mask = kl_inputs(seed=26)
    log_ratio_clamp, clamp = clamps

    def op(lp, rl, rw):
        out = reward.kl_penalty(
            lp,
            rl,
            mask,
            estimator=estimator,
            log_ratio_clamp=log_ratio_clamp,
            clamp=clamp,
            reward=rw,
            beta=0.7,
        )
        return out.kl, out.shaped, out.row_sum

    assert torch.autograd.gradcheck(op, (logp, ref_logp, rewards))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_kl_penalty_gradient_matches_reference_and_ignores_nan_padding(estimator):
    logp, ref_logp, rewards, mask = kl_inputs(seed=27)
    with torch.no_grad():
        logp.masked_fill_(~mask, NAN)
        ref_logp.masked_fill_(~mask, NAN)
    upstream = [randn(4, 6, seed=28, dtype=torch.float64), randn(4, 6, seed=29, dtype=torch.float64)]
    row_upstream = randn(4, seed=30, dtype=torch.float64)
    clamps = {"log_ratio_clamp": (-1.0, 1.0), "clamp": (-0.5, 0.6)}
    got = reward.kl_penalty(logp, ref_logp, mask, estimator=estimator, reward=rewards, beta=0.7, **clamps)
    kl, shaped, row_sum, _ = ref.kl_penalty(
        logp, ref_logp, mask, estimator, clamps["log_ratio_clamp"], clamps["clamp"], rewards, 0.7
    )
    grads = torch.autograd.grad(
        (got.kl, got.shaped, got.row_sum), (logp, ref_logp, rewards), [*upstream, row_upstream]
    )
    expected = torch.autograd.grad(
        (kl, shaped, row_sum), (logp, ref_logp, rewards), [*upstream, row_upstream]
    )
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    assert (grads[0][~mask] == 0).all() and (grads[1][~mask] == 0).all()


def test_kl_penalty_gradient_dtype_follows_input():
    logp = randn(2, 5, seed=31, dtype=torch.bfloat16).requires_grad_()
    ref_logp = randn(2, 5, seed=32, dtype=torch.bfloat16)
    out = reward.kl_penalty(logp, ref_logp, estimator="k2")
    assert out.kl.dtype == torch.float32
    out.kl.sum().backward()
    assert logp.grad.dtype == torch.bfloat16
    expected = (logp.detach().float() - ref_logp.float()).bfloat16()
    torch.testing.assert_close(logp.grad, expected, rtol=1e-2, atol=1e-2)


# -------------------------------------------------------------------------------- group_advantage

# Unsorted, ragged, negative and huge ids; 99 and -(2**62) are singletons.
GROUP_IDS = torch.tensor(
    [7, -3, 2**62, 7, 99, -3, 7, 2**62, -(2**62), -3, 7, 5, 5, 5, 5, 5, 5, 5, -3, 2**62, 7, 0, 0],
    dtype=torch.int64,
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", GROUP_MODES)
@pytest.mark.parametrize("std", ["unbiased", "biased"])
def test_group_advantage_matches_reference(dtype, mode, std):
    scores = randn(GROUP_IDS.numel(), seed=40, dtype=dtype) * 3 + 1
    got = reward.group_advantage(scores, GROUP_IDS, mode=mode, std=std)
    check_close(got, ref.group_advantage(scores, GROUP_IDS, mode, std), dtype)
    if dtype == torch.float32:  # the vectorised baseline agrees with the dict loop
        baseline = ref.group_advantage_index_add(scores, GROUP_IDS, mode, std)
        check_close(baseline, got, dtype)


@pytest.mark.parametrize("singleton", ["zero", "raw"])
@pytest.mark.parametrize("mode", GROUP_MODES)
def test_group_advantage_singleton_policies(singleton, mode):
    scores = torch.tensor([3.0, 1.0, 2.0, -4.0], dtype=torch.float64)
    ids = torch.tensor([10, 20, 20, 30])
    got = reward.group_advantage(scores, ids, mode=mode, singleton=singleton)
    lone = [3.0, -4.0] if singleton == "raw" else [0.0, 0.0]
    assert got[[0, 3]].tolist() == lone
    check_close(got, ref.group_advantage(scores, ids, mode, singleton=singleton), torch.float64)


def test_group_advantage_singleton_error():
    scores = torch.tensor([3.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="singleton"):
        reward.group_advantage(scores, torch.tensor([10, 20, 20]), singleton="error")
    got = reward.group_advantage(scores, torch.tensor([20, 20, 20]), singleton="error")
    check_close(got, ref.group_advantage(scores, torch.tensor([20, 20, 20])), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_group_advantage_near_constant_group(dtype):
    scores = torch.tensor([1.0, 1.00001], dtype=dtype)
    ids = torch.tensor([4, 4])
    got = reward.group_advantage(scores, ids, eps=1e-6)
    assert got.tolist() == pytest.approx([-0.6196, 0.6196], abs=2e-4)
    check_close(got, ref.group_advantage(scores, ids, eps=1e-6), dtype)
    for eps in (0.0, 1e-12):  # eps -> 0: ±1/√2 for any two distinct scores
        assert reward.group_advantage(scores, ids, eps=eps).tolist() == pytest.approx(
            [-(0.5**0.5), 0.5**0.5], abs=1e-5
        )


def test_group_advantage_stays_bounded():
    # A group of n has |(x − μ)/σ| ≤ (n − 1)/√n for the unbiased σ.
    scores = torch.tensor([0.0] + [0.95] * 7)
    got = reward.group_advantage(scores, torch.zeros(8, dtype=torch.int64))
    bound = 7 / 8**0.5
    assert got.abs().max().item() <= bound * (1 + 1e-6)
    assert got.tolist() == pytest.approx([-bound] + [1 / 8**0.5] * 7, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_group_advantage_large_offset(dtype):
    # 1e6 + noise: Σx² − (Σx)²/n cancels catastrophically (in fp32 even for noise 1000);
    # centred two-pass statistics stay accurate.
    noise = 1e-3 if dtype == torch.float64 else 1000.0
    scores = (1e6 + randn(16, seed=41, dtype=torch.float64) * noise).to(dtype)
    ids = torch.arange(16) % 2
    for mode in GROUP_MODES:
        got = reward.group_advantage(scores, ids, mode=mode)
        expected = ref.group_advantage(scores, ids, mode)
        scale = 1.0 if mode == "grpo" else noise
        tol = 1e-6 if dtype == torch.float64 else 5e-3
        torch.testing.assert_close(got.double() / scale, expected / scale, rtol=0, atol=tol)


def test_group_advantage_nan_poisons_only_its_group():
    scores = torch.tensor([1.0, NAN, 3.0, 4.0, 6.0])
    got = reward.group_advantage(scores, torch.tensor([0, 0, 0, 1, 1]))
    assert torch.isnan(got[:3]).all()
    assert got[3:].tolist() == pytest.approx([-(0.5**0.5), 0.5**0.5], abs=1e-5)


def test_group_advantage_int32_ids_and_token_broadcast():
    scores = randn(6, seed=42)
    ids = torch.tensor([3, 1, 3, 1, 3, 2], dtype=torch.int32)
    got = reward.group_advantage(scores, ids, mode="rloo")
    check_close(got, ref.group_advantage(scores, ids.long(), "rloo"), torch.float32)
    mask = ragged_mask(6, 9, seed=43)
    tokens = reward.group_advantage(scores, ids, mode="rloo", mask=mask)
    assert tokens.shape == (6, 9) and tokens.dtype == torch.float32
    assert torch.equal(tokens, torch.where(mask, got[:, None], 0))


def test_group_advantage_deterministic_and_non_contiguous():
    scores = randn(200, seed=44)[::2]
    ids = (torch.randint(-50, 50, (200,), generator=gen(45)) * 2**40)[::2]
    first = reward.group_advantage(scores, ids)
    assert torch.equal(first, reward.group_advantage(scores, ids))
    check_close(first, ref.group_advantage(scores, ids), torch.float32)


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.sampled_from([0, -1, 3, 2**40, -(2**63), 2**63 - 1]), min_size=1, max_size=30),
    mode=st.sampled_from(GROUP_MODES),
    std=st.sampled_from(["unbiased", "biased"]),
    singleton=st.sampled_from(["zero", "raw"]),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    seed=st.integers(0, 2**31 - 1),
)
def test_group_advantage_property(ids, mode, std, singleton, dtype, seed):
    scores = torch.randn(len(ids), generator=gen(seed), dtype=torch.float64).to(dtype)
    group_ids = torch.tensor(ids, dtype=torch.int64)
    got = reward.group_advantage(scores, group_ids, mode=mode, std=std, singleton=singleton)
    check_close(got, ref.group_advantage(scores, group_ids, mode, std, singleton=singleton), dtype)


# ------------------------------------------------------------------ segment_scatter / last token


@pytest.mark.parametrize("dtype", DTYPES)
def test_place_at_last_token(dtype):
    mask = ragged_mask(6, 11, seed=50)
    scores = randn(6, seed=51, dtype=dtype)
    scores[1] = NAN  # row 1 has no valid token: stays all 0
    got = reward.place_at_last_token(scores, mask)
    check_close(got, ref.place_at_last_token(scores, mask), dtype)
    assert (got[1] == 0).all()


def test_place_at_last_token_hand_computed():
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]], dtype=torch.uint8)
    got = reward.place_at_last_token(torch.tensor([1.0, 2.0, 3.0, 4.0]), mask)
    assert got.tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 3], [4, 0, 0, 0]]


def segment_inputs(dtype: torch.dtype, index_dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    counts = [3, 0, 4, 1, 2, 5]  # row 1 has no segments, row 5's mask is empty
    values = randn(sum(counts), seed=52, dtype=dtype)
    row_ptr = torch.tensor([0, *torch.tensor(counts).cumsum(0).tolist()], dtype=index_dtype)
    positions = torch.tensor([4, 9, 2, 0, 4, 4, 30, 12, 5, 5, 1, 0, 3, 2, 8], dtype=index_dtype)
    mask = padded_mask([12, 12, 5, 12, 3, 0], 12)
    mask[0, 4] = False  # an interior hole changes neither row 0's length nor a position inside it
    return values, row_ptr, positions, mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["add", "last"])
@pytest.mark.parametrize("out_of_range", ["clamp", "drop"])
@pytest.mark.parametrize("with_mask", [True, False])
def test_segment_scatter_matches_reference(dtype, mode, out_of_range, with_mask):
    values, row_ptr, positions, mask = segment_inputs(dtype, torch.int64)
    mask = mask if with_mask else None
    got = reward.segment_scatter(
        values, row_ptr, positions, 12, mask=mask, mode=mode, out_of_range=out_of_range
    )
    check_close(got, ref.segment_scatter(values, row_ptr, positions, 12, mask, mode, out_of_range), dtype)


def test_segment_scatter_hand_computed():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    row_ptr = torch.tensor([0, 3, 4, 5], dtype=torch.int32)
    positions = torch.tensor([0, 9, 1, 2, 3], dtype=torch.int32)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    add = reward.segment_scatter(values, row_ptr, positions, 4, mask=mask)
    assert add.tolist() == [[1, 5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 5]]
    last = reward.segment_scatter(values, row_ptr, positions, 4, mask=mask, mode="last")
    assert last.tolist() == [[1, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 5]]
    drop = reward.segment_scatter(values, row_ptr, positions, 4, mask=mask, out_of_range="drop")
    assert drop.tolist() == [[1, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 5]]
    no_mask = reward.segment_scatter(values, row_ptr, positions, 4)
    assert no_mask.tolist() == [[1, 3, 0, 2], [0, 0, 4, 0], [0, 0, 0, 5]]


def test_segment_scatter_no_segments():
    got = reward.segment_scatter(
        torch.zeros(0), torch.tensor([0, 0, 0]), torch.zeros(0, dtype=torch.int64), 5
    )
    assert got.shape == (2, 5) and (got == 0).all()


@pytest.mark.parametrize(
    ("row_ptr", "positions"),
    [
        ([0, 2, 3], [0, -1, 2]),  # negative position
        ([1, 2, 3], [0, 1, 2]),  # does not start at 0
        ([0, 2, 1, 3], [0, 1, 2]),  # decreasing
        ([0, 2, 2], [0, 1, 2]),  # does not end at nnz
    ],
)
@pytest.mark.parametrize("check", [False, True])
def test_segment_scatter_malformed_on_cpu(row_ptr, positions, check):
    with pytest.raises(ValueError):
        reward.segment_scatter(torch.ones(3), torch.tensor(row_ptr), torch.tensor(positions), 4, check=check)


# -------------------------------------------------------------------------------- combine_rewards


def combine_inputs(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    rewards = randn(3, *shape, seed=60, dtype=torch.float64) * 2 + 1
    rewards[0][torch.rand(shape, generator=gen(61)) < 0.4] = NAN
    rewards[1][torch.rand(shape, generator=gen(62)) < 0.4] = NAN
    rewards[:, 1] = NAN  # entry / row 1: no source applies
    rewards[2, 2] = NAN
    return rewards.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9,), (5, 7)])
@pytest.mark.parametrize("normalize", [None, "zscore", "zscore_stats", "affine"])
@pytest.mark.parametrize("renormalize", [False, True])
def test_combine_rewards_matches_reference(dtype, shape, normalize, renormalize):
    rewards = combine_inputs(shape, dtype)
    weights = [0.5, 2.0, 1.0]
    stats = (
        torch.tensor([[0.3, 1.5], [-1.0, 0.5], [2.0, 3.0]])
        if normalize in ("zscore_stats", "affine")
        else None
    )
    normalize = "zscore" if normalize == "zscore_stats" else normalize
    got = reward.combine_rewards(rewards, weights, normalize=normalize, stats=stats, renormalize=renormalize)
    expected, valid = ref.combine_rewards(rewards, weights, normalize, stats, 1e-8, renormalize)
    check_close(got.reward, expected, dtype)
    assert got.valid.dtype == torch.bool and torch.equal(got.valid, valid)
    assert (got.reward[1] == 0).all() and not got.valid[1].any()


def test_combine_rewards_hand_computed():
    rewards = torch.tensor([[1.0, NAN, 3.0, NAN], [NAN, NAN, 5.0, 2.0]])
    got = reward.combine_rewards(rewards, torch.tensor([0.5, 2.0]))
    assert got.reward.tolist() == [0.5, 0.0, 11.5, 4.0]
    assert got.valid.tolist() == [True, False, True, True]
    mean = reward.combine_rewards(rewards, [0.5, 2.0], renormalize=True)
    assert mean.reward.tolist() == pytest.approx([1.0, 0.0, 4.6, 2.0])
    # zscore over each source's own non-NaN entries: source 0 (1, 3) -> (−1, 1); source 1 (5, 2) -> (1, −1).
    z = reward.combine_rewards(rewards, [1.0, 1.0], normalize="zscore", eps=0.0)
    assert z.reward.tolist() == pytest.approx([-1.0, 0.0, 2.0, -1.0], abs=1e-6)


def test_combine_rewards_all_nan_source_and_batch():
    rewards = torch.tensor([[NAN, NAN, NAN], [1.0, 2.0, 3.0]], dtype=torch.float64)
    got = reward.combine_rewards(rewards, [1.0, 1.0], normalize="zscore")
    check_close(got.reward, ref.combine_rewards(rewards, [1.0, 1.0], "zscore")[0], torch.float64)
    assert got.valid.all()
    everything_nan = reward.combine_rewards(torch.full((2, 4), NAN), [1.0, 1.0], normalize="zscore")
    assert (everything_nan.reward == 0).all() and not everything_nan.valid.any()


# ---------------------------------------------------------------------------------- masked_whiten


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scope", ["batch", "row"])
@pytest.mark.parametrize("shift_mean", [True, False])
@pytest.mark.parametrize("unbiased", [True, False])
def test_masked_whiten_matches_reference(dtype, scope, shift_mean, unbiased):
    mask = ragged_mask(6, 19, seed=70)
    x = nan_padded(randn(6, 19, seed=71, dtype=dtype) * 3 + 2, mask)
    got = reward.masked_whiten(x, mask, shift_mean=shift_mean, unbiased=unbiased, scope=scope)
    expected = ref.masked_whiten(x, mask, shift_mean, unbiased, 1e-8, scope)
    check_close(got.values, expected, dtype)
    assert_zero_outside(got.values, mask)
    stats = ref.masked_whiten_stats(x, mask, scope)
    tol = 1e-12 if dtype == torch.float64 else 1e-7  # float64 sums; inputs other than float64 may add in fp32
    assert got.stats.dtype == torch.float64
    torch.testing.assert_close(got.stats, stats, rtol=tol, atol=tol)
    torch.testing.assert_close(reward.masked_whiten_stats(x, mask, scope=scope), stats, rtol=tol, atol=tol)


@pytest.mark.parametrize("scope", ["batch", "row"])
def test_masked_whiten_with_all_reduced_stats(scope):
    mask = ragged_mask(8, 21, seed=72)
    x = randn(8, 21, seed=73, dtype=torch.float64) + 5
    if scope == "batch":  # two ranks hold half the rows each
        parts = [reward.masked_whiten_stats(x[:4], mask[:4]), reward.masked_whiten_stats(x[4:], mask[4:])]
    else:  # two ranks hold half the tokens of each row
        parts = [
            reward.masked_whiten_stats(x[:, :10], mask[:, :10], scope="row"),
            reward.masked_whiten_stats(x[:, 10:], mask[:, 10:], scope="row"),
        ]
    stats = parts[0] + parts[1]
    torch.testing.assert_close(
        stats, reward.masked_whiten_stats(x, mask, scope=scope), rtol=1e-12, atol=1e-12
    )
    whole = reward.masked_whiten(x, mask, scope=scope)
    reduced = reward.masked_whiten(x, mask, scope=scope, stats=stats)
    torch.testing.assert_close(reduced.values, whole.values, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(
        reduced.values, ref.masked_whiten(x, mask, scope=scope, stats=stats), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(reduced.stats, stats)


def test_masked_whiten_empty_and_single_entry_scopes():
    x = torch.tensor([[NAN, NAN, NAN], [NAN, 4.0, NAN], [1.0, 2.0, 6.0]], dtype=torch.float64)
    mask = ~torch.isnan(x)
    rows = reward.masked_whiten(x, mask, scope="row")
    assert rows.values[:2].tolist() == [[0, 0, 0], [0, 0, 0]]  # one entry, unbiased: variance 0, x − μ = 0
    assert rows.values[2].tolist() == pytest.approx([-2 / 7**0.5, -1 / 7**0.5, 3 / 7**0.5], rel=1e-8)
    assert rows.stats.tolist() == [[0, 0, 0], [1, 4, 16], [3, 9, 41]]
    kept = reward.masked_whiten(x, mask, scope="row", shift_mean=False, unbiased=True)
    assert kept.values[1].tolist() == [0.0, 4.0, 0.0]  # one entry: variance 0, the mean added back
    empty = reward.masked_whiten(x, torch.zeros_like(mask))
    assert (empty.values == 0).all() and empty.stats.tolist() == [0, 0, 0]


def test_masked_whiten_without_mask_and_non_contiguous():
    x = randn(5, 40, seed=74, dtype=torch.float64)[:, ::2]
    got = reward.masked_whiten(x)
    check_close(got.values, ref.masked_whiten(x, None), torch.float64)
    mask = ragged_mask(5, 40, seed=75)[:, 1::2]
    check_close(reward.masked_whiten(x, mask).values, ref.masked_whiten(x, mask), torch.float64)


# -------------------------------------------------------------------------------- rlhf_advantages


def rlhf_inputs(dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    mask = ragged_mask(6, 17, seed=seed)
    return {
        "logp": nan_padded(randn(6, 17, seed=seed + 1, dtype=dtype) * 0.5, mask),
        "ref_logp": nan_padded(randn(6, 17, seed=seed + 2, dtype=dtype) * 0.5, mask),
        "values": nan_padded(randn(6, 17, seed=seed + 3, dtype=dtype), mask),
        "mask": mask,
        "scores": randn(6, seed=seed + 4, dtype=dtype),
        "token_rewards": nan_padded(randn(6, 17, seed=seed + 5, dtype=dtype) * 0.1, mask),
        "bootstrap": randn(6, seed=seed + 6, dtype=dtype),
    }


def composed(inputs: dict[str, torch.Tensor], scores, token_rewards, bootstrap, options) -> tuple:
    """rlhf_advantages from the single public ops."""
    mask = inputs["mask"]
    rewards = torch.zeros(mask.shape, dtype=out_dtype(inputs["logp"].dtype))
    if scores is not None:
        rewards = rewards + reward.place_at_last_token(scores, mask)
    if token_rewards is not None:
        rewards = rewards + torch.where(mask, token_rewards, 0)
    kl = reward.kl_penalty(
        inputs["logp"], inputs["ref_logp"], mask, estimator=options["estimator"], clamp=options["clamp"],
        log_ratio_clamp=options["log_ratio_clamp"], reward=rewards, beta=options["beta"],
    )  # fmt: skip
    shaped = torch.where(mask, kl.shaped, 0)
    advantages, returns = reward.gae(
        shaped, inputs["values"], mask, gamma=options["gamma"], lam=options["lam"],
        mask_mode=options["mask_mode"], bootstrap=bootstrap,
    )  # fmt: skip
    if options["whiten"]:
        advantages = reward.masked_whiten(advantages, mask, shift_mean=options["shift_mean"]).values
    return shaped, advantages, returns, kl.row_sum, kl.row_count


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sources", ["scores", "token_rewards", "both"])
@pytest.mark.parametrize("whiten", [True, False])
@pytest.mark.parametrize("mask_mode", ["skip", "zero"])
def test_rlhf_advantages_equals_composition(dtype, sources, whiten, mask_mode):
    inputs = rlhf_inputs(dtype, seed=80)
    scores = inputs["scores"] if sources != "token_rewards" else None
    token_rewards = inputs["token_rewards"] if sources != "scores" else None
    options = {
        "beta": 0.05, "estimator": "k3" if whiten else "k1", "log_ratio_clamp": (-2.0, 2.0),
        "clamp": None if whiten else (-0.5, 0.5), "gamma": 0.99, "lam": 0.9, "mask_mode": mask_mode,
        "whiten": whiten, "shift_mean": mask_mode == "skip",
    }  # fmt: skip
    bootstrap = inputs["bootstrap"] if whiten else None
    got = reward.rlhf_advantages(
        inputs["logp"], inputs["ref_logp"], inputs["values"], inputs["mask"], scores=scores,
        token_rewards=token_rewards, bootstrap=bootstrap, **options,
    )  # fmt: skip
    expected = composed(inputs, scores, token_rewards, bootstrap, options)
    reference = ref.rlhf_advantages(
        inputs["logp"], inputs["ref_logp"], inputs["values"], inputs["mask"], scores=scores,
        token_rewards=token_rewards, bootstrap=bootstrap, **options,
    )  # fmt: skip
    for name, g, e, r in zip(got._fields, got, expected, reference, strict=True):
        if name == "kl_row_count":
            assert g.dtype == torch.int64 and torch.equal(g, e) and torch.equal(g, r)
            continue
        check_close(g, e, dtype)
        check_close(g, r, dtype, 1e-10 if dtype == torch.float64 else 1e-4)
        if g.dim() == 2:
            assert_zero_outside(g, inputs["mask"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rlhf_advantages_half_inputs(dtype):
    inputs = rlhf_inputs(dtype, seed=81)
    got = reward.rlhf_advantages(
        inputs["logp"], inputs["ref_logp"], inputs["values"], inputs["mask"], scores=inputs["scores"],
        token_rewards=inputs["token_rewards"], bootstrap=inputs["bootstrap"], beta=0.1, estimator="k3",
    )  # fmt: skip
    expected = ref.rlhf_advantages(
        inputs["logp"], inputs["ref_logp"], inputs["values"], inputs["mask"], scores=inputs["scores"],
        token_rewards=inputs["token_rewards"], bootstrap=inputs["bootstrap"], beta=0.1, estimator="k3",
    )  # fmt: skip
    for g, e in zip(got[:4], expected[:4], strict=True):
        check_close(g, e, dtype, 1e-4)
    assert torch.equal(got.kl_row_count, expected[4])


def test_rlhf_advantages_without_mask():
    logp, ref_logp, values = (randn(3, 9, seed=s, dtype=torch.float64) for s in (82, 83, 84))
    scores = randn(3, seed=85, dtype=torch.float64)
    got = reward.rlhf_advantages(logp, ref_logp, values, scores=scores, beta=0.1)
    expected = ref.rlhf_advantages(logp, ref_logp, values, scores=scores, beta=0.1)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- dtypes and strides


def test_half_inputs_give_float32_outputs():
    mask = ragged_mask(4, 10, seed=90)
    for dtype in (torch.bfloat16, torch.float16):
        x = randn(4, 10, seed=91, dtype=dtype)
        outputs = [
            *reward.gae(x, x, mask, gamma=1.0, lam=0.9),
            reward.discounted_returns(x, mask, gamma=0.9),
            *reward.kl_penalty(x, x.flip(1), mask, reward=x, beta=0.1)[:3],
            reward.group_advantage(x[:, 0], torch.tensor([0, 0, 1, 1])),
            reward.place_at_last_token(x[:, 0], mask),
            reward.segment_scatter(x[0, :2], torch.tensor([0, 1, 1, 2, 2]), torch.tensor([3, 99]), 10),
            reward.combine_rewards(x[:2], [1.0, 1.0]).reward,
            reward.masked_whiten(x, mask).values,
            *reward.rlhf_advantages(x, x.flip(1), x, mask, scores=x[:, 0], beta=0.1)[:4],
        ]
        for out in outputs:
            assert out.dtype == torch.float32


def test_non_contiguous_inputs():
    mask_full = ragged_mask(5, 30, seed=92)
    mask = mask_full[:, ::2]
    r, v = (
        randn(5, 30, seed=93, dtype=torch.float64)[:, ::2],
        randn(30, 5, seed=94, dtype=torch.float64).t()[:, ::2],
    )
    assert not r.is_contiguous() and not v.is_contiguous() and not mask.is_contiguous()
    for mode in ("skip", "zero"):
        got = reward.gae(r, v, mask, gamma=0.9, lam=0.95, mask_mode=mode)
        for g, e in zip(got, ref.gae(r, v, mask, 0.9, 0.95, mode), strict=True):
            check_close(g, e, torch.float64)
    kl = reward.kl_penalty(r, v, mask, estimator="k3", reward=v, beta=0.2)
    expected = ref.kl_penalty(r, v, mask, "k3", reward=v, beta=0.2)
    check_close(kl.kl, expected[0], torch.float64)
    check_close(kl.shaped, expected[1], torch.float64)
    check_close(
        reward.place_at_last_token(r[:, 3], mask), ref.place_at_last_token(r[:, 3], mask), torch.float64
    )
    check_close(reward.masked_whiten(r, mask).values, ref.masked_whiten(r, mask), torch.float64)
    sources = randn(4, 3, seed=95, dtype=torch.float64).t()  # [3, 4], strides (1, 3)
    check_close(
        reward.combine_rewards(sources, torch.tensor([1.0, 0.0, 3.0, 0.0, 1.0])[::2]).reward,
        ref.combine_rewards(sources, [1.0, 3.0, 1.0])[0],
        torch.float64,
    )


def test_mixed_dtypes_are_upcast():
    mask = ragged_mask(4, 10, seed=96)
    r32, v64 = randn(4, 10, seed=97), randn(4, 10, seed=98, dtype=torch.float64)
    got = reward.gae(r32, v64, mask, gamma=0.9, lam=0.8)
    for g, e in zip(got, ref.gae(r32, v64, mask, 0.9, 0.8), strict=True):
        check_close(g, e, torch.float64)
    lp_bf16, ref32 = randn(4, 10, seed=99, dtype=torch.bfloat16), randn(4, 10, seed=100)
    kl = reward.kl_penalty(lp_bf16, ref32, mask, estimator="k3", reward=ref32.half(), beta=0.5)
    expected = ref.kl_penalty(lp_bf16, ref32, mask, "k3", reward=ref32.half(), beta=0.5)
    for g, e in zip(kl[:3], expected[:3], strict=True):
        check_close(g, e, torch.float32)


def test_kl_penalty_float64_reward_with_float32_logp():
    # Run in a child process: a kernel writing float64 into float32 outputs corrupts the heap.
    code = textwrap.dedent("""
        import torch
        from feedbackkit import reward
        from feedbackkit.reference import reward as ref
        logp, ref_logp = torch.randn(3, 40), torch.randn(3, 40)
        rewards = torch.randn(3, 40, dtype=torch.float64)
        for _ in range(5):
            got = reward.kl_penalty(logp, ref_logp, estimator="k2", reward=rewards, beta=0.5)
        expected = ref.kl_penalty(logp, ref_logp, None, "k2", reward=rewards, beta=0.5)
        for g, e in zip(got[:3], expected[:3]):
            torch.testing.assert_close(g.double(), e, rtol=1e-6, atol=1e-6)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_no_rows():
    empty, mask = torch.zeros(0, 7), torch.zeros(0, 7, dtype=torch.bool)
    assert all(t.shape == (0, 7) for t in reward.gae(empty, empty, mask, gamma=0.9, lam=0.9))
    assert reward.kl_penalty(empty, empty, mask).row_sum.shape == (0,)
    assert reward.group_advantage(torch.zeros(0), torch.zeros(0, dtype=torch.int64)).shape == (0,)
    assert reward.place_at_last_token(torch.zeros(0), mask).shape == (0, 7)
    assert reward.masked_whiten(empty, mask).values.shape == (0, 7)
    assert reward.rlhf_advantages(
        empty, empty, empty, mask, scores=torch.zeros(0), beta=0.1
    ).advantages.shape == (
        0,
        7,
    )


# ------------------------------------------------------------------------------------ bad input


def bad(function, **arguments):
    """A call of `function` with valid defaults of its kind, overridden by `arguments`."""
    defaults = {
        reward.gae: {"rewards": torch.zeros(2, 3), "values": torch.zeros(2, 3), "gamma": 0.9, "lam": 0.9},
        reward.kl_penalty: {"logp": torch.zeros(2, 3), "ref_logp": torch.zeros(2, 3)},
        reward.group_advantage: {"scores": torch.zeros(4), "group_ids": torch.tensor([0, 0, 1, 1])},
        reward.combine_rewards: {"rewards": torch.zeros(2, 3), "weights": [1.0, 1.0]},
        reward.masked_whiten: {"x": torch.zeros(2, 3)},
        reward.segment_scatter: {"values": torch.ones(2), "row_ptr": torch.tensor([0, 1, 2]),
                                 "positions": torch.tensor([0, 1]), "length": 3},
        reward.rlhf_advantages: {"logp": torch.zeros(2, 3), "ref_logp": torch.zeros(2, 3),
                                 "values": torch.zeros(2, 3), "scores": torch.zeros(2), "beta": 0.1},
    }[function]  # fmt: skip
    if "mask" in function.__code__.co_varnames and function is not reward.group_advantage:
        defaults["mask"] = torch.ones(2, 3, dtype=torch.bool)
    return lambda: function(**{**defaults, **arguments})


bad_gae = functools.partial(bad, reward.gae)
bad_kl = functools.partial(bad, reward.kl_penalty)
bad_group = functools.partial(bad, reward.group_advantage)
bad_combine = functools.partial(bad, reward.combine_rewards)
bad_whiten = functools.partial(bad, reward.masked_whiten)
bad_segment = functools.partial(bad, reward.segment_scatter)
bad_rlhf = functools.partial(bad, reward.rlhf_advantages)


BAD_INPUTS = [
    (bad_gae(values=torch.zeros(2, 4)), "values"),
    (bad_gae(rewards=torch.zeros(6)), "rewards"),
    (bad_gae(mask=torch.ones(2, 3)), "mask"),
    (bad_gae(mask=torch.ones(3, 3, dtype=torch.bool)), "mask"),
    (bad_gae(rewards=torch.zeros(2, 3, dtype=torch.int64)), "rewards"),
    (bad_gae(gamma=1.5), "gamma"),
    (bad_gae(gamma=-0.1), "gamma"),
    (bad_gae(gamma=NAN), "gamma"),
    (bad_gae(lam=-0.1), "lam"),
    (bad_gae(lam=1.01), "lam"),
    (bad_gae(mask_mode="mask"), "mask_mode"),
    (bad_gae(bootstrap=torch.zeros(3)), "bootstrap"),
    (lambda: reward.discounted_returns(torch.zeros(2, 3), gamma=2.0), "gamma"),
    (bad_kl(ref_logp=torch.zeros(2, 4)), "ref_logp"),
    (bad_kl(mask=torch.ones(2, 3)), "mask"),
    (bad_kl(estimator="k4"), "estimator"),
    (bad_kl(reward=torch.zeros(2, 4)), "reward"),
    (bad_group(group_ids=torch.tensor([0, 0, 1])), "group_ids"),
    (bad_group(group_ids=torch.tensor([0.0, 0.0, 1.0, 1.0])), "group_ids"),
    (bad_group(scores=torch.zeros(2, 2)), "scores"),
    (bad_group(mode="ppo"), "mode"),
    (bad_group(std="sample"), "std"),
    (bad_group(singleton="drop"), "singleton"),
    (bad_combine(weights=[1.0, 1.0, 1.0]), "weights"),
    (bad_combine(normalize="minmax"), "normalize"),
    (bad_combine(normalize="affine"), "stats"),
    (bad_combine(normalize="zscore", stats=torch.zeros(3, 2)), "stats"),
    (bad_whiten(mask=torch.ones(2, 4, dtype=torch.bool)), "mask"),
    (bad_whiten(mask=torch.ones(2, 3)), "mask"),
    (bad_whiten(scope="global"), "scope"),
    (bad_whiten(stats=torch.zeros(2)), "stats"),
    (bad_segment(positions=torch.tensor([0, 1, 2])), "positions"),
    (bad_segment(row_ptr=torch.tensor([0.0, 1.0, 2.0])), "row_ptr"),
    (bad_segment(mode="max"), "mode"),
    (bad_segment(out_of_range="wrap"), "out_of_range"),
    (bad_segment(mask=torch.ones(2, 4, dtype=torch.bool)), "mask"),
    (lambda: reward.place_at_last_token(torch.zeros(3), torch.ones(2, 3, dtype=torch.bool)), "scores"),
    (lambda: reward.place_at_last_token(torch.zeros(2), torch.ones(2, 3)), "mask"),
    (bad_rlhf(scores=None), "scores"),
    (bad_rlhf(values=torch.zeros(2, 4)), "values"),
    (bad_rlhf(estimator="kl"), "estimator"),
    (bad_rlhf(gamma=1.5), "gamma"),
    (bad_rlhf(token_rewards=torch.zeros(3, 3)), "token_rewards"),
]


@pytest.mark.parametrize(("call", "argument"), BAD_INPUTS)
def test_bad_input_raises_clear_error(call, argument):
    with pytest.raises(feedbackkit.ArgumentError) as info:
        call()
    assert argument in str(info.value)


# ------------------------------------------------------------------ torch.library and compile


def op_cases() -> list[tuple[str, tuple]]:
    mask = ragged_mask(4, 9, seed=100)
    x, y, z = (randn(4, 9, seed=s) for s in (101, 102, 103))
    boot = randn(4, seed=104)
    lp, rl, rw = (t.double().requires_grad_() for t in (x, y, z))
    bounds, none = reward_ops.bounds((-1.0, 1.0)), reward_ops.bounds(None)
    ids = torch.tensor([5, -2, 5, 2**40])
    sources, sources_3d = combine_inputs((4,), torch.float32), combine_inputs((4, 5), torch.float64)
    row_ptr, positions = torch.tensor([0, 2, 2, 4, 5]), torch.tensor([1, 3, 20, 0, 2])
    scores64 = randn(4, seed=106, dtype=torch.float64)
    row_stats = torch.tensor([[5.0, 1.0, 9.0]] * 4, dtype=torch.float64)
    return [
        ("segment_scatter", (randn(5, seed=105), row_ptr, positions, 9, mask, "add", "clamp")),
        ("segment_scatter", (randn(5, seed=105), row_ptr.int(), positions.int(), 9, None, "last", "drop")),
        ("place_at_last_token", (boot, mask)),
        ("combine_rewards", (sources, reward_ops.as_weights([1.0, 2.0, 0.5], sources), "zscore", None, 1e-8,
                             True)),
        ("combine_rewards", (sources_3d, reward_ops.as_weights(torch.tensor([1.0, 2.0, 0.5]), sources_3d),
                             "affine", torch.ones(3, 2), 1e-8, False)),
        ("kl_penalty", (lp, rl, mask, rw, "k3", *bounds, *none, 0.1)),
        ("kl_penalty", (x.requires_grad_(), y, None, None, "abs", *none, *bounds, 0.0)),
        ("gae", (x.detach(), y, mask, boot, 0.99, 0.95, "skip")),
        ("gae", (x.detach().bfloat16(), None, mask.to(torch.uint8), None, 0.5, 1.0, "zero")),
        ("group_advantage", (randn(4, seed=106), ids, "grpo", "unbiased", 1e-6, "zero")),
        ("group_advantage", (scores64, ids.int(), "rloo", "biased", 1e-6, "raw")),
        ("masked_whiten", (x.detach(), mask, None, True, True, 1e-8, "batch")),
        ("masked_whiten", (x.detach(), mask, row_stats, False, False, 1e-8, "row")),
        ("masked_whiten_stats", (x.detach(), mask, "row")),
        ("masked_whiten_stats", (x.detach(), None, "batch")),
        ("rlhf_advantages", (x.detach(), y, z, mask, boot, None, boot, "k1", *bounds, *none, 0.1, 0.99, 0.95,
                             "skip", True, True)),
        ("rlhf_advantages", (x.detach(), y, z, mask, None, z, None, "k2", *none, *none, 0.1, 1.0, 1.0,
                             "zero", False, False)),
    ]  # fmt: skip


OP_CASES = op_cases()


@pytest.mark.parametrize(("name", "args"), OP_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OP_CASES)])
def test_opcheck(name, args):
    torch.library.opcheck(getattr(torch.ops.feedbackkit, name).default, args)


def test_opcheck_covers_every_op_of_the_family():
    family = {
        "segment_scatter", "place_at_last_token", "combine_rewards", "kl_penalty", "gae", "group_advantage",
        "masked_whiten", "masked_whiten_stats", "rlhf_advantages",
    }  # fmt: skip
    assert family <= {name for name, _ in OP_CASES}
    for name in family:
        assert hasattr(torch.ops.feedbackkit, name), name


def test_torch_compile_fullgraph():
    mask = ragged_mask(4, 12, seed=110)
    logp = randn(4, 12, seed=111).requires_grad_()
    ref_logp, values = randn(4, 12, seed=112), randn(4, 12, seed=113)
    scores, ids = randn(4, seed=114), torch.tensor([3, 9, 3, 9])

    def pipeline(logp, ref_logp, values, mask, scores, ids):
        placed = reward.place_at_last_token(scores, mask)
        placed = placed + reward.segment_scatter(scores, torch.tensor([0, 1, 2, 3, 4]), ids, 12, mask=mask)
        mix = reward.combine_rewards(
            torch.stack([placed, values]), torch.tensor([1.0, 0.1]), normalize="zscore"
        )
        kl = reward.kl_penalty(logp, ref_logp, mask, estimator="k3", reward=mix.reward, beta=0.1)
        adv = reward.gae(kl.shaped.detach(), values, mask, gamma=0.99, lam=0.95)
        whitened = reward.masked_whiten(
            adv.advantages, mask, stats=reward.masked_whiten_stats(adv.advantages, mask)
        )
        group = reward.group_advantage(scores, ids, mode="rloo", mask=mask)
        fused = reward.rlhf_advantages(logp.detach(), ref_logp, values, mask, scores=scores, beta=0.1)
        returns = reward.discounted_returns(kl.shaped.detach(), mask, gamma=0.9)
        loss = (kl.shaped * whitened.values).sum() + kl.row_sum.sum()
        return loss, group, fused.advantages, returns

    compiled = torch.compile(pipeline, fullgraph=True, backend="inductor")
    got = compiled(logp, ref_logp, values, mask, scores, ids)
    expected = pipeline(logp, ref_logp, values, mask, scores, ids)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
    (grad,) = torch.autograd.grad(got[0], logp)
    (expected_grad,) = torch.autograd.grad(expected[0], logp)
    torch.testing.assert_close(grad, expected_grad)


# ------------------------------------------------------------------------------------------- CUDA


def cuda_cases(device: str) -> dict[str, object]:
    """One output (tuple) per op on `device`, over rows long enough for the parallel paths."""
    lengths = [0, 1, 31, 32, 33, 255, 256, 1000, 4097, 8192]
    mask = padded_mask(lengths, 8192)
    mask[7, 100:600] = False
    x, y, z = (randn(10, 8192, seed=s) for s in (120, 121, 122))
    boot = randn(10, seed=123)
    ids = torch.randint(-(2**40), 2**40, (300,), generator=gen(124)) // 2**36 * 2**36  # 32 huge ids
    on = lambda *ts: [t.to(device) if isinstance(t, torch.Tensor) else t for t in ts]  # noqa: E731
    m, xd, yd, zd, bd = on(mask, x, y, z, boot)
    counts = torch.randint(0, 5, (10,), generator=gen(125))
    row_ptr = torch.tensor([0, *counts.cumsum(0).tolist()])
    positions = torch.randint(0, 9000, (int(counts.sum()),), generator=gen(126))
    return {
        "gae_skip": reward.gae(nan_padded(xd, m), yd, m, gamma=0.999, lam=0.95, bootstrap=bd),
        "gae_zero": reward.gae(xd, yd, m, gamma=1.0, lam=0.95, mask_mode="zero", bootstrap=bd),
        "kl": reward.kl_penalty(xd, yd, m, estimator="k3", log_ratio_clamp=(-5, 5), reward=zd, beta=0.1),
        "group": reward.group_advantage(*on(randn(300, seed=127), ids), mode="grpo"),
        "place": reward.place_at_last_token(bd, m),
        "segment": reward.segment_scatter(*on(randn(len(positions), seed=128), row_ptr, positions), 8192,
                                          mask=m),
        "combine": reward.combine_rewards(*on(combine_inputs((10, 50), torch.float32)), [1.0, 2.0, 3.0],
                                          normalize="zscore"),
        "whiten": reward.masked_whiten(xd, m, scope="row"),
        "rlhf": reward.rlhf_advantages(xd, yd, zd * 0, m, scores=bd, beta=0.1, gamma=1.0, lam=0.95),
    }  # fmt: skip


@pytest.mark.cuda
def test_cuda_matches_cpu():
    cpu, cuda = cuda_cases("cpu"), cuda_cases("cuda")
    for name in cpu:
        got = cuda[name] if isinstance(cuda[name], tuple) else (cuda[name],)
        expected = cpu[name] if isinstance(cpu[name], tuple) else (cpu[name],)
        for g, e in zip(got, expected, strict=True):
            if e is None:
                continue
            assert g.is_cuda and g.dtype == e.dtype, name
            torch.testing.assert_close(g.cpu(), e, rtol=1e-4, atol=1e-4, equal_nan=True, msg=name)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("mask_mode", ["skip", "zero"])
def test_cuda_gae_matches_reference(dtype, mask_mode):
    mask = ragged_mask(6, 3000, seed=130)
    rewards, values = randn(6, 3000, seed=131, dtype=dtype), randn(6, 3000, seed=132, dtype=dtype)
    got = reward.gae(rewards.cuda(), values.cuda(), mask.cuda(), gamma=0.999, lam=0.99, mask_mode=mask_mode)
    for g, e in zip(got, ref.gae(rewards, values, mask, 0.999, 0.99, mask_mode), strict=True):
        check_close(g.cpu(), e, dtype, 1e-9 if dtype == torch.float64 else 1e-4)


@pytest.mark.cuda
def test_cuda_opcheck_and_kl_gradcheck():
    for name, args in OP_CASES:
        moved = tuple(a.detach().cuda().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
                      for a in args)  # fmt: skip
        torch.library.opcheck(getattr(torch.ops.feedbackkit, name).default, moved)
    logp, ref_logp, rewards, mask = (t.detach().cuda().requires_grad_(t.dtype.is_floating_point)
                                     for t in kl_inputs(seed=133))  # fmt: skip
    for estimator in ESTIMATORS:
        op = lambda a, b, c, e=estimator: reward.kl_penalty(a, b, mask, estimator=e, reward=c, beta=0.5)[:3]  # noqa: E731
        assert torch.autograd.gradcheck(op, (logp, ref_logp, rewards))


@pytest.mark.cuda
def test_cuda_group_singleton_error_and_compile():
    with pytest.raises(ValueError, match="singleton"):
        reward.group_advantage(
            torch.ones(3, device="cuda"), torch.tensor([1, 2, 2], device="cuda"), singleton="error"
        )
    mask = ragged_mask(4, 300, seed=134).cuda()
    x = randn(4, 300, seed=135).cuda()
    fn = lambda a, m: reward.masked_whiten(reward.gae(a, a, m, gamma=0.9, lam=0.9).advantages, m).values  # noqa: E731
    torch.testing.assert_close(torch.compile(fn, fullgraph=True)(x, mask), fn(x, mask))


def test_kl_penalty_k3_is_accurate_for_small_log_ratios():
    # exp(-d) + d - 1 evaluated naively in float32 is pure rounding error at |d| ~ 1e-4 (and 5 %
    # off at 1e-3); per-token log ratios of a policy near its reference are that small.
    delta = torch.tensor([[1e-5, -1e-4, 1e-3, -0.01, 0.1249, 0.1251, -0.5, 3.0]])
    got = reward.kl_penalty(delta, torch.zeros_like(delta), estimator="k3").kl.double()
    exact = ref.kl_penalty(delta.double(), torch.zeros(1, 8, dtype=torch.float64), None, estimator="k3")[0]
    torch.testing.assert_close(got, exact, rtol=1e-6, atol=0.0)
    naive = (torch.exp(-delta) + delta - 1).double()
    assert ((naive - exact).abs() / exact).max() > 1e-2  # the test can tell the two apart
