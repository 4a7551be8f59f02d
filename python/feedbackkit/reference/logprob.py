"""Reference implementations of the `logprob` family."""

from __future__ import annotations

import torch


def sequence_reduce(
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    mode: str = "sum",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """What a PyTorch user writes: (values * mask).sum(-1), optionally divided by mask.sum(-1),
    computed in `dtype`; the mean of an empty row is 0. Unlike the kernel, a NaN or inf at a
    masked-out position propagates here. Packed rows (cu_seqlens) go through index_add_ on
    per-token row ids."""
    if mask is not None:
        valid = (mask != 0).to(dtype)
        total = (values.to(dtype) * valid).sum(-1)
        count = valid.sum(-1)
    else:
        if cu_seqlens is None:
            raise ValueError("sequence_reduce reference: give 'mask' or 'cu_seqlens'")
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
        rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=values.device), lengths)
        total = torch.zeros(lengths.numel(), dtype=dtype, device=values.device).index_add_(
            0, rows, values.to(dtype)
        )
        count = lengths
    if mode == "sum":
        return total
    return total / count.clamp(min=1).to(dtype)


def sequence_logprob(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    temperature: float = 1.0,
    dtype: torch.dtype = torch.float64,
    entropy: bool = True,
    lse: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """What a PyTorch user writes: log_softmax(logits.to(dtype) / T) gathered at the labels,
    plus (when asked) the entropy and log-sum-exp. Returns (logp, entropy, lse) in `dtype`, None
    for what was not asked; ignored labels give logp 0 and tokens whose labels are all ignored
    give entropy and lse 0."""
    z = logits.to(dtype) / temperature if temperature != 1.0 else logits.to(dtype)
    log_probs = torch.log_softmax(z, dim=-1)
    topk = labels.dim() == logits.dim()
    idx = labels if topk else labels.unsqueeze(-1)
    ignored = idx == ignore_index
    logp = log_probs.gather(-1, idx.masked_fill(ignored, 0).long()).masked_fill(ignored, 0)
    skipped = ignored.all(-1)
    token_entropy = -(log_probs.exp() * log_probs).sum(-1).masked_fill(skipped, 0) if entropy else None
    token_lse = torch.logsumexp(z, dim=-1).masked_fill(skipped, 0) if lse else None
    return (logp if topk else logp.squeeze(-1)), token_entropy, token_lse
