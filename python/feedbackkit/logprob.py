"""Public API of the `logprob` family: per-token log-probabilities and their sequence reductions."""

from __future__ import annotations

from typing import Literal

import torch

from ._arrays import ArrayLike, like_input, to_torch
from .ops import logprob as _ops

__all__ = ["sequence_reduce"]


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
