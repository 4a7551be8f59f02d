"""Benchmark cases of the `logprob` family."""

from __future__ import annotations

import itertools

import torch

import feedbackkit
from feedbackkit.bench import Case, Workload
from feedbackkit.reference import logprob as reference

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _lengths(batch: int, seq: int, device: torch.device) -> torch.Tensor:
    """Response lengths uniform in [T/4, T], as RL batches look."""
    generator = torch.Generator().manual_seed(batch * 7919 + seq)
    return torch.randint(seq // 4, seq + 1, (batch,), generator=generator).to(device)


def _sequence_reduce_setup(batch: int, seq: int, dtype: str, layout: str, passes: str, compiled: bool):
    def setup(device: torch.device) -> Workload:
        lengths = _lengths(batch, seq, device)
        if layout == "mask":
            mask = torch.arange(seq, device=device)[None, :] < lengths[:, None]
            values = torch.randn(batch, seq, device=device).to(DTYPES[dtype])
            cu_seqlens = None
            nbytes = values.nbytes + mask.nbytes
        else:
            mask = None
            cu_seqlens = torch.zeros(batch + 1, dtype=torch.int64, device=device)
            cu_seqlens[1:] = torch.cumsum(lengths, 0)
            values = torch.randn(int(lengths.sum()), device=device).to(DTYPES[dtype])
            nbytes = values.nbytes + cu_seqlens.nbytes
        nbytes += batch * 4
        backward = passes == "fwd+bwd"
        if backward:
            values.requires_grad_(True)
            nbytes += values.nbytes + (mask.nbytes if mask is not None else 0)

        def call(fn):
            def run():
                out = fn()
                if backward:
                    values.grad = None
                    out.sum().backward()
                return out

            return run

        impls = {
            "feedbackkit": call(
                lambda: feedbackkit.sequence_reduce(values, mask, cu_seqlens=cu_seqlens, mode="mean")
            ),
            "torch": call(lambda: reference.sequence_reduce(values, mask, cu_seqlens, "mean", torch.float32)),
        }
        if layout == "packed" and not backward:
            impls["torch.segment_reduce"] = lambda: torch.segment_reduce(
                values.float(), "mean", offsets=cu_seqlens, axis=0, unsafe=True
            )
        if compiled:
            torch.compiler.reset()  # a fresh cache per case, so shape changes never hit the recompile limit
            fused = torch.compile(reference.sequence_reduce, fullgraph=layout == "mask", dynamic=False)
            impls["torch.compile"] = call(lambda: fused(values, mask, cu_seqlens, "mean", torch.float32))
        return Workload(impls=impls, baseline="torch", bytes_moved=nbytes)

    return setup


def cases(quick: bool) -> list[Case]:
    """Quick: one bf16 shape. Full: the spec's B × T grid, bf16 and fp32, both layouts, forward
    and forward+backward, with torch.compile of the reference as a further baseline."""
    if quick:
        grid = itertools.product([256], [1024], ["bf16"], ["mask", "packed"], ["fwd", "fwd+bwd"])
    else:
        grid = itertools.product(
            [256, 1024], [1024, 4096], ["bf16", "fp32"], ["mask", "packed"], ["fwd", "fwd+bwd"]
        )
    return [
        Case(
            family="logprob",
            op="sequence_reduce",
            params={"B": b, "T": t, "dtype": d, "layout": layout, "pass": passes},
            setup=_sequence_reduce_setup(b, t, d, layout, passes, compiled=not quick),
        )
        for b, t, d, layout, passes in grid
    ]
