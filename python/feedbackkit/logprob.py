"""Public API of the `logprob` family: per-token log-probabilities and their sequence reductions."""

from __future__ import annotations

from typing import Any, Literal

import torch

from ._arrays import ArrayLike, like_input, to_torch
from .ops import linear_logprob as _linear_ops
from .ops import logprob as _ops

__all__ = ["from_hf", "linear_logprob", "sequence_logprob", "sequence_reduce"]


def sequence_reduce(
    values: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    cu_seqlens: ArrayLike | None = None,
    mode: Literal["sum", "mean"] = "sum",
    check: bool = False,
) -> ArrayLike:
    """Per-sequence sum or mean of token values (e.g. per-token log-probs -> sequence scores).

    Rows are given either by a mask or by packed boundaries:

    - ``values[B, T]`` with ``mask[B, T]`` (bool / uint8 / int32 / int64, nonzero = valid):
      ``out[b] = Σ_t m[b,t]·values[b,t]`` (``sum``) or that divided by ``Σ_t m[b,t]`` (``mean``).
    - ``values[N]`` with ``cu_seqlens[B+1]`` (int32 / int64, flash-attention layout):
      row ``b`` is ``values[cu_seqlens[b]:cu_seqlens[b+1]]``.

    Args:
        values: float32, float64, bfloat16 or float16; any strides. NumPy arrays are accepted on
            the CPU (zero copy) and give a NumPy result.
        mask: validity mask, same shape as ``values``. Masked-out entries are never read into
            the sum, so NaN or inf padding does not leak into a row.
        cu_seqlens: ``[B+1]`` row offsets into packed ``values``; must start at 0, never
            decrease and end at N. On the CPU this is always verified (ValueError otherwise).
            On CUDA verifying needs a host sync, so it happens only with ``check=True``;
            without it a malformed ``cu_seqlens`` gives NaN for the affected rows, never an
            out-of-bounds access.
        mode: ``"sum"`` or ``"mean"``. The mean of an empty row is 0 (and its gradient 0),
            as in torch_scatter's ``scatter_mean``.
        check: on CUDA, verify ``cu_seqlens`` on the host first (synchronises).

    Returns:
        ``[B]`` float32 accumulated in float32, or float64 when ``values`` is float64.
        Differentiable with respect to ``values`` (twice).

    Raises:
        feedbackkit.ArgumentError (a ValueError and TypeError) naming the bad argument.
    """
    op = "sequence_reduce"
    values_t = to_torch(op, "values", values)
    mask_t, cu_t = to_torch(op, "mask", mask), to_torch(op, "cu_seqlens", cu_seqlens)
    if check and values_t is not None and cu_t is not None and cu_t.is_cuda:
        _ops.validate_sequence_reduce(values_t, mask_t, cu_t, mode)
        _ops.validate_cu_seqlens_values(cu_t, values_t.shape[0])
    out = torch.ops.feedbackkit.sequence_reduce(values_t, mask_t, cu_t, mode)
    return like_input(out, values)


def sequence_logprob(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    temperature: float = 1.0,
    return_entropy: bool = False,
    return_lse: bool = False,
    check: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Per-token log-probabilities of `labels` under softmax(logits / temperature).

    With z = logits / T computed in fp32 (fp64 for fp64 logits) inside the kernel:

    - ``logp[..., k] = z[..., labels[..., k]] − logsumexp(z)``, clamped to ≤ 0; 0 (and zero
      gradient) where the label equals ``ignore_index``;
    - ``entropy = −Σ_j p_j log p_j`` with p = softmax(z) (``return_entropy=True``), differentiable;
    - ``lse = logsumexp(z)`` (``return_lse=True``), differentiable.

    A token whose labels are all ignored is skipped entirely: entropy and lse are 0 there.

    Args:
        logits: ``[..., V]`` float32, bfloat16, float16 or float64, any strides (a sliced
            ``logits[:, :-1]`` is read in place, never copied).
        labels: int32 or int64, shape ``[...]`` (one label per token) or ``[..., K]`` (K labels
            per token: the top-k variant). Values in [0, V) or ``ignore_index``: always verified
            on the CPU (ValueError otherwise); on CUDA only with ``check=True`` (a host sync),
            otherwise a bad label gives NaN for that token and its row's gradient, never an
            out-of-bounds read.
        temperature: finite and > 0; applied in fp32, never by dividing low-precision logits.

    Returns:
        logp (float32, float64 for float64 logits; shape of `labels`), then entropy and lse
        (shape of the leading dims) if requested, as a tuple. Backward takes any per-token
        upstream gradient and writes d logits in the logits dtype (computed in fp32); only the
        per-token lse and entropy are saved for it (8 bytes per token).
    """
    if check and isinstance(labels, torch.Tensor) and labels.is_cuda and isinstance(logits, torch.Tensor):
        _ops.validate_sequence_logprob(logits, labels, temperature)
        _ops.validate_labels_values(labels, logits.shape[-1], ignore_index)
    logp, entropy, lse = torch.ops.feedbackkit.sequence_logprob(
        logits, labels, ignore_index, float(temperature)
    )
    if not (return_entropy or return_lse):
        return logp
    return (logp, *([entropy] if return_entropy else []), *([lse] if return_lse else []))


def linear_logprob(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    return_entropy: bool = False,
    return_lse: bool = False,
    vocab_tile: int | None = None,
    check: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """``sequence_logprob(hidden @ weight.T + bias, labels)`` without ever holding the [N, V]
    logits: the vocabulary is processed in tiles of ``vocab_tile`` columns (default: a tile of
    about 2^21 logits on the CPU, 2^24 on CUDA), forward and backward (which recomputes tiles).

    Args:
        hidden: ``[..., H]`` float32 / bfloat16 / float16 / float64 (e.g. final hidden states).
        weight: ``[V, H]`` in the dtype of ``hidden`` (e.g. the LM head weight).
        labels: ``[...]`` int32 / int64, the leading shape of ``hidden``; ``ignore_index`` marks
            tokens to skip (on the CPU they cost no FLOPs).
        bias: optional ``[V]``.
        temperature, return_entropy, return_lse, check: as for :func:`sequence_logprob`.

    Returns:
        logp (and entropy, lse if asked), float32 (float64 for float64 inputs), shaped like
        ``labels``. Differentiable w.r.t. hidden, weight and bias: d weight of each tile is one
        GEMM over all tokens with fp32 accumulation inside it; d hidden accumulates in fp32.
        Extra memory: O(N) per-token state plus one logits tile and its gradient; an fp32
        [N, H] buffer for d hidden in backward.
    """
    lead = labels.shape
    flat_hidden = hidden.reshape(-1, hidden.shape[-1]) if isinstance(hidden, torch.Tensor) else hidden
    flat_labels = labels.reshape(-1) if isinstance(labels, torch.Tensor) else labels
    tile = vocab_tile
    if tile is None and isinstance(flat_hidden, torch.Tensor) and isinstance(weight, torch.Tensor):
        tile = _linear_ops.default_vocab_tile(flat_hidden.shape[0], weight.shape[0], flat_hidden.device)
    if (
        check
        and isinstance(flat_labels, torch.Tensor)
        and flat_labels.is_cuda
        and isinstance(weight, torch.Tensor)
    ):
        _ops.validate_labels_values(flat_labels, weight.shape[0], ignore_index)
    outs = torch.ops.feedbackkit.linear_logprob(
        flat_hidden, weight, flat_labels, bias, ignore_index, float(temperature), int(tile or 1)
    )
    logp, entropy, lse = (o.reshape(lead) for o in outs)
    if not (return_entropy or return_lse):
        return logp
    return (logp, *([entropy] if return_entropy else []), *([lse] if return_lse else []))


def from_hf(*args: Any, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Per-token log-probs of a Hugging Face causal LM without its logits; see feedbackkit.hf.from_hf."""
    from .hf import from_hf as _from_hf

    return _from_hf(*args, **kwargs)
