"""DDP communication hooks that send TopK messages with error feedback (EF21 and EF14).

Register with ``ddp.register_comm_hook(state, ef21_hook)``. Each bucket step is one of:

- dense (warm-up iterations, buckets under ``min_bucket_numel`` elements, buckets where the
  sparse all-gather would not send fewer bytes than a ring all-reduce, and EF21 buckets whose
  parameters have no state yet under ``init="dense"``): one all-reduce of the bucket. For EF21
  this is the step with the identity compressor, g_i ← ∇f_i, g ← mean_i ∇f_i (what
  g + mean_i(∇f_i − g_i) equals when g = mean_i g_i, without carrying the rounding of the
  difference); for EF14 it sends e + ∇f_i and leaves e = 0.
- sparse: each rank runs the fused worker step (:func:`~feedbackkit.compress.ef21_step` or
  :func:`~feedbackkit.compress.ef14_step`) into a packed message of a size fixed per bucket, one
  all-gather moves all messages, and every rank adds them with
  :func:`~feedbackkit.compress.decompress_add` in rank order, so all ranks hold the same bits.

Both hooks return the value DDP writes into ``.grad``: EF21 returns g, EF14 returns
mean_i v_i. A NaN in any rank's gradient fails the hook's future with ValueError on every rank
(no rank is left waiting in a collective; ``backward()`` re-raises it, wrapped by DDP in a
RuntimeError that carries the message) before g changes; a rank whose own gradient had the NaN leaves its
state untouched, while the others have already folded the step into g_i / e, so continue from
a checkpoint (:func:`~feedbackkit.distributed.load_state`) or :meth:`CompressionState.reset`.
"""

# No `from __future__ import annotations` here: DDP's register_comm_hook compares the hook's
# annotations with dist.GradBucket and torch.futures.Future[torch.Tensor] as objects.

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.distributed as dist

from .._checks import ArgumentError
from ..compress import Message, decompress_add, ef14_step, ef21_step, message_nbytes, unpack
from .state import CompressionState, Method, ParamKey
from .wire import bucket_k, element_size, sparse_saves_bytes

Mode = Literal["warmup", "fallback", "sparse"]


class _BucketStep(NamedTuple):
    """What the hook does with one bucket in one iteration."""

    buffer: torch.Tensor
    bucket_index: int
    keys: tuple[ParamKey, ...]
    numels: tuple[int, ...]
    k: int
    world_size: int
    group: dist.ProcessGroup | None
    mode: Mode


def _plan(state: CompressionState, bucket: dist.GradBucket, method: Method) -> _BucketStep:
    """Validates the bucket, picks its mode and, after the last bucket of an iteration,
    advances the iteration count."""
    state._bind(method)
    buffer = bucket.buffer()
    params = bucket.parameters()
    keys = state._keys(params)
    numels = tuple(p.numel() for p in params)
    numel = buffer.numel()
    world_size = state.world_size
    small = numel < state.min_bucket_numel
    if not small and state.k is not None and state.k > numel:
        raise ArgumentError(
            f"{method}_hook: k={state.k} exceeds the {numel} elements of bucket {bucket.index()} "
            f"(parameters {_describe(keys)}); lower k, use 'ratio', or raise 'min_bucket_numel' above "
            f"{numel} to send such buckets dense"
        )
    k = min(bucket_k(numel, ratio=state.ratio, k=state.k), numel)
    mode: Mode
    if state.iteration < state.warm_until:
        mode = "warmup"
    elif small or not sparse_saves_bytes(numel, k, world_size, buffer.dtype):
        mode = "fallback"
    else:
        mode = "sparse"
    if bucket.is_last():
        state.iteration += 1
    return _BucketStep(buffer, bucket.index(), keys, numels, k, world_size, state.process_group, mode)


def _describe(keys: tuple[ParamKey, ...]) -> str:
    shown = ", ".join(map(repr, keys[:3]))
    return f"{shown}, … ({len(keys)} in all)" if len(keys) > 3 else shown


def _count(state: CompressionState, step: _BucketStep, sparse: bool) -> None:
    dense_payload = step.buffer.numel() * element_size(step.buffer.dtype)
    counters = state.counters
    counters.dense_bytes += dense_payload
    if sparse:
        counters.bytes_sent += message_nbytes(step.buffer.numel(), step.k, step.buffer.dtype)
        counters.sparse_steps += 1
    else:
        counters.bytes_sent += dense_payload
        counters.dense_steps += 1


# ---- collectives ------------------------------------------------------------------------------


def _all_reduce(
    tensor: torch.Tensor, group: dist.ProcessGroup | None
) -> torch.futures.Future[list[torch.Tensor]]:
    work = dist.all_reduce(tensor, group=group, async_op=True)
    assert work is not None
    return work.get_future()


def _all_gather(
    output: torch.Tensor, message: torch.Tensor, group: dist.ProcessGroup | None
) -> torch.futures.Future[list[torch.Tensor]]:
    # torch 2.13 renamed all_gather_into_tensor to all_gather_single (same collective).
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    work = gather(output, message, group=group, async_op=True)
    assert work is not None
    return work.get_future()


# ---- dense steps ------------------------------------------------------------------------------


def _raise_if_nan_dense(method: Method, step: _BucketStep, reduced: torch.Tensor) -> None:
    if bool(torch.isnan(reduced).any()):
        raise ValueError(
            f"{method}_hook: the all-reduced gradient of bucket {step.bucket_index} (parameters "
            f"{_describe(step.keys)}) contains NaN, so some rank's gradient does; the hook state was not "
            "updated"
        )


def _ef21_dense(
    state: CompressionState, step: _BucketStep, store: bool
) -> torch.futures.Future[torch.Tensor]:
    """g_i ← ∇f_i and g ← mean ∇f_i by one all-reduce; the state is kept only if `store`
    (else forgotten: a dense step does not need it)."""
    _count(state, step, sparse=False)
    local = step.buffer.clone() if store else None
    future = _all_reduce(step.buffer, step.group)

    def finish(done: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        done.wait()
        mean = step.buffer.div_(step.world_size)
        _raise_if_nan_dense("ef21", step, mean)
        if local is None:
            state._forget(step.keys)
        else:
            state._store(step.keys, step.numels, {"g_i": local, "g": mean.clone()})
        return mean

    return future.then(finish)


def _ef14_dense(state: CompressionState, step: _BucketStep) -> torch.futures.Future[torch.Tensor]:
    """Sends e + ∇f_i whole (the identity compressor), after which e = 0 and is forgotten."""
    _count(state, step, sparse=False)
    if any(state.param_state(key) for key in step.keys):
        error = state._tensors(step.keys, step.numels, step.buffer, fill=True)
        assert error is not None
        step.buffer.add_(error["e"])
    future = _all_reduce(step.buffer, step.group)

    def finish(done: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        done.wait()
        mean = step.buffer.div_(step.world_size)
        _raise_if_nan_dense("ef14", step, mean)
        state._forget(step.keys)
        return mean

    return future.then(finish)


# ---- sparse steps -----------------------------------------------------------------------------


def _compress(step: _BucketStep, worker_step: Callable[[], Message]) -> torch.Tensor:
    """The rank's packed message; if its gradient holds NaN (the worker step then raises and
    leaves the state untouched), a message of NaN values instead, so that every rank learns of
    it from the all-gather rather than waiting for this rank forever."""
    try:
        return worker_step().packed
    except ArgumentError:
        raise
    except ValueError:
        dtype = step.buffer.dtype
        numel = step.buffer.numel()
        packed = step.buffer.new_zeros(message_nbytes(numel, step.k, dtype), dtype=torch.uint8)
        indices, values = unpack(packed, step.k, numel, dtype)
        indices.copy_(torch.arange(step.k, device=packed.device))
        values.fill_(float("nan"))
        return packed


def _exchange(
    method: Method,
    step: _BucketStep,
    packed: torch.Tensor,
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.futures.Future[torch.Tensor]:
    """All-gathers every rank's message, checks none carries NaN, and returns
    ``apply(indices[W, k], values[W, k])``."""
    numel, dtype = step.buffer.numel(), step.buffer.dtype
    nbytes = packed.numel()
    gathered = packed.new_empty(step.world_size * nbytes)
    future = _all_gather(gathered, packed, step.group)

    def finish(done: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        done.wait()
        indices, values = unpack(gathered.view(step.world_size, nbytes), step.k, numel, dtype)
        poisoned = torch.isnan(values).any(dim=1)
        if bool(poisoned.any()):
            ranks = [int(r) for r in poisoned.nonzero().flatten().tolist()]
            raise ValueError(
                f"{method}_hook: the gradient of rank(s) {ranks} in bucket {step.bucket_index} (parameters "
                f"{_describe(step.keys)}) contains NaN; no rank updated g (those ranks left their state "
                "untouched, the others already updated theirs: restore a checkpoint or reset the state)"
            )
        return apply(indices, values)

    return future.then(finish)


def ef21_hook(state: CompressionState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook for EF21 (Richtárik, Sokolov, Fatkhullin 2021) with TopK.

    Sparse step on rank i: c_i = TopK(∇f_i − g_i), g_i ← g_i + c_i, all-gather the c_j,
    g ← g + (1/W) Σ_j c_j in rank order; the future's value is a copy of g in the bucket's
    buffer, which DDP writes into ``.grad`` (so the optimizer steps x ← x − γ g). See the module
    docstring for the dense steps and NaN handling."""
    step = _plan(state, bucket, "ef21")
    if step.mode == "warmup":
        return _ef21_dense(state, step, store=state.init == "dense")
    if step.mode == "fallback":
        return _ef21_dense(state, step, store=False)
    tensors = state._tensors(step.keys, step.numels, step.buffer, fill=state.init == "zero")
    if tensors is None:  # parameters without state under init="dense": initialise them densely
        return _ef21_dense(state, step, store=True)
    _count(state, step, sparse=True)
    g_i, g = tensors["g_i"], tensors["g"]
    packed = _compress(step, lambda: ef21_step(step.buffer, g_i, step.k))

    def apply(indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        decompress_add(g, indices, values, 1.0 / step.world_size)
        return step.buffer.copy_(g)

    return _exchange("ef21", step, packed, apply)


def ef14_hook(state: CompressionState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook for error feedback (Seide et al. 2014; Stich et al. 2018) with TopK,
    with the error kept in gradient units.

    Sparse step on rank i: t = e + ∇f_i, v_i = TopK(t), e ← t − v_i, all-gather the v_j; the
    future's value is (1/W) Σ_j v_j added in rank order, which DDP writes into ``.grad``. With
    SGD at a constant learning rate γ this is the spec's EF, t = e' + γ∇f_i, x ← x − mean v'
    (e' = γe, v' = γv), and it leaves the learning rate, schedules and momentum to the
    optimizer. See the module docstring for the dense steps and NaN handling."""
    step = _plan(state, bucket, "ef14")
    if step.mode != "sparse":
        return _ef14_dense(state, step)
    _count(state, step, sparse=True)
    tensors = state._tensors(step.keys, step.numels, step.buffer, fill=True)
    assert tensors is not None
    error = tensors["e"]
    packed = _compress(step, lambda: ef14_step(step.buffer, error, step.k, 1.0))

    def apply(indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return decompress_add(step.buffer.zero_(), indices, values, 1.0 / step.world_size)

    return _exchange("ef14", step, packed, apply)
