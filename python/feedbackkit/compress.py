"""Public API of the `compress` family: exact TopK sparsification and error feedback (EF14,
EF21, EF21-W) for data-parallel training.

- :func:`topk` selects the k largest entries by magnitude (or value), exactly: ties go to the
  lowest index, NaN is rejected by default, indices are 64-bit when needed. The order of the
  selected entries is unspecified but deterministic (it depends on the input only).
- :func:`ef21_step` and :func:`ef14_step` run one worker's compression step fused: one selection
  over ``grad − g_i`` (or ``e + lr·grad``) that writes the packed message and updates the state
  in place, without a temporary of the gradient's size.
- :func:`decompress_add` adds every worker's message into a dense tensor in rank order, so each
  rank that decompresses the same messages gets the same bits.
- :func:`xi`, :func:`ef21_constants` and :func:`ef21_stepsize` give the theory's stepsizes.

Arithmetic is in float32 (float64 for float64 tensors) and rounds each operation once, with no
fused multiply-add, so CPU and CUDA produce the same bits as the PyTorch reference.
With ``nan="raise"`` (the default) a NaN in the input raises ValueError and leaves every state
tensor untouched; on CUDA this reads one counter back (a host synchronisation), which
``nan="largest"`` avoids (NaN then ranks above every number and is sent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch

from ._checks import ArgumentError
from .ops import compress as _ops
from .ops.compress import message_index_dtype, message_nbytes, unpack

__all__ = [
    "Message",
    "TopK",
    "decompress_add",
    "ef14_step",
    "ef21_constants",
    "ef21_step",
    "ef21_stepsize",
    "message_index_dtype",
    "message_nbytes",
    "topk",
    "unpack",
    "xi",
]

NanPolicy = Literal["raise", "largest"]


class TopK(NamedTuple):
    values: torch.Tensor  #: [k] the selected entries, signed, in the input's dtype
    indices: torch.Tensor  #: [k] their positions in the flattened input


class Message(NamedTuple):
    packed: torch.Tensor  #: uint8 [message_nbytes]: what crosses the wire
    indices: torch.Tensor  #: [k] view into packed
    values: torch.Tensor  #: [k] view into packed


def _allow_nan(op: str, nan: str) -> bool:
    if nan not in ("raise", "largest"):
        raise ArgumentError(f"{op}: 'nan' must be 'raise' or 'largest'; got {nan!r}")
    return nan == "largest"


def _raise_on_nan(op: str, name: str, status: torch.Tensor, allow_nan: bool) -> None:
    if not allow_nan and int(status.item()) > 0:
        raise ValueError(
            f"{op}: '{name}' contains {int(status.item())} NaN value(s); nothing was updated "
            "(pass nan='largest' to rank NaN above every number instead)"
        )


def topk(
    x: torch.Tensor,
    k: int,
    *,
    by: Literal["abs", "value"] = "abs",
    nan: NanPolicy = "raise",
    index_dtype: torch.dtype = torch.int64,
) -> TopK:
    """The k largest entries of the flattened `x` by magnitude (``by="abs"``) or value.

    Exact: the k-th largest key is found by a radix select over order-preserving integer keys,
    and among entries equal to it the lowest indices win. +0 and −0 tie. Entries
    come unsorted. 1 ≤ k ≤ x.numel()."""
    allow_nan = _allow_nan("topk", nan)
    _ops.validate_topk(x, k, by, index_dtype)
    values, indices, status = torch.ops.feedbackkit.topk(x, k, by, allow_nan, index_dtype)
    _raise_on_nan("topk", "x", status, allow_nan)
    return TopK(values, indices)


def ef21_step(grad: torch.Tensor, g_i: torch.Tensor, k: int, *, nan: NanPolicy = "raise") -> Message:
    """One EF21 worker step (Richtárik, Sokolov, Fatkhullin 2021), fused.

    c = TopK(grad − g_i) with the difference formed in float32 (float64) and each sent value
    rounded to grad's dtype; g_i ← g_i + c in place. Returns the message carrying c. The
    receivers update g ← g + mean_i c_i with :func:`decompress_add`."""
    allow_nan = _allow_nan("ef21_step", nan)
    _ops.validate_step("ef21_step", grad, "g_i", g_i, k)
    _ops.check_not_aliased("ef21_step", "g_i", g_i, grad)
    packed, status = torch.ops.feedbackkit.ef21_step(grad, g_i, k, allow_nan)
    _raise_on_nan("ef21_step", "grad", status, allow_nan)
    return Message(packed, *unpack(packed, k, grad.numel(), grad.dtype))


def ef14_step(
    grad: torch.Tensor, error: torch.Tensor, k: int, lr: float, *, nan: NanPolicy = "raise"
) -> Message:
    """One error-feedback worker step (Seide et al. 2014; Stich et al. 2018), fused.

    t = error + lr·grad (rounded to grad's dtype); v = TopK(t) is sent; error ← t − v in place
    (t everywhere, 0 at the sent entries). The receivers apply x ← x − mean_i v_i."""
    allow_nan = _allow_nan("ef14_step", nan)
    _ops.validate_step("ef14_step", grad, "error", error, k)
    _ops.check_not_aliased("ef14_step", "error", error, grad)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr)):
        raise ArgumentError(f"ef14_step: 'lr' must be a finite number; got {lr!r}")
    packed, status = torch.ops.feedbackkit.ef14_step(grad, error, k, float(lr), allow_nan)
    _raise_on_nan("ef14_step", "grad", status, allow_nan)
    return Message(packed, *unpack(packed, k, grad.numel(), grad.dtype))


def decompress_add(
    out: torch.Tensor,
    indices: torch.Tensor,
    values: torch.Tensor,
    scale: float = 1.0,
    *,
    check: bool = False,
) -> torch.Tensor:
    """out.view(-1)[indices[w, j]] += scale · values[w, j] for w = 0, 1, … in that order; returns out.

    Indices within one row must be distinct (TopK's are). On the CPU out-of-range indices raise
    ValueError before anything is written; the CUDA kernel cannot raise without a host
    synchronisation and skips them. ``check=True`` verifies range and distinctness on any device
    first (a host synchronisation on CUDA)."""
    _ops.validate_decompress(out, indices, values)
    if check:
        _check_indices(out, indices)
    torch.ops.feedbackkit.decompress_add(out, indices, values, float(scale))
    return out


def _check_indices(out: torch.Tensor, indices: torch.Tensor) -> None:
    if indices.dim() != 2:
        raise ArgumentError(f"decompress_add: 'indices' must be 2-D [W, k]; got shape {list(indices.shape)}")
    if indices.numel() == 0:
        return
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= out.numel():
        raise ArgumentError(
            f"decompress_add: 'indices' must lie in [0, {out.numel()}); got values in [{low}, {high}]"
        )
    ordered = indices.sort(dim=1).values
    if bool((ordered[:, 1:] == ordered[:, :-1]).any()):
        raise ArgumentError("decompress_add: 'indices' repeats a position within a row")


# ---- stepsizes -------------------------------------------------------------------------------


def _alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha <= 1.0):
        raise ArgumentError(
            f"'alpha' (the compressor's contraction, k/d for TopK) must be in (0, 1]; got {alpha!r}"
        )
    return float(alpha)


def ef21_constants(alpha: float) -> tuple[float, float]:
    """(θ, β) of EF21's analysis: θ = 1 − √(1−α), β = (1−α)/(1 − √(1−α))."""
    root = math.sqrt(1.0 - _alpha(alpha))
    return 1.0 - root, (1.0 - alpha) / (1.0 - root)


def xi(alpha: float) -> float:
    """ξ = √(β/θ) = (1 + √(1−α))/α − 1 (0 for the identity compressor, α = 1)."""
    return (1.0 + math.sqrt(1.0 - _alpha(alpha))) / alpha - 1.0


def ef21_stepsize(
    L: float, L_i: Sequence[float], alpha: float, mean: Literal["arithmetic", "quadratic"] = "arithmetic"
) -> float:
    """γ = 1 / (L + M·ξ(α)): M = L_AM = mean L_i (EF21-W, "Error Feedback Reloaded") or
    M = L_QM = √(mean L_i²) (the original EF21 analysis)."""
    constants = [float(v) for v in L_i]
    if not constants or any(not math.isfinite(v) or v < 0 for v in constants):
        raise ArgumentError(
            f"ef21_stepsize: 'L_i' must be a non-empty sequence of finite numbers >= 0; got {L_i!r}"
        )
    if not (math.isfinite(L) and L > 0):
        raise ArgumentError(f"ef21_stepsize: 'L' must be a finite number > 0; got {L!r}")
    if mean == "arithmetic":
        m = sum(constants) / len(constants)
    elif mean == "quadratic":
        m = math.sqrt(sum(v * v for v in constants) / len(constants))
    else:
        raise ArgumentError(f"ef21_stepsize: 'mean' must be 'arithmetic' or 'quadratic'; got {mean!r}")
    return 1.0 / (L + m * xi(alpha))
