"""Public API of the `reward` family: rewards on tokens, KL shaping, GAE, group baselines and
whitening, each a fused kernel with fp32 (or wider) accumulation and no host synchronisation.

Conventions shared by every function here:

- Token tensors are ``[B, T]`` (float32, float64, bfloat16 or float16, any strides) with an
  optional ``mask[B, T]`` (bool / uint8 / int32 / int64, nonzero = valid; ``None`` = all valid).
- Outputs are float32, or float64 when the main input is float64; every statistic is
  accumulated in float32 or wider, whatever the input dtype. Token inputs of one call should
  share a dtype; when they differ they are first upcast to float32 (float64 if one of them is
  float64), which costs one copy each.
- Positions outside the mask are written as 0 in every token output (advantages, returns,
  KL, whitened values, token rewards) and their inputs are never read into a result, so NaN or
  inf padding cannot leak.
- Nothing synchronises the host except the options documented as doing so (``check=True``,
  ``singleton="error"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch

from .ops import reward as _ops

__all__ = [
    "GAEResult",
    "KLPenalty",
    "RLHFAdvantages",
    "RewardMix",
    "Whitened",
    "combine_rewards",
    "discounted_returns",
    "gae",
    "group_advantage",
    "kl_penalty",
    "masked_whiten",
    "masked_whiten_stats",
    "place_at_last_token",
    "rlhf_advantages",
    "segment_scatter",
]

Estimator = Literal["k1", "abs", "k2", "k3"]
MaskMode = Literal["skip", "zero"]
Bounds = tuple[float, float] | None


class RewardMix(NamedTuple):
    reward: torch.Tensor  #: combined reward, 0 where no source applies
    valid: torch.Tensor  #: bool, False where every source is NaN


class KLPenalty(NamedTuple):
    kl: torch.Tensor  #: [B, T] per-token KL estimate, 0 outside the mask
    shaped: torch.Tensor | None  #: reward − beta·kl, when a reward was given
    row_sum: torch.Tensor  #: [B] Σ_t kl over valid tokens (for adaptive KL controllers)
    row_count: torch.Tensor  #: [B] int64 number of valid tokens


class GAEResult(NamedTuple):
    advantages: torch.Tensor
    returns: torch.Tensor


class Whitened(NamedTuple):
    values: torch.Tensor  #: whitened [B, T], 0 outside the mask
    stats: torch.Tensor  #: float64 (count, Σx, Σx²): [3] for scope "batch", [B, 3] for "row"


class RLHFAdvantages(NamedTuple):
    token_rewards: torch.Tensor  #: [B, T] rewards after placement and KL shaping
    advantages: torch.Tensor  #: [B, T] (whitened if asked)
    returns: torch.Tensor  #: [B, T] unwhitened advantages + values
    kl_row_sum: torch.Tensor  #: [B]
    kl_row_count: torch.Tensor  #: [B] int64


def segment_scatter(
    values: torch.Tensor,
    row_ptr: torch.Tensor,
    positions: torch.Tensor,
    length: int,
    *,
    mask: torch.Tensor | None = None,
    mode: Literal["add", "last"] = "add",
    out_of_range: Literal["clamp", "drop"] = "clamp",
    check: bool = False,
) -> torch.Tensor:
    """Puts segment rewards on token positions: ``out[B, length]``.

    Row ``b`` owns the segment values ``values[row_ptr[b]:row_ptr[b+1]]`` (CSR layout, e.g. one
    value per sentence or sub-sentence end) and their token positions ``positions[...]`` (0-based
    within the row). The row's length L_b is one past its last valid token (``length`` without a
    mask). For each segment value, in order:

    - its position p is used as is when ``0 <= p < L_b``;
    - a position ``p >= L_b`` (past the row) goes to the last valid token L_b − 1 with
      ``out_of_range="clamp"`` and is dropped with ``"drop"``; a row with no valid token drops
      everything;
    - ``mode="add"``: ``out[b, p] += v`` (several segments ending on one token add up);
      ``mode="last"``: ``out[b, p] = v`` (the later segment in CSR order wins).

    Every other entry is 0. Negative positions and a malformed ``row_ptr`` (not starting at 0,
    decreasing, or not ending at nnz) are ValueErrors on the CPU; on CUDA they are verified only
    with ``check=True`` (a host sync); unverified, the affected rows become NaN.

    Args:
        values: ``[nnz]`` float32 / float64 / bfloat16 / float16.
        row_ptr: ``[B+1]`` int32 / int64.
        positions: ``[nnz]`` int32 / int64.
        length: T, the number of token positions per row.
        mask: optional ``[B, length]`` validity mask defining the row lengths.
    """
    if check:
        _ops.check_segment_values(values, row_ptr, positions, length, mask)
    return torch.ops.feedbackkit.segment_scatter(values, row_ptr, positions, length, mask, mode, out_of_range)


def place_at_last_token(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = scores[b]`` at the last valid token of row b (the largest t with
    ``mask[b, t]``), 0 elsewhere; rows with no valid token stay all 0. ``scores`` is ``[B]``."""
    return torch.ops.feedbackkit.place_at_last_token(scores, mask)


def combine_rewards(
    rewards: torch.Tensor,
    weights: torch.Tensor | Sequence[float],
    *,
    normalize: Literal["zscore", "affine"] | None = None,
    stats: torch.Tensor | None = None,
    eps: float = 1e-8,
    renormalize: bool = False,
) -> RewardMix:
    """Weighted sum of K reward sources where NaN means "this source does not apply here".

    For source k and entry i (``rewards[k, i...]``, shape ``[K, B]`` or ``[K, B, T]``), with
    A_i the set of sources whose entry is not NaN:

    - ``normalize=None``: r̃_k = r_k;
    - ``"zscore"``: r̃_k = (r_k − μ_k) / (σ_k + eps), with (μ_k, σ_k) = ``stats[k]`` when given
      (e.g. running statistics), else the mean and population standard deviation of source k
      over its non-NaN entries in this batch (two-pass, centred);
    - ``"affine"``: r̃_k = ``stats[k, 0]`` · r_k + ``stats[k, 1]`` (``stats`` required).

    ``reward[i] = Σ_{k∈A_i} w_k r̃_k[i]``, divided by ``Σ_{k∈A_i} w_k`` when ``renormalize``
    (a weighted mean over the sources that apply). Where A_i is empty, ``reward[i] = 0`` and
    ``valid[i] = False``: such rows are reported, not silently zero.

    Args:
        rewards: ``[K, B]`` or ``[K, B, T]`` float tensor.
        weights: ``[K]`` (tensor or sequence of floats); K must match ``rewards``.
        stats: ``[K, 2]`` float tensor as described above.
    """
    return RewardMix(
        *torch.ops.feedbackkit.combine_rewards(
            rewards, _ops.as_weights(weights, rewards), normalize or "none", stats, float(eps), renormalize
        )
    )


def kl_penalty(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    estimator: Estimator = "k1",
    log_ratio_clamp: Bounds = None,
    clamp: Bounds = None,
    reward: torch.Tensor | None = None,
    beta: float = 0.0,
) -> KLPenalty:
    """Per-token KL(π ‖ π_ref) estimates from sampled tokens, their per-row sums and counts, and
    the KL-shaped reward.

    With δ = logp − ref_logp computed after upcasting both to fp32 (fp64 for fp64 inputs), and
    δ clamped to ``log_ratio_clamp`` = (lo, hi) when given (protects exp in k3):

    - ``"k1"``: kl = δ (unbiased, can be negative);
    - ``"abs"``: kl = |δ|;
    - ``"k2"``: kl = δ² / 2;
    - ``"k3"``: kl = exp(−δ) + δ − 1 (unbiased, ≥ 0, low variance), evaluated without
      cancellation (a Taylor series at small |δ|): float32 results stay within 1e-6 of the exact
      value even at |δ| ~ 1e-5, where the naive float32 formula gives only rounding noise.

    The result is then clamped to ``clamp`` = (lo, hi) when given; a clamp has zero gradient
    outside its range (as ``torch.clamp``). Outside the mask kl = 0 with zero gradient.

    Returns ``KLPenalty(kl, shaped, row_sum, row_count)``: ``shaped = reward − beta·kl``
    (``reward`` kept as is outside the mask) when ``reward`` is given, else None;
    ``row_sum[b] = Σ_t kl[b, t]`` and ``row_count[b]`` the valid tokens of row b.
    Differentiable w.r.t. logp, ref_logp and reward (kl, shaped and row_sum all carry
    gradients).
    """
    kl, shaped, row_sum, row_count = torch.ops.feedbackkit.kl_penalty(
        logp,
        ref_logp,
        mask,
        reward,
        estimator,
        *_ops.bounds(log_ratio_clamp),
        *_ops.bounds(clamp),
        float(beta),
    )
    return KLPenalty(kl, shaped if reward is not None else None, row_sum, row_count)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    gamma: float,
    lam: float,
    mask_mode: MaskMode = "skip",
    bootstrap: torch.Tensor | None = None,
) -> GAEResult:
    """Generalised advantage estimation over ``[B, T]`` rows, in one kernel launch.

    ``mask_mode="skip"`` (multi-turn: tool or observation tokens inside a response): the
    recursion runs over the valid positions t_1 < … < t_n of each row only, so masked spans are
    carried across, not discounted:

        δ_i = r[t_i] + γ·V[t_{i+1}] − V[t_i],   A[t_i] = δ_i + γλ·A[t_{i+1}],

    with V[t_{n+1}] = ``bootstrap[b]`` (0 without one) and A[t_{n+1}] = 0.

    ``mask_mode="zero"`` (the classic right-padded loop): r and V are multiplied by the mask and
    the recursion runs over every position t = T−1 … 0 with V[T] = A[T] = 0:

        A[t] = r[t]·m[t] + γ·V[t+1]·m[t+1] − V[t]·m[t] + γλ·A[t+1],

    and ``bootstrap[b]`` enters as γ·bootstrap[b] added to the reward of the row's last valid
    token (so it means "the value after the last valid token" in both modes). The two modes agree
    whenever each row's valid tokens are contiguous (left or right padding).

    ``returns = advantages + values``. Both are 0 outside the mask. Rewards and values at masked
    positions are never used. Computed as a scan of affine maps (on CUDA a parallel, chunked
    associative scan, one block per row), never through exp/log cumulative sums.

    Args:
        rewards, values: ``[B, T]`` float tensors of one dtype.
        mask: optional ``[B, T]``.
        gamma, lam: discount and GAE λ, each in [0, 1].
        bootstrap: optional ``[B]`` value of the state after each row's last valid token
            (truncated rather than terminated episodes).
    """
    advantages, returns = torch.ops.feedbackkit.gae(
        rewards, values, mask, bootstrap, float(gamma), float(lam), mask_mode
    )
    return GAEResult(advantages, returns)


def discounted_returns(
    rewards: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    gamma: float,
    mask_mode: MaskMode = "skip",
    bootstrap: torch.Tensor | None = None,
) -> torch.Tensor:
    """Discounted reward-to-go G[t] = r[t] + γ·G[next], with the masks, modes and bootstrap of
    :func:`gae` (it equals ``gae(rewards, 0, mask, gamma=gamma, lam=1).returns``)."""
    return torch.ops.feedbackkit.gae(rewards, None, mask, bootstrap, float(gamma), 1.0, mask_mode)[1]


def group_advantage(
    scores: torch.Tensor,
    group_ids: torch.Tensor,
    *,
    mode: Literal["grpo", "rloo", "dr_grpo", "mean"] = "grpo",
    std: Literal["unbiased", "biased"] = "unbiased",
    eps: float = 1e-6,
    singleton: Literal["zero", "raw", "error"] = "zero",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Group-relative advantages (GRPO, RLOO, Dr. GRPO) for responses grouped by prompt.

    ``group_ids`` may be any int32/int64 values, unsorted, with groups of any sizes. For a group
    of n scores with mean μ = Σx/n and centred M2 = Σ(x − μ)² (two passes, never Σx² − (Σx)²/n),
    σ = sqrt(M2/(n−1)) (``std="unbiased"``) or sqrt(M2/n) (``"biased"``):

    - ``"grpo"``: (x − μ) / (σ + eps);
    - ``"rloo"``: x − (Σx − x)/(n − 1) = n/(n − 1)·(x − μ) (leave-one-out baseline);
    - ``"dr_grpo"`` and ``"mean"``: x − μ (Dr. GRPO drops the std; "mean" is the same plain
      mean baseline under its generic name).

    Groups of one (n = 1) follow ``singleton``: ``"zero"`` gives 0, ``"raw"`` gives the score
    itself, ``"error"`` raises ValueError naming a singleton group (this option synchronises the
    host to look). A NaN score makes its whole group NaN (other groups are unaffected).

    Returns ``[N]`` float32 (float64 for float64 scores), or ``[N, T]`` with each response's
    advantage broadcast onto its valid tokens (0 elsewhere) when ``mask[N, T]`` is given.
    Deterministic: groups are formed by a stable sort of the ids, then reduced in index order.
    """
    if singleton == "error":
        _ops.check_no_singleton(group_ids)
    advantages = torch.ops.feedbackkit.group_advantage(scores, group_ids, mode, std, float(eps), singleton)
    if mask is None:
        return advantages
    return _ops.broadcast_to_tokens(advantages, mask)


def masked_whiten_stats(
    x: torch.Tensor, mask: torch.Tensor | None = None, *, scope: Literal["batch", "row"] = "batch"
) -> torch.Tensor:
    """Float64 partial sums (count, Σx, Σx²) over the valid entries: ``[3]`` (scope "batch") or
    ``[B, 3]`` (scope "row"). All-reduce them across ranks (a sum), then pass them to
    :func:`masked_whiten` as ``stats`` to whiten with global statistics."""
    return torch.ops.feedbackkit.masked_whiten_stats(x, mask, scope)


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    shift_mean: bool = True,
    unbiased: bool = True,
    eps: float = 1e-8,
    scope: Literal["batch", "row"] = "batch",
    stats: torch.Tensor | None = None,
) -> Whitened:
    """Whitens the valid entries of ``x[B, T]`` (e.g. advantages before the PPO loss).

    Over the valid entries of the batch (``scope="batch"``) or of each row (``"row"``), with n
    entries, mean μ and variance var = M2/(n − 1) (``unbiased``) or M2/n:

        out = (x − μ) / sqrt(var + eps),  plus μ added back when ``shift_mean=False``.

    Without ``stats``, μ and M2 come from a two-pass centred computation (per-row partials merged
    exactly, in row order). With ``stats`` (the (count, Σx, Σx²) of :func:`masked_whiten_stats`,
    typically all-reduced over ranks), μ = Σx/n and M2 = Σx² − n·μ² in float64. A scope with no
    valid entries is left at 0; with one entry and ``unbiased`` the variance is taken as 0.

    Returns ``Whitened(values, stats)`` where ``stats`` are the float64 (count, Σx, Σx²) used.
    """
    out, used = torch.ops.feedbackkit.masked_whiten(x, mask, stats, shift_mean, unbiased, float(eps), scope)
    return Whitened(out, used)


def rlhf_advantages(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scores: torch.Tensor | None = None,
    token_rewards: torch.Tensor | None = None,
    beta: float,
    estimator: Estimator = "k1",
    log_ratio_clamp: Bounds = None,
    clamp: Bounds = None,
    gamma: float = 1.0,
    lam: float = 0.95,
    mask_mode: MaskMode = "skip",
    bootstrap: torch.Tensor | None = None,
    whiten: bool = True,
    shift_mean: bool = True,
) -> RLHFAdvantages:
    """The PPO advantage pipeline in three kernel launches (one without whitening):

    1. per row: token rewards r[t] = ``scores[b]``·[t = last valid token] + ``token_rewards[t]``
       − beta·kl[t] (kl as :func:`kl_penalty`), then :func:`gae` on r and ``values``;
    2-3. :func:`masked_whiten` of the advantages over the batch (unbiased, eps 1e-8), when
       ``whiten``.

    At least one of ``scores`` ([B]) and ``token_rewards`` ([B, T]) is required. Returns
    ``RLHFAdvantages(token_rewards, advantages, returns, kl_row_sum, kl_row_count)``; the returns
    are those of the unwhitened advantages. Equal to composing the single ops (tested).
    """
    outs = torch.ops.feedbackkit.rlhf_advantages(
        logp,
        ref_logp,
        values,
        mask,
        scores,
        token_rewards,
        bootstrap,
        estimator,
        *_ops.bounds(log_ratio_clamp),
        *_ops.bounds(clamp),
        float(beta),
        float(gamma),
        float(lam),
        mask_mode,
        whiten,
        shift_mean,
    )
    return RLHFAdvantages(*outs)
