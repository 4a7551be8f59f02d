"""torch.library op ``linear_logprob``: log-probabilities of labels under softmax(hidden @ weight.T
+ bias) without materialising the [N, V] logits.

The vocabulary is processed in tiles: each tile of logits is one GEMM through torch (BLAS on the
CPU, cuBLAS on CUDA) and a native kernel folds it into per-token running softmax statistics
(forward) or turns it into the tile of d logits (backward, which recomputes the tile). d weight
of a tile is a single GEMM over all tokens, accumulated in fp32 inside the GEMM; d hidden is
accumulated across tiles in an fp32 buffer. On the CPU, tokens whose label is ignore_index are
dropped before any GEMM; on CUDA that would need a host sync, so there they are computed and
zeroed.
"""

from __future__ import annotations

import torch

from .. import _native
from .._checks import INDEX_DTYPES, ArgumentError, check_same_device, check_tensor
from ._library import LIB, launch, register, view
from .logprob import LOGIT_DTYPES, stat_dtype

LIB.define(
    "linear_logprob(Tensor hidden, Tensor weight, Tensor labels, Tensor? bias, int ignore_index, "
    "float temperature, int vocab_tile) -> (Tensor logp, Tensor entropy, Tensor lse)"
)
LIB.define(
    "linear_logprob_backward(Tensor grad_logp, Tensor grad_entropy, Tensor grad_lse, Tensor hidden, "
    "Tensor weight, Tensor labels, Tensor? bias, Tensor entropy, Tensor lse, int ignore_index, "
    "float temperature, int vocab_tile, bool weight_grad) "
    "-> (Tensor grad_hidden, Tensor grad_weight, Tensor grad_bias)"
)

TILE_ELEMENTS = {"cpu": 1 << 21, "cuda": 1 << 24}  # logits per tile: 8 MiB fp32 on CPU, 32 MiB bf16 on GPU


def default_vocab_tile(tokens: int, vocab: int, device: torch.device) -> int:
    """Vocabulary tile width that keeps a [tokens, tile] logits tile within the device budget."""
    budget = TILE_ELEMENTS["cuda" if device.type == "cuda" else "cpu"]
    tile = budget // max(tokens, 1) // 128 * 128
    return max(128, min(vocab, tile))


def validate_linear_logprob(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None,
    temperature: float,
    vocab_tile: int,
) -> None:
    op = "linear_logprob"
    check_tensor(op, "hidden", hidden, dtypes=LOGIT_DTYPES, ndim=2, shape="[N, H]")
    check_tensor(op, "weight", weight, dtypes=LOGIT_DTYPES, ndim=2, shape="[V, H]")
    check_tensor(op, "labels", labels, dtypes=INDEX_DTYPES, ndim=1, shape="[N]")
    if weight.dtype != hidden.dtype:
        raise ArgumentError(
            f"{op}: 'weight' must have the dtype of 'hidden' ({hidden.dtype}); got {weight.dtype}"
        )
    if weight.shape[1] != hidden.shape[1]:
        raise ArgumentError(
            f"{op}: 'weight' must be [V, H] with H = {hidden.shape[1]} (from 'hidden'); "
            f"got {list(weight.shape)}"
        )
    if weight.shape[0] < 1:
        raise ArgumentError(f"{op}: 'weight' must have V >= 1 rows; got {list(weight.shape)}")
    if labels.shape[0] != hidden.shape[0]:
        raise ArgumentError(f"{op}: 'labels' must have N = {hidden.shape[0]} entries; got {labels.shape[0]}")
    if bias is not None:
        check_tensor(op, "bias", bias, dtypes=(hidden.dtype,), ndim=1, shape="[V]")
        if bias.shape[0] != weight.shape[0]:
            raise ArgumentError(f"{op}: 'bias' must have V = {weight.shape[0]} entries; got {bias.shape[0]}")
    if not (temperature > 0 and temperature < float("inf")):
        raise ArgumentError(f"{op}: 'temperature' must be a finite number > 0; got {temperature}")
    if vocab_tile < 1:
        raise ArgumentError(f"{op}: 'vocab_tile' must be >= 1; got {vocab_tile}")
    check_same_device(op, "hidden", {"hidden": hidden, "weight": weight, "labels": labels, "bias": bias})


class _TileBuffer:
    """One flat buffer reused for every [rows, width] tile (width <= tile), so a single tile is
    alive at a time instead of the previous one lingering while the next is computed."""

    def __init__(self, rows: int, tile: int, like: torch.Tensor) -> None:
        self.rows = rows
        self.flat = like.new_empty((rows * tile,))

    def view(self, width: int) -> torch.Tensor:
        return self.flat[: self.rows * width].view(self.rows, width)


def _tile_logits(hidden, weight, bias, v0: int, v1: int, buffer: _TileBuffer) -> torch.Tensor:
    out = buffer.view(v1 - v0)
    w = weight[v0:v1]
    if bias is None:
        return torch.mm(hidden, w.t(), out=out)
    return torch.addmm(bias[v0:v1], hidden, w.t(), out=out)


def _bad_labels(labels: torch.Tensor, vocab: int, ignore_index: int) -> torch.Tensor:
    return (labels != ignore_index) & ((labels < 0) | (labels >= vocab))


def _kept_rows(labels: torch.Tensor, ignore_index: int) -> torch.Tensor | None:
    """Indices of the tokens to compute (CPU only: a host sync is free there); None = all."""
    if labels.is_cuda:
        return None
    keep = (labels != ignore_index).nonzero().squeeze(1)
    return None if keep.numel() == labels.numel() else keep


def _linear_logprob_fake(hidden, weight, labels, bias, ignore_index, temperature, vocab_tile):
    validate_linear_logprob(hidden, weight, labels, bias, temperature, vocab_tile)
    dtype = stat_dtype(hidden.dtype)
    n = hidden.shape[0]
    return tuple(hidden.new_empty((n,), dtype=dtype) for _ in range(3))


def _linear_logprob_impl(hidden, weight, labels, bias, ignore_index, temperature, vocab_tile):
    logp, entropy, lse = _linear_logprob_fake(
        hidden, weight, labels, bias, ignore_index, temperature, vocab_tile
    )
    vocab = weight.shape[0]
    if not labels.is_cuda:
        _native.cpu().validate_labels(view(labels), vocab, ignore_index)
    keep = _kept_rows(labels, ignore_index)
    h, y = (hidden, labels) if keep is None else (hidden.index_select(0, keep), labels.index_select(0, keep))
    n, dtype = h.shape[0], logp.dtype
    m = torch.full((n,), float("-inf"), dtype=dtype, device=h.device)
    s, t, label_logit = (torch.zeros(n, dtype=dtype, device=h.device) for _ in range(3))
    buffer = _TileBuffer(n, min(vocab_tile, vocab), h)
    for v0 in range(0, vocab, vocab_tile):
        tile = _tile_logits(h, weight, bias, v0, min(vocab, v0 + vocab_tile), buffer)
        launch(
            "linear_logprob_tile_forward",
            tile,
            view(tile),
            view(y),
            v0,
            ignore_index,
            temperature,
            view(m),
            view(s),
            view(t),
            view(label_logit),
        )
    valid = y != ignore_index
    log_s = torch.log(s)
    token_lse = torch.where(valid, m + log_s, 0)
    token_entropy = torch.where(valid, log_s - t / s, 0)
    token_logp = torch.where(valid, (label_logit - token_lse).clamp(max=0), 0)
    # CUDA skips the label check (it would sync): an out-of-range label gives NaN, never a guess.
    token_logp = torch.where(_bad_labels(y, vocab, ignore_index), float("nan"), token_logp)
    for out, value in ((logp, token_logp), (entropy, token_entropy), (lse, token_lse)):
        if keep is None:
            out.copy_(value)
        else:
            out.zero_().index_copy_(0, keep, value)
    return logp, entropy, lse


# Argument order of linear_logprob_backward (see its schema above).
_BACKWARD_ARGS = [
    "grad_logp",
    "grad_entropy",
    "grad_lse",
    "hidden",
    "weight",
    "labels",
    "bias",
    "entropy",
    "lse",
    "ignore_index",
    "temperature",
    "vocab_tile",
    "weight_grad",
]


def _linear_logprob_backward_fake(*args):
    """d hidden, d weight, d bias; the last two are empty when weight_grad is False (frozen head)."""
    a = dict(zip(_BACKWARD_ARGS, args, strict=True))
    hidden, weight, bias, weight_grad = a["hidden"], a["weight"], a["bias"], a["weight_grad"]
    grad_weight = torch.empty_like(weight) if weight_grad else weight.new_empty((0,))
    grad_bias = torch.empty_like(bias) if bias is not None and weight_grad else hidden.new_empty((0,))
    return torch.empty_like(hidden), grad_weight, grad_bias


def _linear_logprob_backward_impl(*args):
    (
        grad_logp,
        grad_entropy,
        grad_lse,
        hidden,
        weight,
        labels,
        bias,
        entropy,
        lse,
        ignore_index,
        temperature,
        vocab_tile,
        weight_grad,
    ) = args
    grad_hidden, grad_weight, grad_bias = _linear_logprob_backward_fake(*args)
    vocab = weight.shape[0]
    keep = _kept_rows(labels, ignore_index)

    def rows(x: torch.Tensor) -> torch.Tensor:
        return x if keep is None else x.index_select(0, keep)

    h, y = rows(hidden), rows(labels)
    acc = lse.dtype
    valid = y != ignore_index
    g_logp = torch.where(valid, rows(grad_logp).to(acc), 0).contiguous()
    g_entropy = torch.where(valid, rows(grad_entropy).to(acc), 0).contiguous()
    coef = torch.where(valid, g_logp - rows(grad_lse).to(acc), 0)
    coef = torch.where(_bad_labels(y, vocab, ignore_index), float("nan"), coef).contiguous()
    token_lse, token_entropy = rows(lse).contiguous(), rows(entropy).contiguous()
    dh = torch.zeros(h.shape, dtype=acc, device=h.device)  # fp32 accumulator across tiles
    tiles, dtiles = (_TileBuffer(h.shape[0], min(vocab_tile, vocab), h) for _ in range(2))
    bias_acc = torch.zeros(vocab, dtype=acc, device=h.device) if bias is not None and weight_grad else None
    for v0 in range(0, vocab, vocab_tile):
        v1 = min(vocab, v0 + vocab_tile)
        tile = _tile_logits(h, weight, bias, v0, v1, tiles)
        dtile = dtiles.view(v1 - v0)
        launch(
            "linear_logprob_tile_backward",
            tile,
            view(tile),
            view(y),
            v0,
            ignore_index,
            temperature,
            view(token_lse),
            view(token_entropy),
            view(coef),
            view(g_entropy),
            view(g_logp),
            view(dtile),
        )
        if dh.dtype == dtile.dtype:
            dh.addmm_(dtile, weight[v0:v1])
        else:  # low-precision GEMM (fp32 inside), then accumulated in fp32 across tiles
            dh += torch.mm(dtile, weight[v0:v1])
        if weight_grad:  # all tokens in one GEMM: fp32 accumulation inside it
            torch.mm(dtile.t(), h, out=grad_weight[v0:v1])
        if bias_acc is not None:
            bias_acc[v0:v1] = dtile.sum(0, dtype=acc)
    if keep is None:
        grad_hidden.copy_(dh)
    else:
        grad_hidden.zero_().index_copy_(0, keep, dh.to(grad_hidden.dtype))
    if bias_acc is not None:
        grad_bias.copy_(bias_acc)
    return grad_hidden, grad_weight, grad_bias


def _setup_context(ctx, inputs, output):
    hidden, weight, labels, bias, ignore_index, temperature, vocab_tile = inputs
    _, entropy, lse = output
    ctx.save_for_backward(hidden, weight, labels, bias, entropy, lse)
    ctx.ignore_index, ctx.temperature, ctx.vocab_tile = ignore_index, temperature, vocab_tile


def _backward(ctx, grad_logp, grad_entropy, grad_lse):
    bias = ctx.saved_tensors[3]
    weight_grad = ctx.needs_input_grad[1] or (bias is not None and ctx.needs_input_grad[3])
    # saved_tensors are in the schema's order: hidden, weight, labels, bias, entropy, lse.
    grad_hidden, grad_weight, grad_bias = torch.ops.feedbackkit.linear_logprob_backward(
        grad_logp,
        grad_entropy,
        grad_lse,
        *ctx.saved_tensors,
        ctx.ignore_index,
        ctx.temperature,
        ctx.vocab_tile,
        weight_grad,
    )
    if not weight_grad:
        grad_weight = grad_bias = None
    return grad_hidden, grad_weight, None, grad_bias if bias is not None else None, None, None, None


register("linear_logprob", _linear_logprob_impl, _linear_logprob_fake, _backward, _setup_context)
register("linear_logprob_backward", _linear_logprob_backward_impl, _linear_logprob_backward_fake)

__all__ = ["default_vocab_tile", "validate_linear_logprob"]
