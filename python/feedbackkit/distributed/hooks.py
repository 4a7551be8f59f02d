"""DDP communication hooks that send TopK messages with error feedback (EF21 and EF14).

Register with ``ddp.register_comm_hook(state, ef21_hook)``. Under ``granularity="bucket"``
(the default) each bucket step is one of:

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

Under ``granularity="parameter"`` warm-up iterations (and every step of a single rank) are the
same dense all-reduce; after the warm-up each bucket is one all-gather of a message made of one
part per parameter (:func:`~feedbackkit.distributed.parameter_part`): first the parts of the
parameters sent dense, in bucket order (each parameter's values, padded to 8 bytes), then the
TopK messages of the others, in bucket order (the fused worker step on the parameter's slice of
the bucket and of the state, k_p entries with indices into the parameter). Receivers sum the
dense parts in rank order and divide by W, which for EF21 is the dense step above (g_i ← ∇f_i,
g ← mean_i ∇f_i, and the state is dropped) and for EF14 sends e + ∇f_i and leaves e = 0; and
they add the TopK messages parameter by parameter with
:func:`~feedbackkit.compress.decompress_add` in rank order. Under EF21 with ``init="dense"``, a
parameter due for TopK that has no state yet is sent dense once and keeps g_i ← ∇f_i,
g ← mean_i ∇f_i. Every choice depends on the parameter alone, never on its bucket. The bucket
is checked for NaN once before any state changes (one host synchronisation per bucket on CUDA);
the per-parameter steps then run with ``nan="largest"``, without one each.

Both hooks return the value DDP writes into ``.grad``: EF21 returns g, EF14 returns
mean_i v_i. A NaN in any rank's gradient fails the hook's future with ValueError on every rank
(no rank is left waiting in a collective; ``backward()`` re-raises it, wrapped by DDP in a
RuntimeError that carries the message) before g changes; a rank whose own gradient had the NaN leaves its
state untouched, while the others have already folded the step into g_i / e, so continue from
a checkpoint (:func:`~feedbackkit.distributed.load_state`) or :meth:`CompressionState.reset`.
"""

# No `from __future__ import annotations` here: DDP's register_comm_hook compares the hook's
# annotations with dist.GradBucket and torch.futures.Future[torch.Tensor] as objects.

import functools
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.distributed as dist

from .._checks import ArgumentError
from ..compress import Message, decompress_add, ef14_step, ef21_step, message_nbytes, unpack
from .state import CompressionState, Method, ParamKey
from .wire import ParameterPart, bucket_k, element_size, parameter_part, sparse_saves_bytes

#: "parts": granularity="parameter" after the warm-up, one all-gather of per-parameter parts
Mode = Literal["warmup", "fallback", "sparse", "parts"]


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
    per_parameter = state.granularity == "parameter"
    small = numel < state.min_bucket_numel
    if not per_parameter and not small and state.k is not None and state.k > numel:
        raise ArgumentError(
            f"{method}_hook: k={state.k} exceeds the {numel} elements of bucket {bucket.index()} "
            f"(parameters {_describe(keys)}); lower k, use 'ratio', or raise 'min_bucket_numel' above "
            f"{numel} to send such buckets dense"
        )
    k = min(bucket_k(numel, ratio=state.ratio, k=state.k), numel)
    mode: Mode
    if state.iteration < state.warm_until:
        mode = "warmup"
    elif per_parameter:
        mode = "parts" if world_size >= 2 else "fallback"
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
        # granularity="parameter" counts parameter steps, so counters ignore the bucket layout
        counters.dense_steps += len(step.keys) if state.granularity == "parameter" else 1


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
        _poison(*unpack(packed, step.k, numel, dtype))
        return packed


def _poison(indices: torch.Tensor, values: torch.Tensor) -> None:
    """Fills one TopK message with valid, distinct indices and NaN values."""
    indices.copy_(torch.arange(indices.numel(), device=indices.device))
    values.fill_(float("nan"))


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


# ---- granularity="parameter" -----------------------------------------------------------------


class _Part(NamedTuple):
    """One parameter's part of a bucket message."""

    key: ParamKey
    offset: int  #: the parameter's first element in the bucket
    numel: int
    k: int  #: TopK entries (sparse) or numel (dense)
    start: int  #: the part's first byte in the message
    nbytes: int


class _Parts(NamedTuple):
    """The message layout of a bucket: the dense parts, in bucket order, then the sparse ones."""

    dense: tuple[_Part, ...]  #: sent as values (including EF21's initialising parameters)
    sparse: tuple[_Part, ...]  #: sent as TopK messages
    init: frozenset[ParamKey]  #: dense parts that keep EF21 state (g_i ← ∇f_i, g ← mean ∇f_i)
    dense_nbytes: int  #: bytes of the dense region at the start of the message
    nbytes: int


@functools.lru_cache(maxsize=4096)
def _part(
    numel: int, dtype: torch.dtype, ratio: float | None, k: int | None, min_numel: int
) -> ParameterPart:
    return parameter_part(numel, dtype, ratio=ratio, k=k, min_numel=min_numel)


def _parts(state: CompressionState, step: _BucketStep, method: Method) -> _Parts:
    dtype = step.buffer.dtype
    initialise = method == "ef21" and state.init == "dense"
    dense: list[tuple[ParamKey, int, int]] = []
    sparse: list[tuple[ParamKey, int, int, ParameterPart]] = []
    init: set[ParamKey] = set()
    offset = 0
    for key, numel in zip(step.keys, step.numels, strict=True):
        part = _part(numel, dtype, state.ratio, state.k, state.min_bucket_numel)
        if part.sparse and initialise and not state._has_state(key):
            init.add(key)  # no state yet under init="dense": sent dense once, keeping g_i and g
            dense.append((key, offset, numel))
        elif part.sparse:
            sparse.append((key, offset, numel, part))
        else:
            dense.append((key, offset, numel))
        offset += numel
    start = 0
    dense_parts = []
    size = element_size(dtype)
    for key, offset, numel in dense:  # packed back to back, each padded to 8 bytes
        nbytes = -(-numel * size // 8) * 8
        dense_parts.append(_Part(key, offset, numel, numel, start, nbytes))
        start += nbytes
    dense_nbytes = start
    sparse_parts = []
    for key, offset, numel, part in sparse:
        sparse_parts.append(_Part(key, offset, numel, part.k, start, part.nbytes))
        start += part.nbytes
    return _Parts(tuple(dense_parts), tuple(sparse_parts), frozenset(init), dense_nbytes, start)


def _count_parts(state: CompressionState, step: _BucketStep, parts: _Parts) -> None:
    counters = state.counters
    counters.dense_bytes += step.buffer.numel() * element_size(step.buffer.dtype)
    counters.bytes_sent += parts.nbytes
    counters.sparse_steps += len(parts.sparse)
    counters.dense_steps += len(parts.dense)


def _slice(tensor: torch.Tensor, part: _Part) -> torch.Tensor:
    return tensor[part.offset : part.offset + part.numel]


def _dense_values(rows: torch.Tensor, parts: _Parts, dtype: torch.dtype) -> torch.Tensor:
    """The dense region of messages ``rows[..., nbytes]`` as values (padding included)."""
    return rows[..., : parts.dense_nbytes].view(dtype)


def _sparse_message(rows: torch.Tensor, part: _Part, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return unpack(rows[..., part.start : part.start + part.nbytes], part.k, part.numel, dtype)


def _poisoned(step: _BucketStep, parts: _Parts) -> torch.Tensor:
    """A message whose values are all NaN (valid indices), sent by a rank whose gradient holds NaN
    so that every rank raises after the all-gather; the state stays untouched."""
    dtype = step.buffer.dtype
    packed = step.buffer.new_zeros(parts.nbytes, dtype=torch.uint8)
    _dense_values(packed, parts, dtype).fill_(float("nan"))
    for part in parts.sparse:
        _poison(*_sparse_message(packed, part, dtype))
    return packed


def _pack(
    step: _BucketStep,
    parts: _Parts,
    dense_value: Callable[[_Part], torch.Tensor],
    sparse_message: Callable[[_Part], torch.Tensor],
) -> torch.Tensor:
    """The rank's message: `dense_value(part)` for the dense parts, then `sparse_message(part)`
    (a packed TopK message) for the sparse ones."""
    pieces = []
    if parts.dense:
        region = step.buffer.new_zeros(parts.dense_nbytes, dtype=torch.uint8)
        values = _dense_values(region, parts, step.buffer.dtype)
        size = element_size(step.buffer.dtype)
        for part in parts.dense:
            first = part.start // size
            values[first : first + part.numel].copy_(dense_value(part))
        pieces.append(region)
    pieces += [sparse_message(part) for part in parts.sparse]
    return torch.cat(pieces)


def _exchange_parts(
    method: Method,
    state: CompressionState,
    step: _BucketStep,
    parts: _Parts,
    packed: torch.Tensor,
    apply: Callable[[_Part, torch.Tensor, torch.Tensor], None],
) -> torch.futures.Future[torch.Tensor]:
    """All-gathers the messages, checks that none carries NaN, writes the dense parameters'
    rank-order mean into the bucket after calling ``apply(part, indices[W, k], values[W, k])`` for
    every sparse part, drops the state of dense parameters (EF21 keeps it for initialising ones) and
    returns the bucket."""
    dtype = step.buffer.dtype
    world_size = step.world_size
    rank = dist.get_rank(step.group)
    gathered = packed.new_empty(world_size * parts.nbytes)
    future = _all_gather(gathered, packed, step.group)

    def finish(done: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        done.wait()
        rows = gathered.view(world_size, parts.nbytes)
        dense = _dense_values(rows, parts, dtype)
        sparse = [_sparse_message(rows, part, dtype) for part in parts.sparse]
        values = torch.cat([dense, *(v for _, v in sparse)], dim=1)
        poisoned = torch.isnan(values).any(dim=1)
        if bool(poisoned.any()):
            ranks = [int(r) for r in poisoned.nonzero().flatten().tolist()]
            raise ValueError(
                f"{method}_hook: the gradient of rank(s) {ranks} in bucket {step.bucket_index} (parameters "
                f"{_describe(step.keys)}) contains NaN; no rank updated g (those ranks left their state "
                "untouched, the others already updated theirs: restore a checkpoint or reset the state)"
            )
        for part, (indices, part_values) in zip(parts.sparse, sparse, strict=True):
            apply(part, indices, part_values)
        if parts.dense:
            mean = dense[0].clone()
            for w in range(1, world_size):
                mean += dense[w]
            mean.div_(world_size)
            size = element_size(dtype)
            for part in parts.dense:
                first = part.start // size
                _slice(step.buffer, part).copy_(mean[first : first + part.numel])
            if parts.init:
                _initialise(state, step, parts, dense[rank], mean)
            state._forget(tuple(part.key for part in parts.dense if part.key not in parts.init))
        return step.buffer

    return future.then(finish)


def _initialise(
    state: CompressionState, step: _BucketStep, parts: _Parts, own: torch.Tensor, mean: torch.Tensor
) -> None:
    """EF21 state of the parameters sent dense to initialise them: g_i ← this rank's values,
    g ← their mean, next to the state of the bucket's sparse parameters."""
    keyed = {part.key: part for part in (*parts.dense, *parts.sparse)}
    stateful = parts.init | {part.key for part in parts.sparse}
    keys = tuple(key for key in step.keys if key in stateful)
    numels = tuple(keyed[key].numel for key in keys)
    tensors = state._tensors(keys, numels, step.buffer, fill=True)
    assert tensors is not None
    size = element_size(step.buffer.dtype)
    offset = 0
    for key, numel in zip(keys, numels, strict=True):
        if key in parts.init:
            first = keyed[key].start // size
            tensors["g_i"][offset : offset + numel].copy_(own[first : first + numel])
            tensors["g"][offset : offset + numel].copy_(mean[first : first + numel])
        offset += numel


def _sparse_state(
    state: CompressionState, step: _BucketStep, parts: _Parts
) -> tuple[dict[str, torch.Tensor], dict[ParamKey, int]]:
    """The flat state tensors of the bucket's sparse parameters (zeros where they have none) and
    each one's offset into them."""
    keys = tuple(part.key for part in parts.sparse)
    tensors = state._tensors(keys, tuple(part.numel for part in parts.sparse), step.buffer, fill=True)
    assert tensors is not None
    offsets: dict[ParamKey, int] = {}
    offset = 0
    for part in parts.sparse:
        offsets[part.key] = offset
        offset += part.numel
    return tensors, offsets


def _has_nan(step: _BucketStep) -> bool:
    return bool(torch.isnan(step.buffer).any())


def _ef21_parts(state: CompressionState, step: _BucketStep) -> torch.futures.Future[torch.Tensor]:
    parts = _parts(state, step, "ef21")
    _count_parts(state, step, parts)
    if _has_nan(step):
        return _exchange_parts("ef21", state, step, parts, _poisoned(step, parts), lambda *_: None)
    tensors, offsets = _sparse_state(state, step, parts) if parts.sparse else ({}, {})

    def piece(name: str, part: _Part) -> torch.Tensor:
        return tensors[name][offsets[part.key] : offsets[part.key] + part.numel]

    # The gradient holds no NaN: nan="largest" spares a host synchronisation per parameter and
    # still sends any NaN that ∇f_i − g_i forms (inf − inf), which the receivers then refuse.
    packed = _pack(
        step,
        parts,
        lambda part: _slice(step.buffer, part),
        lambda part: ef21_step(_slice(step.buffer, part), piece("g_i", part), part.k, nan="largest").packed,
    )

    def apply(part: _Part, indices: torch.Tensor, values: torch.Tensor) -> None:
        g = piece("g", part)
        decompress_add(g, indices, values, 1.0 / step.world_size)
        _slice(step.buffer, part).copy_(g)

    return _exchange_parts("ef21", state, step, parts, packed, apply)


def _ef14_parts(state: CompressionState, step: _BucketStep) -> torch.futures.Future[torch.Tensor]:
    parts = _parts(state, step, "ef14")
    _count_parts(state, step, parts)
    if _has_nan(step):
        return _exchange_parts("ef14", state, step, parts, _poisoned(step, parts), lambda *_: None)
    tensors, offsets = _sparse_state(state, step, parts) if parts.sparse else ({}, {})

    def dense_value(part: _Part) -> torch.Tensor:
        value = _slice(step.buffer, part)
        error = state.param_state(part.key).get("e")  # e.g. left by granularity="bucket"
        return value if error is None else value + error.to(value.device, value.dtype)

    def sparse_message(part: _Part) -> torch.Tensor:
        error = tensors["e"][offsets[part.key] : offsets[part.key] + part.numel]
        return ef14_step(_slice(step.buffer, part), error, part.k, 1.0, nan="largest").packed

    packed = _pack(step, parts, dense_value, sparse_message)

    def apply(part: _Part, indices: torch.Tensor, values: torch.Tensor) -> None:
        decompress_add(_slice(step.buffer, part).zero_(), indices, values, 1.0 / step.world_size)

    return _exchange_parts("ef14", state, step, parts, packed, apply)


def ef21_hook(state: CompressionState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook for EF21 (Richtárik, Sokolov, Fatkhullin 2021) with TopK.

    Sparse step on rank i: c_i = TopK(∇f_i − g_i), g_i ← g_i + c_i, all-gather the c_j,
    g ← g + (1/W) Σ_j c_j in rank order; the future's value is a copy of g in the bucket's
    buffer, which DDP writes into ``.grad`` (so the optimizer steps x ← x − γ g). See the module
    docstring for the dense steps and NaN handling."""
    step = _plan(state, bucket, "ef21")
    if step.mode == "parts":
        return _ef21_parts(state, step)
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
    if step.mode == "parts":
        return _ef14_parts(state, step)
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
