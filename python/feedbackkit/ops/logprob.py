"""torch.library ops of the `logprob` family.

``sequence_reduce`` is the template every op follows (docs/adding_an_op.md):

1. ``LIB.define`` the schema; validate arguments in one function used by the fake and real impls.
2. A fake (meta) impl that only allocates the output, so torch.compile(fullgraph=True) traces it.
3. One real impl registered for CPU and CUDA: allocate outputs with torch, hand views to the
   torch-free native kernel (`launch`), never synchronise.
4. ``register_autograd`` with a backward that is itself an op (with its own fake impl and, where
   useful, its own autograd formula for double backward).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _native
from .._checks import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    MASK_DTYPES,
    ArgumentError,
    check_choice,
    check_same_device,
    check_tensor,
)
from ._library import LIB, launch, optional_view, register, view

# Must match csrc/logprob/sequence_reduce.h::ReduceMode.
REDUCE_MODES = {"sum": 0, "mean": 1}

LIB.define("sequence_reduce(Tensor values, Tensor? mask, Tensor? cu_seqlens, str mode) -> Tensor")
LIB.define(
    "sequence_reduce_backward(Tensor grad, Tensor? mask, Tensor? cu_seqlens, str mode, "
    "SymInt[] values_shape, ScalarType values_dtype) -> Tensor"
)


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of a statistic computed from `dtype` inputs: float64 stays float64, the rest float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def validate_sequence_reduce(
    values: torch.Tensor, mask: torch.Tensor | None, cu_seqlens: torch.Tensor | None, mode: str
) -> int:
    """Checks the arguments of sequence_reduce and returns the number of rows B."""
    op = "sequence_reduce"
    check_tensor(op, "values", values, dtypes=FLOAT_DTYPES)
    check_choice(op, "mode", mode, REDUCE_MODES)
    if (mask is None) == (cu_seqlens is None):
        raise ArgumentError(f"{op}: give exactly one of 'mask' ([B, T]) and 'cu_seqlens' ([B+1])")
    if mask is not None:
        check_tensor(op, "values", values, dtypes=FLOAT_DTYPES, ndim=2, shape="[B, T] when 'mask' is given")
        check_tensor(op, "mask", mask, dtypes=MASK_DTYPES, ndim=2, shape="[B, T]")
        if mask.shape != values.shape:
            raise ArgumentError(
                f"{op}: 'mask' must have the shape of 'values' {list(values.shape)}; got {list(mask.shape)}"
            )
        batch = values.shape[0]
    else:
        check_tensor(
            op, "values", values, dtypes=FLOAT_DTYPES, ndim=1, shape="[N] when 'cu_seqlens' is given"
        )
        check_tensor(op, "cu_seqlens", cu_seqlens, dtypes=INDEX_DTYPES, ndim=1, shape="[B+1]")
        if cu_seqlens.shape[0] < 1:  # type: ignore[union-attr]
            raise ArgumentError(f"{op}: 'cu_seqlens' must have at least one entry (B+1 >= 1); got 0")
        batch = cu_seqlens.shape[0] - 1  # type: ignore[union-attr]
    check_same_device(op, "values", {"values": values, "mask": mask, "cu_seqlens": cu_seqlens})
    return batch


def _sequence_reduce_fake(values, mask, cu_seqlens, mode):
    batch = validate_sequence_reduce(values, mask, cu_seqlens, mode)
    return values.new_empty((batch,), dtype=stat_dtype(values.dtype))


def _sequence_reduce_impl(values, mask, cu_seqlens, mode):
    out = _sequence_reduce_fake(values, mask, cu_seqlens, mode)
    launch(
        "sequence_reduce",
        values,
        view(values),
        optional_view(mask),
        optional_view(cu_seqlens),
        REDUCE_MODES[mode],
        view(out),
    )
    return out


def _sequence_reduce_backward_fake(grad, mask, cu_seqlens, mode, values_shape, values_dtype):
    check_tensor("sequence_reduce_backward", "grad", grad, dtypes=(stat_dtype(values_dtype),), ndim=1)
    return grad.new_empty(values_shape, dtype=values_dtype)


def _sequence_reduce_backward_impl(grad, mask, cu_seqlens, mode, values_shape, values_dtype):
    grad_values = _sequence_reduce_backward_fake(grad, mask, cu_seqlens, mode, values_shape, values_dtype)
    validate_sequence_reduce(grad_values, mask, cu_seqlens, mode)
    launch(
        "sequence_reduce_backward",
        grad,
        view(grad),
        optional_view(mask),
        optional_view(cu_seqlens),
        REDUCE_MODES[mode],
        view(grad_values),
    )
    return grad_values


def _setup_context(ctx, inputs, output):
    values, mask, cu_seqlens, mode = inputs
    ctx.save_for_backward(mask, cu_seqlens)
    ctx.mode = mode
    ctx.values_shape = values.shape
    ctx.values_dtype = values.dtype


def _backward(ctx, grad):
    mask, cu_seqlens = ctx.saved_tensors
    grad_values = torch.ops.feedbackkit.sequence_reduce_backward(
        grad, mask, cu_seqlens, ctx.mode, ctx.values_shape, ctx.values_dtype
    )
    return grad_values, None, None, None


def _setup_backward_context(ctx, inputs, output):
    _, mask, cu_seqlens, mode, _, _ = inputs
    ctx.save_for_backward(mask, cu_seqlens)
    ctx.mode = mode


def _backward_of_backward(ctx, grad_grad_values):
    # The backward is linear in `grad`: its vector-Jacobian product is the forward reduction.
    mask, cu_seqlens = ctx.saved_tensors
    grad_grad = torch.ops.feedbackkit.sequence_reduce(grad_grad_values, mask, cu_seqlens, ctx.mode)
    return grad_grad, None, None, None, None, None


def validate_cu_seqlens_values(cu_seqlens: torch.Tensor, n: int) -> None:
    """Host-side data check of cu_seqlens (copies it to the CPU: a host sync on CUDA)."""
    host = cu_seqlens.cpu()  # kept alive while the native check reads it
    _native.cpu().validate_cu_seqlens(view(host), n)


register("sequence_reduce", _sequence_reduce_impl, _sequence_reduce_fake, _backward, _setup_context)
register(
    "sequence_reduce_backward",
    _sequence_reduce_backward_impl,
    _sequence_reduce_backward_fake,
    _backward_of_backward,
    _setup_backward_context,
)


# ---- sequence_logprob ------------------------------------------------------------------------

LIB.define(
    "sequence_logprob(Tensor logits, Tensor labels, int ignore_index, float temperature) "
    "-> (Tensor logp, Tensor entropy, Tensor lse)"
)
LIB.define(
    "sequence_logprob_backward(Tensor grad_logp, Tensor? grad_entropy, Tensor? grad_lse, Tensor logits, "
    "Tensor labels, Tensor entropy, Tensor lse, int ignore_index, float temperature) -> Tensor"
)

LOGIT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def validate_sequence_logprob(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> None:
    """Checks dtypes, shapes, devices and the temperature of sequence_logprob."""
    op = "sequence_logprob"
    check_tensor(op, "logits", logits, dtypes=LOGIT_DTYPES)
    check_tensor(op, "labels", labels, dtypes=INDEX_DTYPES)
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ArgumentError(f"{op}: 'logits' must be [..., V] with V >= 1; got shape {list(logits.shape)}")
    lead = logits.shape[:-1]
    if labels.shape != lead and (labels.dim() != logits.dim() or labels.shape[:-1] != lead):
        raise ArgumentError(
            f"{op}: 'labels' must have shape {list(lead)} (one label per token) or {[*lead, 'K']} "
            f"(K labels per token) for 'logits' of shape {list(logits.shape)}; got {list(labels.shape)}"
        )
    if not (temperature > 0 and temperature < float("inf")):
        raise ArgumentError(f"{op}: 'temperature' must be a finite number > 0; got {temperature}")
    check_same_device(op, "logits", {"logits": logits, "labels": labels})


def _sequence_logprob_fake(logits, labels, ignore_index, temperature):
    validate_sequence_logprob(logits, labels, temperature)
    dtype = stat_dtype(logits.dtype)
    lead = logits.shape[:-1]
    return (
        logits.new_empty(labels.shape, dtype=dtype),
        logits.new_empty(lead, dtype=dtype),
        logits.new_empty(lead, dtype=dtype),
    )


def _sequence_logprob_impl(logits, labels, ignore_index, temperature):
    logp, entropy, lse = _sequence_logprob_fake(logits, labels, ignore_index, temperature)
    launch(
        "sequence_logprob",
        logits,
        view(logits),
        view(labels),
        ignore_index,
        temperature,
        view(logp),
        view(entropy),
        view(lse),
    )
    return logp, entropy, lse


def _sequence_logprob_backward_fake(
    grad_logp, grad_entropy, grad_lse, logits, labels, entropy, lse, ignore_index, temperature
):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


def _sequence_logprob_backward_impl(
    grad_logp, grad_entropy, grad_lse, logits, labels, entropy, lse, ignore_index, temperature
):
    grad_logits = _sequence_logprob_backward_fake(
        grad_logp, grad_entropy, grad_lse, logits, labels, entropy, lse, ignore_index, temperature
    )
    launch(
        "sequence_logprob_backward",
        logits,
        view(grad_logp),
        optional_view(grad_entropy),
        optional_view(grad_lse),
        view(logits),
        view(labels),
        view(entropy),
        view(lse),
        ignore_index,
        temperature,
        view(grad_logits),
    )
    return grad_logits


def _setup_logprob_context(ctx, inputs, output):
    logits, labels, ignore_index, temperature = inputs
    _, entropy, lse = output
    ctx.save_for_backward(logits, labels, entropy, lse)
    ctx.ignore_index = ignore_index
    ctx.temperature = temperature


def _logprob_backward(ctx, grad_logp, grad_entropy, grad_lse):
    logits, labels, entropy, lse = ctx.saved_tensors
    if grad_logp is None:
        grad_logp = torch.zeros_like(labels, dtype=lse.dtype)
    grad_logits = torch.ops.feedbackkit.sequence_logprob_backward(
        grad_logp, grad_entropy, grad_lse, logits, labels, entropy, lse, ctx.ignore_index, ctx.temperature
    )
    return grad_logits, None, None, None


def validate_labels_values(labels: torch.Tensor, vocab: int, ignore_index: int) -> None:
    """Host-side range check of labels (copies them to the CPU: a host sync on CUDA)."""
    host = labels.cpu()  # kept alive while the native check reads it
    _native.cpu().validate_labels(view(host), vocab, ignore_index)


register(
    "sequence_logprob",
    _sequence_logprob_impl,
    _sequence_logprob_fake,
    _logprob_backward,
    _setup_logprob_context,
)
register("sequence_logprob_backward", _sequence_logprob_backward_impl, _sequence_logprob_backward_fake)

__all__: Sequence[str] = [
    "LOGIT_DTYPES",
    "REDUCE_MODES",
    "stat_dtype",
    "validate_cu_seqlens_values",
    "validate_labels_values",
    "validate_sequence_logprob",
    "validate_sequence_reduce",
]
