"""Reference implementations of the `reward` family, written from the documented semantics of
:mod:`feedbackkit.reward`: the per-token reverse GAE loop, the dict and ``index_add_`` group
baselines, and plain tensor code for the rest. Each computes in ``dtype`` on the inputs' device.
Masked positions are removed with ``torch.where`` before any arithmetic, so NaN padding cannot
leak here either."""

from __future__ import annotations

import torch

Bounds = tuple[float, float] | None


def _valid(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The mask as bool, or all True with the shape of `like`."""
    if mask is None:
        return torch.ones(like.shape, dtype=torch.bool, device=like.device)
    return mask != 0


def _masked(x: torch.Tensor, valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`x` in `dtype`, with 0 (not x·0) outside `valid`."""
    return torch.where(valid, x.to(dtype), torch.zeros((), dtype=dtype, device=x.device))


def place_at_last_token(
    scores: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """``scores[b]`` at the last valid token of row b, 0 elsewhere (all 0 for an empty row)."""
    valid = mask != 0
    length = valid.shape[1]
    last = length - 1 - valid.flip(1).to(torch.uint8).argmax(1)
    placed = torch.arange(length, device=mask.device)[None, :] == last[:, None]
    return _masked(scores[:, None].expand(valid.shape), placed & valid.any(1, keepdim=True), dtype)


def segment_scatter(
    values: torch.Tensor,
    row_ptr: torch.Tensor,
    positions: torch.Tensor,
    length: int,
    mask: torch.Tensor | None = None,
    mode: str = "add",
    out_of_range: str = "clamp",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """CSR segment values onto ``[B, length]`` token positions; positions past a row's length
    are clamped to its last valid token or dropped; ``"last"`` keeps the later segment."""
    if mode not in ("add", "last") or out_of_range not in ("clamp", "drop"):
        raise ValueError(f"segment_scatter reference: bad mode {mode!r} or out_of_range {out_of_range!r}")
    row_ptr, positions = row_ptr.long(), positions.long()
    nnz, rows = values.shape[0], row_ptr.shape[0] - 1
    counts = row_ptr[1:] - row_ptr[:-1]
    if int(row_ptr[0]) != 0 or int(row_ptr[-1]) != nnz or bool((counts < 0).any() or (positions < 0).any()):
        raise ValueError("segment_scatter reference: malformed 'row_ptr' or negative 'positions'")
    device = values.device
    if mask is None:
        row_length = torch.full((rows,), length, dtype=torch.long, device=device)
    else:
        valid = mask != 0
        last = length - 1 - valid.flip(1).to(torch.uint8).argmax(1)
        row_length = torch.where(valid.any(1), last + 1, 0)
    row = torch.repeat_interleave(torch.arange(rows, device=device), counts)
    limit = row_length[row]
    past = positions >= limit
    keep = (limit > 0) & (~past if out_of_range == "drop" else torch.ones_like(past))
    target = (row * length + torch.minimum(positions, limit - 1))[keep]
    out = torch.zeros(rows * length, dtype=dtype, device=device)
    if mode == "add":
        out.index_add_(0, target, values[keep].to(dtype))
    elif target.numel():
        order = torch.arange(nnz, device=device)[keep]
        winner = torch.full((rows * length,), -1, dtype=torch.long, device=device)
        winner.scatter_reduce_(0, target, order, reduce="amax")
        out = torch.where(winner >= 0, values.to(dtype)[winner.clamp(min=0)], out)
    return out.view(rows, length)


def combine_rewards(
    rewards: torch.Tensor,
    weights: torch.Tensor,
    normalize: str | None = None,
    stats: torch.Tensor | None = None,
    eps: float = 1e-8,
    renormalize: bool = False,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sum over the non-NaN sources of each entry; (reward, valid)."""
    present = ~torch.isnan(rewards)
    r = _masked(rewards, present, dtype)
    shape = (-1,) + (1,) * (rewards.dim() - 1)  # broadcasts a [K] vector over the entries
    if normalize == "zscore":
        if stats is not None:
            mean, std = stats[:, 0].to(dtype).view(shape), stats[:, 1].to(dtype).view(shape)
        else:
            flat_present, flat = present.flatten(1), r.flatten(1)
            count = flat_present.sum(1).to(dtype)
            mean = flat.sum(1) / count
            centred = torch.where(flat_present, flat - mean[:, None], 0)
            std = (centred.square().sum(1) / count).sqrt()
            mean, std = mean.view(shape), std.view(shape)
        r = (r - mean) / (std + eps)
    elif normalize == "affine":
        if stats is None:
            raise ValueError("combine_rewards reference: normalize='affine' needs 'stats'")
        r = stats[:, 0].to(dtype).view(shape) * r + stats[:, 1].to(dtype).view(shape)
    elif normalize is not None:
        raise ValueError(f"combine_rewards reference: unknown normalize {normalize!r}")
    w = torch.as_tensor(weights, device=rewards.device).to(dtype).view(shape)
    total = torch.where(present, w * r, 0).sum(0)
    valid = present.any(0)
    if renormalize:
        total = total / torch.where(present, w, 0).sum(0)
    return torch.where(valid, total, 0), valid


def kl_penalty(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor | None,
    estimator: str = "k1",
    log_ratio_clamp: Bounds = None,
    clamp: Bounds = None,
    reward: torch.Tensor | None = None,
    beta: float = 0.0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Per-token KL estimate from δ = logp − ref_logp; (kl, shaped or None, row_sum, row_count).
    Differentiable through torch autograd."""
    valid = _valid(mask, logp)
    delta = _masked(logp, valid, dtype) - _masked(ref_logp, valid, dtype)
    if log_ratio_clamp is not None:
        delta = delta.clamp(*log_ratio_clamp)
    if estimator == "k1":
        kl = delta
    elif estimator == "abs":
        kl = delta.abs()
    elif estimator == "k2":
        kl = delta.square() / 2
    elif estimator == "k3":
        kl = torch.exp(-delta) + delta - 1
    else:
        raise ValueError(f"kl_penalty reference: unknown estimator {estimator!r}")
    if clamp is not None:
        kl = kl.clamp(*clamp)
    kl = torch.where(valid, kl, 0)
    shaped = None if reward is None else reward.to(dtype) - beta * kl
    return kl, shaped, kl.sum(-1), valid.sum(-1)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor | None,
    mask: torch.Tensor | None,
    gamma: float,
    lam: float,
    mask_mode: str = "skip",
    bootstrap: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-token reverse loop over t, vectorised over rows; (advantages, returns), 0 outside
    the mask. ``values=None`` means zeros."""
    valid = _valid(mask, rewards)
    r = _masked(rewards, valid, dtype)
    v = torch.zeros_like(r) if values is None else _masked(values, valid, dtype)
    rows, length = r.shape
    advantages = torch.zeros_like(r)
    next_value = torch.zeros(rows, dtype=dtype, device=r.device)
    next_advantage = torch.zeros_like(next_value)
    if mask_mode == "skip":
        if bootstrap is not None:
            next_value = bootstrap.to(dtype)
        for t in reversed(range(length)):
            step = r[:, t] + gamma * next_value - v[:, t] + gamma * lam * next_advantage
            advantages[:, t] = torch.where(valid[:, t], step, 0)
            next_value = torch.where(valid[:, t], v[:, t], next_value)
            next_advantage = torch.where(valid[:, t], step, next_advantage)
    elif mask_mode == "zero":
        if bootstrap is not None:
            r = r + place_at_last_token(gamma * bootstrap.to(dtype), valid, dtype)
        for t in reversed(range(length)):
            next_advantage = r[:, t] + gamma * next_value - v[:, t] + gamma * lam * next_advantage
            advantages[:, t] = next_advantage
            next_value = v[:, t]
        advantages = torch.where(valid, advantages, 0)
    else:
        raise ValueError(f"gae reference: unknown mask_mode {mask_mode!r}")
    return advantages, torch.where(valid, advantages + v, 0)


def discounted_returns(
    rewards: torch.Tensor,
    mask: torch.Tensor | None,
    gamma: float,
    mask_mode: str = "skip",
    bootstrap: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """G[t] = r[t] + γ·G[next]: :func:`gae` with zero values and λ = 1."""
    return gae(rewards, None, mask, gamma, 1.0, mask_mode, bootstrap, dtype)[1]


def _group_formula(
    x: torch.Tensor,
    mean: torch.Tensor,
    m2: torch.Tensor,
    n: int | torch.Tensor,
    mode: str,
    std: str,
    eps: float,
) -> torch.Tensor:
    """The advantage of scores `x` in a group of n (> 1) with mean and centred M2."""
    if mode == "grpo":
        sigma = (m2 / ((n - 1) if std == "unbiased" else n)).sqrt()
        return (x - mean) / (sigma + eps)
    if mode == "rloo":
        return n / (n - 1) * (x - mean)
    if mode in ("dr_grpo", "mean"):
        return x - mean
    raise ValueError(f"group_advantage reference: unknown mode {mode!r}")


def group_advantage(
    scores: torch.Tensor,
    group_ids: torch.Tensor,
    mode: str = "grpo",
    std: str = "unbiased",
    eps: float = 1e-6,
    singleton: str = "zero",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The dict loop: indices collected per group id, statistics per group, written back."""
    members: dict[int, list[int]] = {}
    for i, gid in enumerate(group_ids.tolist()):
        members.setdefault(gid, []).append(i)
    x_all = scores.to(dtype)
    out = torch.empty_like(x_all)
    for gid, indices in members.items():
        index = torch.tensor(indices, device=scores.device)
        x = x_all[index]
        if len(indices) == 1:
            if singleton == "error":
                raise ValueError(f"group_advantage reference: singleton group {gid}")
            out[index] = x if singleton == "raw" else 0.0
            continue
        mean = x.mean()
        out[index] = _group_formula(x, mean, (x - mean).square().sum(), len(indices), mode, std, eps)
    return out


def group_advantage_index_add(
    scores: torch.Tensor,
    group_ids: torch.Tensor,
    mode: str = "grpo",
    std: str = "unbiased",
    eps: float = 1e-6,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The vectorised version: torch.unique(return_inverse) + index_add_ sums; singletons give 0."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    groups = int(inverse.max()) + 1 if inverse.numel() else 0
    x = scores.to(dtype)
    count = torch.zeros(groups, dtype=dtype, device=x.device).index_add_(0, inverse, torch.ones_like(x))
    mean = torch.zeros_like(count).index_add_(0, inverse, x) / count
    centred = x - mean[inverse]
    m2 = torch.zeros_like(count).index_add_(0, inverse, centred.square())
    n = count[inverse]
    advantages = _group_formula(x, mean[inverse], m2[inverse], n, mode, std, eps)
    return torch.where(n > 1, advantages, 0)


def masked_whiten_stats(x: torch.Tensor, mask: torch.Tensor | None, scope: str = "batch") -> torch.Tensor:
    """Float64 (count, Σx, Σx²) over the valid entries: [3] or [B, 3] (scope "row")."""
    valid = _valid(mask, x)
    v = _masked(x, valid, torch.float64)
    dims = (-1,) if scope == "row" else (0, 1)
    return torch.stack([valid.sum(dims).double(), v.sum(dims), v.square().sum(dims)], -1)


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor | None,
    shift_mean: bool = True,
    unbiased: bool = True,
    eps: float = 1e-8,
    scope: str = "batch",
    dtype: torch.dtype = torch.float64,
    stats: torch.Tensor | None = None,
) -> torch.Tensor:
    """(x − μ) / sqrt(var + eps) over the valid entries (+ μ when not shift_mean), 0 outside;
    μ and var from a centred two-pass computation, or from (count, Σx, Σx²) ``stats``."""
    valid = _valid(mask, x)
    v = _masked(x, valid, dtype)
    dims = (-1,) if scope == "row" else (0, 1)
    if stats is None:
        n = valid.sum(dims, keepdim=True).to(dtype)
        mean = v.sum(dims, keepdim=True) / n.clamp(min=1)
        m2 = torch.where(valid, v - mean, 0).square().sum(dims, keepdim=True)
    else:
        s = (
            stats.to(torch.float64).view(-1, 1, 3)
            if scope == "row"
            else stats.to(torch.float64).view(1, 1, 3)
        )
        n = s[..., 0]
        mean64 = s[..., 1] / n.clamp(min=1)
        n, mean, m2 = n.to(dtype), mean64.to(dtype), (s[..., 2] - n * mean64.square()).to(dtype)
    var = m2 / ((n - 1).clamp(min=1) if unbiased else n.clamp(min=1))
    out = (v - mean) / (var + eps).sqrt()
    if not shift_mean:
        out = out + mean
    return torch.where(valid, out, 0)


def rlhf_advantages(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scores: torch.Tensor | None = None,
    token_rewards: torch.Tensor | None = None,
    beta: float,
    estimator: str = "k1",
    log_ratio_clamp: Bounds = None,
    clamp: Bounds = None,
    gamma: float = 1.0,
    lam: float = 0.95,
    mask_mode: str = "skip",
    bootstrap: torch.Tensor | None = None,
    whiten: bool = True,
    shift_mean: bool = True,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """place_at_last_token + kl_penalty + gae + masked_whiten, composed;
    (token_rewards, advantages, returns, kl_row_sum, kl_row_count)."""
    if scores is None and token_rewards is None:
        raise ValueError("rlhf_advantages reference: give 'scores' or 'token_rewards'")
    valid = _valid(mask, logp)
    reward = torch.zeros(valid.shape, dtype=dtype, device=logp.device)
    if scores is not None:
        reward = reward + place_at_last_token(scores, valid, dtype)
    if token_rewards is not None:
        reward = reward + _masked(token_rewards, valid, dtype)
    _, shaped, kl_sum, kl_count = kl_penalty(
        logp, ref_logp, valid, estimator, log_ratio_clamp, clamp, reward, beta, dtype
    )
    assert shaped is not None  # a reward was given
    advantages, returns = gae(shaped, values, valid, gamma, lam, mask_mode, bootstrap, dtype)
    if whiten:
        advantages = masked_whiten(advantages, valid, shift_mean=shift_mean, dtype=dtype)
    return shaped, advantages, returns, kl_sum, kl_count
