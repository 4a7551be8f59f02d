"""Reference implementations of the `compress` family, written from the documented semantics of
:mod:`feedbackkit.compress` with plain PyTorch ops: a stable descending sort gives the exact
top-k with ties to the lowest index. Each function mirrors the kernels' rounding (float32
arithmetic, float64 for float64 tensors), so results can be compared bit for bit."""

from __future__ import annotations

import torch


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def topk_indices(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k largest of the flat `keys`, ties to the lowest index, NaN above all."""
    return torch.sort(keys.reshape(-1), descending=True, stable=True).indices[:k]


def topk(x: torch.Tensor, k: int, by: str = "abs") -> tuple[torch.Tensor, torch.Tensor]:
    """(values, int64 indices) of the k largest entries of the flat `x` by magnitude or value."""
    flat = x.reshape(-1)
    indices = topk_indices(flat.abs() if by == "abs" else flat, k)
    return flat[indices], indices


def ef21_step(grad: torch.Tensor, g_i: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """c = TopK(grad − g_i) as (indices, values); g_i ← g_i + c in place."""
    acc = _acc(grad.dtype)
    flat_state = g_i.view(-1)
    difference = grad.reshape(-1).to(acc) - flat_state.to(acc)
    indices = topk_indices(difference.abs(), k)
    values = difference[indices].to(grad.dtype)
    flat_state[indices] = (flat_state[indices].to(acc) + values.to(acc)).to(g_i.dtype)
    return indices, values


def ef14_step(
    grad: torch.Tensor, error: torch.Tensor, k: int, lr: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """v = TopK(t), t = error + lr·grad, as (indices, values); error ← t − v in place."""
    acc = _acc(grad.dtype)
    flat_error = error.view(-1)
    t = (flat_error.to(acc) + grad.reshape(-1).to(acc) * lr).to(error.dtype)
    indices = topk_indices(t.abs(), k)
    values = t[indices]
    t[indices] = 0
    flat_error.copy_(t)
    return indices, values


def decompress_add(
    out: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """out[indices[w, j]] += scale·values[w, j], row by row in order, rounding like the kernels."""
    acc = _acc(out.dtype)
    flat = out.view(-1)
    for row_indices, row_values in zip(indices.long(), values, strict=True):
        flat[row_indices] = (flat[row_indices].to(acc) + row_values.to(acc) * scale).to(out.dtype)
    return out
