"""torch.library ops of the `reward` family (semantics: feedbackkit.reward).

Each op validates its arguments once (shared by the fake and real impls), allocates outputs with
torch and hands views to the torch-free kernels. Inputs whose float dtypes differ are upcast to
the output dtype first; per-row vectors, weights and stats always travel in the output dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .._checks import FLOAT_DTYPES, INDEX_DTYPES, MASK_DTYPES, ArgumentError, check_choice, check_tensor
from ._library import LIB, launch, optional_view, register, view
from .logprob import stat_dtype

# Codes must match csrc/reward/reward.h.
SEGMENT_MODES = {"add": 0, "last": 1}
OUT_OF_RANGE = ("clamp", "drop")
NORMALIZE = {"none": 0, "zscore": 1, "affine": 2}
ESTIMATORS = {"k1": 0, "abs": 1, "k2": 2, "k3": 3}
MASK_MODES = {"skip": 0, "zero": 1}
GROUP_MODES = {"grpo": 0, "rloo": 1, "dr_grpo": 2, "mean": 2}
STD_KINDS = ("unbiased", "biased")
SINGLETON = {"zero": 0, "raw": 1, "error": 0}
SCOPES = ("batch", "row")

KL_ARGS = "str estimator, float ratio_lo, float ratio_hi, float kl_lo, float kl_hi, float beta"
LIB.define(
    "segment_scatter(Tensor values, Tensor row_ptr, Tensor positions, int length, Tensor? mask, str mode, "
    "str out_of_range) -> Tensor"
)
LIB.define("place_at_last_token(Tensor scores, Tensor mask) -> Tensor")
LIB.define(
    "combine_rewards(Tensor rewards, Tensor weights, str normalize, Tensor? stats, float eps, "
    "bool renormalize) -> (Tensor, Tensor)"
)
LIB.define(
    f"kl_penalty(Tensor logp, Tensor ref_logp, Tensor? mask, Tensor? reward, {KL_ARGS}) "
    "-> (Tensor, Tensor, Tensor, Tensor)"
)
LIB.define(
    f"kl_penalty_backward(Tensor logp, Tensor ref_logp, Tensor? mask, {KL_ARGS}, Tensor? grad_kl, "
    "Tensor? grad_shaped, Tensor? grad_row_sum) -> (Tensor, Tensor)"
)
LIB.define(
    "gae(Tensor rewards, Tensor? values, Tensor? mask, Tensor? bootstrap, float gamma, float lam, "
    "str mask_mode) -> (Tensor, Tensor)"
)
LIB.define(
    "group_advantage(Tensor scores, Tensor group_ids, str mode, str std, float eps, str singleton) -> Tensor"
)
LIB.define("masked_whiten_stats(Tensor x, Tensor? mask, str scope) -> Tensor")
LIB.define(
    "masked_whiten(Tensor x, Tensor? mask, Tensor? stats, bool shift_mean, bool unbiased, float eps, "
    "str scope) -> (Tensor, Tensor)"
)
LIB.define(
    "rlhf_advantages(Tensor logp, Tensor ref_logp, Tensor values, Tensor? mask, Tensor? scores, "
    f"Tensor? token_rewards, Tensor? bootstrap, {KL_ARGS}, float gamma, float lam, str mask_mode, "
    "bool whiten, bool shift_mean) -> (Tensor, Tensor, Tensor, Tensor, Tensor)"
)


# ---- argument checks -------------------------------------------------------------------------


def _tokens(op: str, name: str, t: object, shape: Sequence[int] | None = None) -> torch.Tensor:
    """A [B, T] float tensor, of `shape` when given."""
    t = check_tensor(op, name, t, dtypes=FLOAT_DTYPES, ndim=2, shape="[B, T]")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ArgumentError(f"{op}: '{name}' must have shape {list(shape)}; got {list(t.shape)}")
    return t


def _mask(op: str, mask: object, shape: Sequence[int]) -> None:
    if mask is None:
        return
    mask = check_tensor(op, "mask", mask, dtypes=MASK_DTYPES, ndim=2, shape="[B, T]")
    if tuple(mask.shape) != tuple(shape):
        raise ArgumentError(f"{op}: 'mask' must have shape {list(shape)}; got {list(mask.shape)}")


def _row_vector(op: str, name: str, t: object, batch: int) -> None:
    if t is None:
        return
    t = check_tensor(op, name, t, dtypes=FLOAT_DTYPES, ndim=1, shape="[B]")
    if t.shape[0] != batch:
        raise ArgumentError(
            f"{op}: '{name}' must have shape [{batch}] (one entry per row); got {list(t.shape)}"
        )


def _unit_interval(op: str, name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ArgumentError(f"{op}: '{name}' must be a number in [0, 1]; got {value!r}")


def _same_device(op: str, **tensors: torch.Tensor | None) -> None:
    present = {name: t for name, t in tensors.items() if t is not None}
    first_name, first = next(iter(present.items()))
    for name, t in present.items():
        if t.device != first.device:
            raise ArgumentError(f"{op}: '{name}' is on {t.device} but '{first_name}' is on {first.device}")


def _bounds_ok(op: str, name: str, lo: float, hi: float) -> None:
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ArgumentError(f"{op}: '{name}' must be (low, high) with low <= high; got ({lo}, {hi})")


def bounds(value: tuple[float, float] | None) -> tuple[float, float]:
    """A clamp argument as (low, high); None is unbounded."""
    if value is None:
        return (-math.inf, math.inf)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ArgumentError(f"a clamp must be None or a (low, high) pair of numbers; got {value!r}") from None
    return lo, hi


def _kl_checks(op: str, estimator: str, ratio_lo: float, ratio_hi: float, kl_lo: float, kl_hi: float) -> None:
    check_choice(op, "estimator", estimator, ESTIMATORS)
    _bounds_ok(op, "log_ratio_clamp", ratio_lo, ratio_hi)
    _bounds_ok(op, "clamp", kl_lo, kl_hi)


def _out_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 when one of the token inputs is float64, else float32."""
    wide = any(t is not None and t.dtype == torch.float64 for t in tensors)
    return torch.float64 if wide else torch.float32


def _common(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Token inputs in one dtype: unchanged when they agree, else upcast to the output dtype."""
    if len({t.dtype for t in tensors if t is not None}) <= 1:
        return list(tensors)
    target = _out_dtype(*tensors)
    return [None if t is None else t.to(target) for t in tensors]


def _stat(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(dtype)


# ---- segment_scatter / place_at_last_token ----------------------------------------------------


def _validate_segment_scatter(values, row_ptr, positions, length, mask, mode, out_of_range) -> int:
    op = "segment_scatter"
    check_tensor(op, "values", values, dtypes=FLOAT_DTYPES, ndim=1, shape="[nnz]")
    check_tensor(op, "row_ptr", row_ptr, dtypes=INDEX_DTYPES, ndim=1, shape="[B+1]")
    check_tensor(op, "positions", positions, dtypes=INDEX_DTYPES, ndim=1, shape="[nnz]")
    if positions.shape != values.shape:
        raise ArgumentError(
            f"{op}: 'positions' must have the shape of 'values' {list(values.shape)}; "
            f"got {list(positions.shape)}"
        )
    if row_ptr.shape[0] < 1:
        raise ArgumentError(f"{op}: 'row_ptr' must have B+1 >= 1 entries; got 0")
    if not isinstance(length, int) or length < 0:
        raise ArgumentError(f"{op}: 'length' must be an int >= 0; got {length!r}")
    batch = row_ptr.shape[0] - 1
    _mask(op, mask, (batch, length))
    check_choice(op, "mode", mode, SEGMENT_MODES)
    check_choice(op, "out_of_range", out_of_range, OUT_OF_RANGE)
    _same_device(op, values=values, row_ptr=row_ptr, positions=positions, mask=mask)
    return batch


def check_segment_values(values, row_ptr, positions, length, mask) -> None:
    """Host-side check of row_ptr and positions (synchronises on CUDA)."""
    _validate_segment_scatter(values, row_ptr, positions, length, mask, "add", "clamp")
    from .. import _native

    host_ptr, host_positions = row_ptr.cpu(), positions.cpu()  # alive while the check reads them
    _native.cpu().validate_segments(view(host_ptr), view(host_positions))


def _segment_scatter_fake(values, row_ptr, positions, length, mask, mode, out_of_range):
    batch = _validate_segment_scatter(values, row_ptr, positions, length, mask, mode, out_of_range)
    return values.new_empty((batch, length), dtype=stat_dtype(values.dtype))


def _segment_scatter_impl(values, row_ptr, positions, length, mask, mode, out_of_range):
    out = _segment_scatter_fake(values, row_ptr, positions, length, mask, mode, out_of_range)
    launch(
        "segment_scatter",
        values,
        view(values),
        view(row_ptr),
        view(positions),
        optional_view(mask),
        SEGMENT_MODES[mode],
        out_of_range == "clamp",
        view(out),
    )
    return out


def _validate_place(scores, mask) -> None:
    op = "place_at_last_token"
    check_tensor(op, "scores", scores, dtypes=FLOAT_DTYPES, ndim=1, shape="[B]")
    check_tensor(op, "mask", mask, dtypes=MASK_DTYPES, ndim=2, shape="[B, T]")
    _row_vector(op, "scores", scores, mask.shape[0])
    _same_device(op, scores=scores, mask=mask)


def _place_fake(scores, mask):
    _validate_place(scores, mask)
    return scores.new_empty(tuple(mask.shape), dtype=stat_dtype(scores.dtype))


def _place_impl(scores, mask):
    _validate_place(scores, mask)
    batch, length = mask.shape
    row_ptr = torch.arange(batch + 1, device=scores.device)
    past_the_end = torch.full((batch,), length, dtype=torch.int64, device=scores.device)
    return _segment_scatter_impl(scores, row_ptr, past_the_end, length, mask, "add", "clamp")


# ---- combine_rewards -------------------------------------------------------------------------


def as_weights(weights: torch.Tensor | Sequence[float], rewards: object) -> torch.Tensor:
    """The weights as a tensor on the device of `rewards`, in its output dtype."""
    if not isinstance(rewards, torch.Tensor):
        return weights  # type: ignore[return-value]  # the op reports the bad 'rewards'
    dtype = stat_dtype(rewards.dtype)
    if isinstance(weights, torch.Tensor):
        return weights
    try:
        return torch.tensor([float(w) for w in weights], dtype=dtype, device=rewards.device)
    except (TypeError, ValueError):
        raise ArgumentError(
            f"combine_rewards: 'weights' must be a tensor or a sequence of numbers; got {weights!r}"
        ) from None


def _validate_combine(rewards, weights, normalize, stats, eps) -> None:
    op = "combine_rewards"
    check_tensor(op, "rewards", rewards, dtypes=FLOAT_DTYPES, shape="[K, B] or [K, B, T]")
    if rewards.dim() not in (2, 3):
        raise ArgumentError(f"{op}: 'rewards' must be [K, B] or [K, B, T]; got shape {list(rewards.shape)}")
    sources = rewards.shape[0]
    check_tensor(op, "weights", weights, dtypes=FLOAT_DTYPES, ndim=1, shape="[K]")
    if weights.shape[0] != sources:
        raise ArgumentError(
            f"{op}: 'weights' must have K={sources} entries (one per reward source); got {weights.shape[0]}"
        )
    check_choice(op, "normalize", normalize, NORMALIZE)
    if stats is not None:
        check_tensor(op, "stats", stats, dtypes=FLOAT_DTYPES, ndim=2, shape="[K, 2]")
        if tuple(stats.shape) != (sources, 2):
            raise ArgumentError(f"{op}: 'stats' must have shape [{sources}, 2]; got {list(stats.shape)}")
    if normalize == "affine" and stats is None:
        raise ArgumentError(f"{op}: normalize='affine' needs 'stats' [K, 2] = (scale, shift) per source")
    if not (isinstance(eps, float) and eps >= 0):
        raise ArgumentError(f"{op}: 'eps' must be a float >= 0; got {eps!r}")
    _same_device(op, rewards=rewards, weights=weights, stats=stats)


def _combine_fake(rewards, weights, normalize, stats, eps, renormalize):
    _validate_combine(rewards, weights, normalize, stats, eps)
    shape = tuple(rewards.shape[1:])
    return (
        rewards.new_empty(shape, dtype=stat_dtype(rewards.dtype)),
        rewards.new_empty(shape, dtype=torch.bool),
    )


def _combine_impl(rewards, weights, normalize, stats, eps, renormalize):
    out, valid = _combine_fake(rewards, weights, normalize, stats, eps, renormalize)
    dtype = out.dtype
    # Converted tensors are kept in locals: a view holds only a pointer, not the storage.
    flat = rewards.reshape(rewards.shape[0], -1)
    stats, weights = _stat(stats, dtype), weights.to(dtype)
    if normalize == "zscore" and stats is None:
        stats = rewards.new_empty((rewards.shape[0], 2), dtype=dtype)
        launch("reward_source_stats", rewards, view(flat), view(stats))
    launch(
        "combine_rewards",
        rewards,
        view(flat),
        view(weights),
        optional_view(stats),
        NORMALIZE[normalize],
        eps,
        renormalize,
        view(out.view(-1)),
        view(valid.view(-1)),
    )
    return out, valid


# ---- kl_penalty ------------------------------------------------------------------------------


def _validate_kl(logp, ref_logp, mask, reward, estimator, ratio_lo, ratio_hi, kl_lo, kl_hi, beta) -> None:
    op = "kl_penalty"
    _tokens(op, "logp", logp)
    _tokens(op, "ref_logp", ref_logp, logp.shape)
    _mask(op, mask, logp.shape)
    if reward is not None:
        _tokens(op, "reward", reward, logp.shape)
    _kl_checks(op, estimator, ratio_lo, ratio_hi, kl_lo, kl_hi)
    if not math.isfinite(beta):
        raise ArgumentError(f"{op}: 'beta' must be finite; got {beta!r}")
    _same_device(op, logp=logp, ref_logp=ref_logp, mask=mask, reward=reward)


def _kl_fake(logp, ref_logp, mask, reward, estimator, ratio_lo, ratio_hi, kl_lo, kl_hi, beta):
    _validate_kl(logp, ref_logp, mask, reward, estimator, ratio_lo, ratio_hi, kl_lo, kl_hi, beta)
    dtype = _out_dtype(logp, ref_logp, reward)
    batch = logp.shape[0]
    shaped_shape = tuple(logp.shape) if reward is not None else (0,)
    return (
        logp.new_empty(tuple(logp.shape), dtype=dtype),
        logp.new_empty(shaped_shape, dtype=dtype),
        logp.new_empty((batch,), dtype=dtype),
        logp.new_empty((batch,), dtype=torch.int64),
    )


def _kl_impl(logp, ref_logp, mask, reward, estimator, ratio_lo, ratio_hi, kl_lo, kl_hi, beta):
    kl, shaped, row_sum, row_count = _kl_fake(
        logp, ref_logp, mask, reward, estimator, ratio_lo, ratio_hi, kl_lo, kl_hi, beta
    )
    logp, ref_logp, reward = _common(logp, ref_logp, reward)
    launch(
        "kl_penalty",
        logp,
        view(logp),
        view(ref_logp),
        optional_view(mask),
        optional_view(reward),
        ESTIMATORS[estimator],
        ratio_lo,
        ratio_hi,
        kl_lo,
        kl_hi,
        beta,
        view(kl),
        optional_view(shaped if reward is not None else None),
        view(row_sum),
        view(row_count),
    )
    return kl, shaped, row_sum, row_count


def _kl_backward_fake(logp, ref_logp, mask, estimator, ratio_lo, ratio_hi, kl_lo, kl_hi, beta, *grads):
    return torch.empty_like(logp), torch.empty_like(ref_logp)


def _kl_backward_impl(
    logp,
    ref_logp,
    mask,
    estimator,
    ratio_lo,
    ratio_hi,
    kl_lo,
    kl_hi,
    beta,
    grad_kl,
    grad_shaped,
    grad_row_sum,
):
    original = (logp.dtype, ref_logp.dtype)
    logp, ref_logp = _common(logp, ref_logp)
    grad_logp, grad_ref = torch.empty_like(logp), torch.empty_like(ref_logp)
    dtype = stat_dtype(logp.dtype)
    grad_kl, grad_shaped, grad_row_sum = (_stat(g, dtype) for g in (grad_kl, grad_shaped, grad_row_sum))
    launch(
        "kl_penalty_backward",
        logp,
        view(logp),
        view(ref_logp),
        optional_view(mask),
        ESTIMATORS[estimator],
        ratio_lo,
        ratio_hi,
        kl_lo,
        kl_hi,
        beta,
        optional_view(grad_kl),
        optional_view(grad_shaped),
        optional_view(grad_row_sum),
        view(grad_logp),
        view(grad_ref),
    )
    return grad_logp.to(original[0]), grad_ref.to(original[1])


def _kl_setup_context(ctx, inputs, output):
    logp, ref_logp, mask, reward, *kl_args = inputs
    ctx.save_for_backward(logp, ref_logp, mask)
    ctx.kl_args = kl_args
    ctx.reward_dtype = None if reward is None else reward.dtype


def _kl_backward(ctx, grad_kl, grad_shaped, grad_row_sum, _grad_count):
    logp, ref_logp, mask = ctx.saved_tensors
    has_shaped = ctx.reward_dtype is not None and grad_shaped is not None
    grad_logp, grad_ref = torch.ops.feedbackkit.kl_penalty_backward(
        logp, ref_logp, mask, *ctx.kl_args, grad_kl, grad_shaped if has_shaped else None, grad_row_sum
    )
    grad_reward = grad_shaped.to(ctx.reward_dtype) if has_shaped else None
    return grad_logp, grad_ref, None, grad_reward, None, None, None, None, None, None


# ---- gae / discounted_returns ----------------------------------------------------------------


def _validate_gae(rewards, values, mask, bootstrap, gamma, lam, mask_mode) -> None:
    op = "gae" if values is not None else "discounted_returns"
    _tokens(op, "rewards", rewards)
    if values is not None:
        _tokens(op, "values", values, rewards.shape)
    _mask(op, mask, rewards.shape)
    _row_vector(op, "bootstrap", bootstrap, rewards.shape[0])
    _unit_interval(op, "gamma", gamma)
    _unit_interval(op, "lam", lam)
    check_choice(op, "mask_mode", mask_mode, MASK_MODES)
    _same_device(op, rewards=rewards, values=values, mask=mask, bootstrap=bootstrap)


def _gae_fake(rewards, values, mask, bootstrap, gamma, lam, mask_mode):
    _validate_gae(rewards, values, mask, bootstrap, gamma, lam, mask_mode)
    dtype = _out_dtype(rewards, values)
    advantages_shape = tuple(rewards.shape) if values is not None else (0,)
    return rewards.new_empty(advantages_shape, dtype=dtype), rewards.new_empty(
        tuple(rewards.shape), dtype=dtype
    )


def _gae_impl(rewards, values, mask, bootstrap, gamma, lam, mask_mode):
    advantages, returns = _gae_fake(rewards, values, mask, bootstrap, gamma, lam, mask_mode)
    rewards, values = _common(rewards, values)
    bootstrap = _stat(bootstrap, returns.dtype)
    launch(
        "gae",
        rewards,
        view(rewards),
        optional_view(values),
        optional_view(mask),
        optional_view(bootstrap),
        gamma,
        lam,
        MASK_MODES[mask_mode],
        optional_view(advantages if values is not None else None),
        view(returns),
    )
    return advantages, returns


# ---- group_advantage -------------------------------------------------------------------------


def _validate_group(scores, group_ids, mode, std, eps, singleton) -> None:
    op = "group_advantage"
    check_tensor(op, "scores", scores, dtypes=FLOAT_DTYPES, ndim=1, shape="[N]")
    check_tensor(op, "group_ids", group_ids, dtypes=INDEX_DTYPES, ndim=1, shape="[N]")
    if group_ids.shape != scores.shape:
        raise ArgumentError(
            f"{op}: 'group_ids' must have one id per score, shape {list(scores.shape)}; "
            f"got {list(group_ids.shape)}"
        )
    check_choice(op, "mode", mode, GROUP_MODES)
    check_choice(op, "std", std, STD_KINDS)
    check_choice(op, "singleton", singleton, SINGLETON)
    if not (isinstance(eps, float) and eps >= 0):
        raise ArgumentError(f"{op}: 'eps' must be a float >= 0; got {eps!r}")
    _same_device(op, scores=scores, group_ids=group_ids)


def check_no_singleton(group_ids: torch.Tensor) -> None:
    """Raises if some id occurs once (synchronises the host)."""
    if not isinstance(group_ids, torch.Tensor):
        return  # the op reports it
    ids, counts = torch.unique(group_ids, return_counts=True)
    lonely = ids[counts == 1]
    if lonely.numel() > 0:
        raise ArgumentError(
            f"group_advantage: singleton='error' and group {int(lonely[0])} has a single response "
            f"({lonely.numel()} singleton group(s) in all)"
        )


def group_runs(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, starts): the stable sort permutation of the ids, and the start of each run of
    equal ids in sorted order followed by N in every unused slot ([N + 2]); no host sync."""
    n = group_ids.shape[0]
    if not group_ids.is_cuda:
        order = group_ids.new_empty((n,), dtype=torch.int64)
        starts = group_ids.new_empty((n + 2,), dtype=torch.int64)
        launch("group_runs", group_ids, view(group_ids), view(order), view(starts))
        return order, starts
    sorted_ids, order = torch.sort(group_ids, stable=True)
    is_start = torch.ones(n, dtype=torch.bool, device=group_ids.device)
    is_start[1:] = sorted_ids[1:] != sorted_ids[:-1]
    run = torch.cumsum(is_start, 0) - 1
    slot = torch.where(is_start, run, n + 1)
    starts = torch.full((n + 2,), n, dtype=torch.int64, device=group_ids.device)
    starts.scatter_(0, slot, torch.arange(n, device=group_ids.device))
    return order, starts


def _group_fake(scores, group_ids, mode, std, eps, singleton):
    _validate_group(scores, group_ids, mode, std, eps, singleton)
    return scores.new_empty(tuple(scores.shape), dtype=stat_dtype(scores.dtype))


def _group_impl(scores, group_ids, mode, std, eps, singleton):
    out = _group_fake(scores, group_ids, mode, std, eps, singleton)
    if scores.shape[0] == 0:
        return out
    order, starts = group_runs(group_ids)
    launch(
        "group_advantage",
        scores,
        view(scores),
        view(order),
        view(starts),
        GROUP_MODES[mode],
        std == "unbiased",
        eps,
        SINGLETON[singleton],
        view(out),
    )
    return out


def broadcast_to_tokens(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N] advantages onto the valid tokens of mask[N, T], 0 elsewhere."""
    op = "group_advantage"
    check_tensor(op, "mask", mask, dtypes=MASK_DTYPES, ndim=2, shape="[N, T]")
    if mask.shape[0] != advantages.shape[0]:
        raise ArgumentError(f"{op}: 'mask' must have N={advantages.shape[0]} rows; got {list(mask.shape)}")
    return torch.where(mask != 0, advantages[:, None], advantages.new_zeros(()))


# ---- masked_whiten ---------------------------------------------------------------------------


def _validate_whiten(op, x, mask, scope, stats=None, eps=0.0) -> int:
    _tokens(op, "x", x)
    _mask(op, mask, x.shape)
    check_choice(op, "scope", scope, SCOPES)
    rows = 1 if scope == "batch" else x.shape[0]
    if stats is not None:
        check_tensor(op, "stats", stats, dtypes=(torch.float64,), shape="(count, Σx, Σx²)")
        expected = (3,) if scope == "batch" else (rows, 3)
        if tuple(stats.shape) != expected:
            raise ArgumentError(f"{op}: 'stats' must have shape {list(expected)}; got {list(stats.shape)}")
    if not (isinstance(eps, float) and eps >= 0):
        raise ArgumentError(f"{op}: 'eps' must be a float >= 0; got {eps!r}")
    _same_device(op, x=x, mask=mask, stats=stats)
    return rows


def _moments(x: torch.Tensor, mask: torch.Tensor | None, scope: str) -> torch.Tensor:
    """float64 (n, mean, M2) per row, merged over the batch for scope "batch": [rows, 3]."""
    rows = x.new_empty((x.shape[0], 3), dtype=torch.float64)
    launch("row_moments", x, view(x), optional_view(mask), view(rows))
    if scope == "row":
        return rows
    merged = x.new_empty((1, 3), dtype=torch.float64)
    launch("merge_moments", x, view(rows), view(merged))
    return merged


def _stats_shape(x: torch.Tensor, scope: str) -> tuple[int, ...]:
    return (3,) if scope == "batch" else (x.shape[0], 3)


def _whiten_stats_fake(x, mask, scope):
    _validate_whiten("masked_whiten_stats", x, mask, scope)
    return x.new_empty(_stats_shape(x, scope), dtype=torch.float64)


def _whiten_stats_impl(x, mask, scope):
    _validate_whiten("masked_whiten_stats", x, mask, scope)
    moments = _moments(x, mask, scope)
    count, mean, m2 = moments.unbind(-1)
    return torch.stack((count, count * mean, m2 + count * mean * mean), -1).reshape(_stats_shape(x, scope))


def _whiten_fake(x, mask, stats, shift_mean, unbiased, eps, scope):
    _validate_whiten("masked_whiten", x, mask, scope, stats, eps)
    return (
        x.new_empty(tuple(x.shape), dtype=stat_dtype(x.dtype)),
        x.new_empty(_stats_shape(x, scope), dtype=torch.float64),
    )


def whiten_into(x, mask, stats, shift_mean, unbiased, eps, scope, out, stats_out) -> None:
    """Whitens x into out (which may be x): moments computed here when `stats` is None."""
    rows_stats = _moments(x, mask, scope) if stats is None else stats.reshape(-1, 3)
    launch(
        "whiten_apply",
        x,
        view(x),
        optional_view(mask),
        view(rows_stats),
        stats is not None,
        shift_mean,
        unbiased,
        eps,
        view(out),
        view(stats_out.reshape(-1, 3)),
    )


def _whiten_impl(x, mask, stats, shift_mean, unbiased, eps, scope):
    out, stats_out = _whiten_fake(x, mask, stats, shift_mean, unbiased, eps, scope)
    whiten_into(x, mask, stats, shift_mean, unbiased, eps, scope, out, stats_out)
    return out, stats_out


# ---- rlhf_advantages -------------------------------------------------------------------------


class RlhfArgs(NamedTuple):
    """The arguments of the rlhf_advantages op, in schema order."""

    logp: torch.Tensor
    ref_logp: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor | None
    scores: torch.Tensor | None
    token_rewards: torch.Tensor | None
    bootstrap: torch.Tensor | None
    estimator: str
    ratio_lo: float
    ratio_hi: float
    kl_lo: float
    kl_hi: float
    beta: float
    gamma: float
    lam: float
    mask_mode: str
    whiten: bool
    shift_mean: bool


def _validate_rlhf(a: RlhfArgs) -> None:
    op = "rlhf_advantages"
    _tokens(op, "logp", a.logp)
    shape = a.logp.shape
    _tokens(op, "ref_logp", a.ref_logp, shape)
    _tokens(op, "values", a.values, shape)
    _mask(op, a.mask, shape)
    if a.scores is None and a.token_rewards is None:
        raise ArgumentError(f"{op}: give 'scores' ([B]), 'token_rewards' ([B, T]) or both; got neither")
    _row_vector(op, "scores", a.scores, shape[0])
    if a.token_rewards is not None:
        _tokens(op, "token_rewards", a.token_rewards, shape)
    _row_vector(op, "bootstrap", a.bootstrap, shape[0])
    _kl_checks(op, a.estimator, a.ratio_lo, a.ratio_hi, a.kl_lo, a.kl_hi)
    if not math.isfinite(a.beta):
        raise ArgumentError(f"{op}: 'beta' must be finite; got {a.beta!r}")
    _unit_interval(op, "gamma", a.gamma)
    _unit_interval(op, "lam", a.lam)
    check_choice(op, "mask_mode", a.mask_mode, MASK_MODES)
    tensors = ("logp", "ref_logp", "values", "mask", "scores", "token_rewards", "bootstrap")
    _same_device(op, **{name: getattr(a, name) for name in tensors})


def _rlhf_fake(*args):
    a = RlhfArgs(*args)
    _validate_rlhf(a)
    dtype = _out_dtype(a.logp, a.ref_logp, a.values, a.token_rewards)
    shape, batch = tuple(a.logp.shape), a.logp.shape[0]
    return (
        *(a.logp.new_empty(shape, dtype=dtype) for _ in range(3)),
        a.logp.new_empty((batch,), dtype=dtype),
        a.logp.new_empty((batch,), dtype=torch.int64),
    )


def _rlhf_impl(*args):
    outs = _rlhf_fake(*args)
    a = RlhfArgs(*args)
    rewards_out, advantages, returns, kl_sum, kl_count = outs
    logp, ref_logp, values, token_rewards = _common(a.logp, a.ref_logp, a.values, a.token_rewards)
    scores, bootstrap = _stat(a.scores, advantages.dtype), _stat(a.bootstrap, advantages.dtype)
    moments = logp.new_empty((logp.shape[0], 3), dtype=torch.float64) if a.whiten else None
    launch(
        "rlhf_rows",
        logp,
        view(logp),
        view(ref_logp),
        view(values),
        optional_view(a.mask),
        optional_view(scores),
        optional_view(token_rewards),
        optional_view(bootstrap),
        ESTIMATORS[a.estimator],
        a.ratio_lo,
        a.ratio_hi,
        a.kl_lo,
        a.kl_hi,
        a.beta,
        a.gamma,
        a.lam,
        MASK_MODES[a.mask_mode],
        view(rewards_out),
        view(advantages),
        view(returns),
        view(kl_sum),
        view(kl_count),
        optional_view(moments),
    )
    if a.whiten:
        merged = logp.new_empty((1, 3), dtype=torch.float64)
        launch("merge_moments", logp, view(moments), view(merged))
        unused_stats = logp.new_empty((1, 3), dtype=torch.float64)
        launch(
            "whiten_apply",
            logp,
            view(advantages),
            optional_view(a.mask),
            view(merged),
            False,
            a.shift_mean,
            True,
            1e-8,
            view(advantages),
            view(unused_stats),
        )
    return outs


register("segment_scatter", _segment_scatter_impl, _segment_scatter_fake)
register("place_at_last_token", _place_impl, _place_fake)
register("combine_rewards", _combine_impl, _combine_fake)
register("kl_penalty", _kl_impl, _kl_fake, _kl_backward, _kl_setup_context)
register("kl_penalty_backward", _kl_backward_impl, _kl_backward_fake)
register("gae", _gae_impl, _gae_fake)
register("group_advantage", _group_impl, _group_fake)
register("masked_whiten_stats", _whiten_stats_impl, _whiten_stats_fake)
register("masked_whiten", _whiten_impl, _whiten_fake)
register("rlhf_advantages", _rlhf_impl, _rlhf_fake)
