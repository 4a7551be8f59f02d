"""Message sizes and the rules that pick a sparse all-gather or a dense all-reduce for a bucket
(``granularity="bucket"``) or sparse and dense parts of a bucket's message
(``granularity="parameter"``).

A sparse step moves one packed message per rank with a single all-gather: in a ring, each rank
sends its own message and forwards the others', (W − 1) messages in all. A dense step is a ring
all-reduce: a reduce-scatter and an all-gather, each moving (W − 1)/W of the bucket. Under
``granularity="parameter"`` a bucket's message is the concatenation of its parameters' parts
(:func:`parameter_part`), so one rank sends (W − 1) · Σ_p nbytes_p per all-gather.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .._checks import ArgumentError
from ..compress import message_nbytes


class WireBytes(NamedTuple):
    """Bytes one rank sends per bucket and step, by a ring algorithm."""

    sparse: float  #: all-gather of W messages: (W − 1) · message_nbytes(numel, k, dtype)
    dense: float  #: all-reduce of the bucket: 2 · (W − 1)/W · numel · element size


def element_size(dtype: torch.dtype) -> int:
    """Bytes of one element of `dtype`."""
    return torch.empty((), dtype=dtype).element_size()


def wire_bytes(numel: int, k: int, world_size: int, dtype: torch.dtype = torch.float32) -> WireBytes:
    """Per-rank bytes on the wire for one bucket of `numel` elements of `dtype`: the sparse
    all-gather of k-entry messages against a ring all-reduce of the whole bucket."""
    if numel < 1 or not 1 <= k <= numel:
        raise ArgumentError(f"wire_bytes: need 1 <= k <= numel; got k={k}, numel={numel}")
    if world_size < 1:
        raise ArgumentError(f"wire_bytes: 'world_size' must be >= 1; got {world_size}")
    others = world_size - 1
    return WireBytes(
        sparse=float(others * message_nbytes(numel, k, dtype)),
        dense=2.0 * others * numel * element_size(dtype) / world_size,
    )


def sparse_saves_bytes(numel: int, k: int, world_size: int, dtype: torch.dtype) -> bool:
    """True when the sparse all-gather sends fewer bytes than a ring all-reduce:
    W · message_nbytes < 2 · numel · element size (for fp32 with int32 indices, k/numel < 1/W).
    Never true for a single rank, where neither sends anything."""
    if world_size < 2:
        return False
    return world_size * message_nbytes(numel, k, dtype) < 2 * numel * element_size(dtype)


def bucket_k(numel: int, *, ratio: float | None, k: int | None) -> int:
    """The message size for a bucket of `numel` elements: the fixed `k`, or
    max(1, ⌈ratio · numel⌉) with the product rounded to 9 decimals first (so ratio=0.1 of 30
    elements gives 3, not 4 through the binary rounding of 0.1)."""
    if k is not None:
        return k
    assert ratio is not None
    return max(1, math.ceil(round(ratio * numel, 9)))


class ParameterPart(NamedTuple):
    """One parameter's part of a bucket message under ``granularity="parameter"``."""

    sparse: bool  #: a TopK message of `k` entries (True) or the parameter's values (False)
    k: int  #: entries of the TopK message; the number of elements when dense
    nbytes: int  #: bytes of the part: message_nbytes(numel, k, dtype), or numel values padded to 8


def _dense_part_nbytes(numel: int, dtype: torch.dtype) -> int:
    return -(-numel * element_size(dtype) // 8) * 8


def parameter_part(
    numel: int, dtype: torch.dtype = torch.float32, *, ratio: float | None, k: int | None, min_numel: int
) -> ParameterPart:
    """How a parameter of `numel` elements travels after the warm-up under
    ``granularity="parameter"``: with k_p = :func:`bucket_k` (numel, ratio=…, k=…), it is sent as a
    TopK message of k_p entries when numel ≥ `min_numel` (the state's ``min_bucket_numel``) and
    that message is strictly smaller than its values (message_nbytes(numel, k_p) < numel ·
    element size, both padded to 8 bytes; so k_p < numel); otherwise its values are sent as they
    are. The rule does not depend on the bucket or the world size, so neither does the part."""
    if numel < 1:
        raise ArgumentError(f"parameter_part: 'numel' must be >= 1; got {numel}")
    dense = _dense_part_nbytes(numel, dtype)
    kk = bucket_k(numel, ratio=ratio, k=k)
    if numel >= min_numel and kk < numel:
        nbytes = message_nbytes(numel, kk, dtype)
        if nbytes < dense:
            return ParameterPart(True, kk, nbytes)
    return ParameterPart(False, numel, dense)
