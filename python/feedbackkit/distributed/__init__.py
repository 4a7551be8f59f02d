"""torch.distributed integration of the `compress` family: DDP communication hooks that send TopK
messages with error feedback (EF21, EF14), their per-parameter state, per-rank checkpoints, and
the byte accounting used by the benchmarks.

    state = CompressionState(ratio=0.01, model=model)  # granularity="parameter": layout-free
    ddp = DistributedDataParallel(model)
    ddp.register_comm_hook(state, ef21_hook)
    ...
    save_state(state, "ckpt/compression")  # on every rank
    load_state(state, "ckpt/compression")  # on every rank, before the first step

Works on gloo (CPU) and NCCL (GPU): a sparse step is one all-gather of equal-size uint8 messages.
"""

from __future__ import annotations

from .checkpoint import load_state, save_state, shard_path
from .hooks import ef14_hook, ef21_hook
from .state import STATE_TENSORS, CompressionState, Counters, ParamKey
from .wire import ParameterPart, WireBytes, bucket_k, parameter_part, sparse_saves_bytes, wire_bytes

__all__ = [
    "STATE_TENSORS",
    "CompressionState",
    "Counters",
    "ParamKey",
    "ParameterPart",
    "WireBytes",
    "bucket_k",
    "ef14_hook",
    "ef21_hook",
    "load_state",
    "parameter_part",
    "save_state",
    "shard_path",
    "sparse_saves_bytes",
    "wire_bytes",
]
