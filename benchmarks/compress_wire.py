"""Bytes on the wire per training step: EF21's sparse all-gather against a dense all-reduce.

Analytic: for a model of `params` float32 parameters cut into DDP buckets of `bucket_mb`, one
rank sends, per step and by a ring algorithm, (W − 1) TopK messages per bucket (sparse) against
2 (W − 1)/W of every bucket (all-reduce), for world sizes 2 to 64 and k/d = 1e-3, 1e-2. Buckets
where the sparse step would not save bytes fall back to dense, as the hook does.

Measured: a small MLP trained with ``ef21_hook`` on gloo at world sizes 2 and 4 (spawned here);
the hook's counters (payload bytes per rank) are turned into wire bytes and compared with the
analytic count for the buckets DDP actually built.

    python benchmarks/compress_wire.py [--out benchmarks/results/compress-wire.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from feedbackkit.bench.report import environment
from feedbackkit.compress import message_nbytes
from feedbackkit.distributed import CompressionState, bucket_k, ef21_hook, sparse_saves_bytes, wire_bytes

WORLD_SIZES = (2, 4, 8, 16, 32, 64)
RATIOS = (1e-3, 1e-2)
STEPS = 6
WARMUP = 1


def step_bytes(bucket_numels: list[int], ratio: float, world_size: int) -> dict[str, float]:
    """Per-rank wire bytes of one step: EF21 (sparse where it saves bytes) and dense all-reduce."""
    sparse = dense = 0.0
    for numel in bucket_numels:
        k = bucket_k(numel, ratio=ratio, k=None)
        both = wire_bytes(numel, k, world_size)
        sparse += both.sparse if sparse_saves_bytes(numel, k, world_size, torch.float32) else both.dense
        dense += both.dense
    return {"ef21": sparse, "dense": dense, "ratio_of_dense": sparse / dense}


def analytic(params: int, bucket_mb: int) -> list[dict[str, float]]:
    per_bucket = bucket_mb * 2**20 // 4
    buckets = [per_bucket] * (params // per_bucket) + ([params % per_bucket] if params % per_bucket else [])
    return [{"world_size": w, "k/d": r, **step_bytes(buckets, r, w)} for w in WORLD_SIZES for r in RATIOS]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256))


def _payload(numel: int, iteration: int, ratio: float, world_size: int, min_bucket_numel: int) -> int:
    """Bytes one rank contributes for a bucket, as the hook decides: dense in warm-up, for small
    buckets and where the sparse step would not save bytes; else one TopK message."""
    k = bucket_k(numel, ratio=ratio, k=None)
    dense = iteration < WARMUP or numel < min_bucket_numel
    if dense or not sparse_saves_bytes(numel, k, world_size, torch.float32):
        return 4 * numel
    return message_nbytes(numel, k, torch.float32)


def _rank(rank: int, world_size: int, port: int, ratio: float, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    model = DistributedDataParallel(_model(), bucket_cap_mb=0.25)
    state = CompressionState(ratio=ratio, warmup_steps=WARMUP, model=model)
    seen: list[tuple[int, int]] = []

    def recording_hook(state, bucket):
        seen.append((state.iteration, bucket.buffer().numel()))
        return ef21_hook(state, bucket)

    model.register_comm_hook(state, recording_hook)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(rank)
    for _ in range(STEPS):
        x = torch.randn(32, 256, generator=generator)
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    expected = sum(_payload(n, it, ratio, world_size, state.min_bucket_numel) for it, n in seen)
    wire_ef21 = wire_dense = 0.0
    for it, n in seen:
        if it < WARMUP:
            continue
        payload = _payload(n, it, ratio, world_size, state.min_bucket_numel)
        wire_ef21 += (
            (world_size - 1) * payload if payload < 4 * n else 2 * (world_size - 1) / world_size * payload
        )
        wire_dense += 2 * (world_size - 1) / world_size * 4 * n
    if rank == 0:
        counters = state.counters
        record = {
            "bucket_numels_last_step": [n for it, n in seen if it == STEPS - 1],
            "counters": asdict(counters),
            "payload_expected": expected,
            "counters_match_analytic": counters.bytes_sent == expected,
            # per compressed step (after the warm-up), by a ring algorithm
            "wire_bytes_per_step_ef21": wire_ef21 / (STEPS - WARMUP),
            "wire_bytes_per_step_dense": wire_dense / (STEPS - WARMUP),
        }
        Path(out).write_text(json.dumps(record))
    dist.destroy_process_group()


def measured(world_size: int, ratio: float) -> dict[str, object]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "counters.json")
        torch.multiprocessing.spawn(_rank, args=(world_size, port, ratio, out), nprocs=world_size, join=True)
        record = json.loads(Path(out).read_text())
    return {"world_size": world_size, "k/d": ratio, "steps": STEPS, "warmup_steps": WARMUP, **record}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/compress-wire.json")
    parser.add_argument("--params", type=int, default=350_000_000, help="model size for the analytic table")
    parser.add_argument("--bucket-mb", type=int, default=25)
    args = parser.parse_args()
    table = analytic(args.params, args.bucket_mb)
    runs = [measured(w, 0.01) for w in (2, 4)]
    report = {
        "environment": environment("cpu"),
        "analytic": {"params": args.params, "bucket_mb": args.bucket_mb, "rows": table},
        "measured": runs,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for row in table:
        print(
            f"W={row['world_size']:>2} k/d={row['k/d']:.0e}: EF21 {row['ef21'] / 2**20:9.1f} MiB/step/rank, "
            f"dense {row['dense'] / 2**20:9.1f} MiB ({row['ratio_of_dense']:.4f} of dense)"
        )
    for run in runs:
        print(run)


if __name__ == "__main__":
    main()
