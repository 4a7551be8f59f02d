"""Benchmark cases of the `logprob` family."""

from __future__ import annotations

import functools
import itertools

import torch

import feedbackkit
from feedbackkit.bench import Case, Workload
from feedbackkit.reference import logprob as reference

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _timed(fn, backward: bool, leaves: tuple[torch.Tensor, ...]):
    """What one benchmark call runs: `fn` (returning a tensor or a tuple of them) and, for
    forward+backward cases, backpropagation of ones; the leaves' gradients are dropped at the
    end, so each call starts clean and its peak memory includes the gradients it made."""

    def run():
        out = fn()
        if backward:
            outs = out if isinstance(out, tuple) else (out,)
            torch.autograd.backward(outs, [torch.ones_like(t) for t in outs])
            for leaf in leaves:
                leaf.grad = None
        return out

    return run


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
        call = functools.partial(_timed, backward=backward, leaves=(values,))

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


def _sequence_logprob_setup(n: int, vocab: int, dtype: str, passes: str, entropy: bool, compiled: bool):
    def setup(device: torch.device) -> Workload:
        generator = torch.Generator(device=device).manual_seed(n + vocab)
        logits = torch.randn(n, vocab, device=device, generator=generator).to(DTYPES[dtype])
        labels = torch.randint(0, vocab, (n,), device=device, generator=generator)
        backward = passes == "fwd+bwd"
        logits.requires_grad_(backward)
        nbytes = logits.nbytes * (3 if backward else 1) + labels.nbytes + n * 4 * (3 if entropy else 1)
        call = functools.partial(_timed, backward=backward, leaves=(logits,))

        def ours():
            out = feedbackkit.sequence_logprob(logits, labels, return_entropy=entropy)
            return out if entropy else (out,)

        def eager():
            logp, ent, _ = reference.sequence_logprob(
                logits, labels, dtype=torch.float32, entropy=entropy, lse=False
            )
            return (logp, ent) if entropy else (logp,)

        impls = {"feedbackkit": call(ours), "torch": call(eager)}
        if not entropy:
            impls["torch.cross_entropy"] = call(
                lambda: (-torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none"),)
            )
        if compiled:
            torch.compiler.reset()
            fused = torch.compile(reference.sequence_logprob, fullgraph=True, dynamic=False)

            def compiled_call():
                logp, ent, _ = fused(logits, labels, -100, 1.0, torch.float32, entropy, False)
                return (logp, ent) if entropy else (logp,)

            impls["torch.compile"] = call(compiled_call)
        return Workload(impls=impls, baseline="torch", bytes_moved=nbytes)

    return setup


def _logprob_cases(quick: bool) -> list[Case]:
    """CPU: the issue's target shape (N=4096, V=32000). CUDA: the spec's grid."""
    if quick:
        grids = [
            ("cpu", [(1024, 32000)], ["bf16"], ["fwd+bwd"], [False]),
            ("cuda", [(8192, 128256)], ["bf16"], ["fwd", "fwd+bwd"], [False]),
        ]
    else:
        grids = [
            ("cpu", [(4096, 32000)], ["fp32", "bf16"], ["fwd", "fwd+bwd"], [False, True]),
            (
                "cuda",
                [(n, v) for n in (4096, 8192, 16384) for v in (32000, 128256)],
                ["bf16", "fp32"],
                ["fwd", "fwd+bwd"],
                [False, True],
            ),
        ]
    out = []
    for device, shapes, dtypes, passes_list, entropies in grids:
        for (n, v), d, passes, entropy in itertools.product(shapes, dtypes, passes_list, entropies):
            out.append(
                Case(
                    family="logprob",
                    op="sequence_logprob",
                    params={"N": n, "V": v, "dtype": d, "pass": passes, "entropy": entropy},
                    setup=_sequence_logprob_setup(n, v, d, passes, entropy, compiled=not quick),
                    devices=(device,),
                )
            )
    return out


def _peer_impls(hidden, weight, labels) -> dict:
    """Fused linear cross-entropy of the peers a user would pick instead, when installed (CUDA)."""
    peers = {}
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss(reduction="none")
        peers["liger_kernel"] = lambda: (-liger(weight, hidden, labels),)
    except ImportError:
        pass
    try:
        from cut_cross_entropy import linear_cross_entropy

        peers["cut_cross_entropy"] = lambda: (
            -linear_cross_entropy(hidden, weight, labels, reduction="none"),
        )
    except ImportError:
        pass
    return peers


def _linear_logprob_setup(n: int, h: int, vocab: int, dtype: str, passes: str, compiled: bool):
    def setup(device: torch.device) -> Workload:
        generator = torch.Generator(device=device).manual_seed(n + h + vocab)
        hidden = torch.randn(n, h, device=device, generator=generator).to(DTYPES[dtype])
        weight = (torch.randn(vocab, h, device=device, generator=generator) / h**0.5).to(DTYPES[dtype])
        labels = torch.randint(0, vocab, (n,), device=device, generator=generator)
        backward = passes == "fwd+bwd"
        hidden.requires_grad_(backward)
        weight.requires_grad_(backward)
        call = functools.partial(_timed, backward=backward, leaves=(hidden, weight))

        def eager():
            return (
                reference.sequence_logprob(
                    hidden @ weight.t(), labels, dtype=torch.float32, entropy=False, lse=False
                )[0],
            )

        impls = {
            "feedbackkit": call(lambda: (feedbackkit.linear_logprob(hidden, weight, labels),)),
            "torch": call(eager),
        }
        if device.type == "cuda":
            impls.update({name: call(fn) for name, fn in _peer_impls(hidden, weight, labels).items()})
        if compiled:
            torch.compiler.reset()
            fused = torch.compile(eager, fullgraph=True, dynamic=False)
            impls["torch.compile"] = call(fused)
        flops = 2 * n * h * vocab * (4 if backward else 1)  # forward GEMM; backward recompute + 2 GEMMs
        outputs = n * 4 + ((hidden.nbytes + weight.nbytes) if backward else 0)  # logp, d hidden, d weight
        return Workload(impls=impls, baseline="torch", flops=flops, output_bytes=outputs)

    return setup


def _linear_cases(quick: bool) -> list[Case]:
    """CPU: the issue's target (N=2048, H=1024, V=32000). CUDA: the spec's LM-head shapes."""
    if quick:
        grids = [
            ("cpu", [(512, 1024, 32000)], ["fp32"], ["fwd+bwd"]),
            ("cuda", [(8192, 4096, 128256)], ["bf16"], ["fwd+bwd"]),
        ]
    else:
        grids = [
            ("cpu", [(2048, 1024, 32000)], ["fp32"], ["fwd", "fwd+bwd"]),
            (
                "cuda",
                [
                    (n, h, v)
                    for h, v in ((4096, 128256), (3584, 152064), (2304, 256000))
                    for n in (2048, 8192)
                ],
                ["bf16"],
                ["fwd", "fwd+bwd"],
            ),
        ]
    out = []
    for device, shapes, dtypes, passes_list in grids:
        for (n, h, v), d, passes in itertools.product(shapes, dtypes, passes_list):
            out.append(
                Case(
                    family="logprob",
                    op="linear_logprob",
                    params={"N": n, "H": h, "V": v, "dtype": d, "pass": passes},
                    setup=_linear_logprob_setup(n, h, v, d, passes, compiled=not quick),
                    devices=(device,),
                )
            )
    return out


def cases(quick: bool) -> list[Case]:
    return _reduce_cases(quick) + _logprob_cases(quick) + _linear_cases(quick)


def _reduce_cases(quick: bool) -> list[Case]:
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
