"""Benchmark cases of the `reward` family.

The GAE baseline is the per-token reverse loop that public RLHF stacks run (about ten torch ops
per token). It has no torch.compile baseline: dynamo unrolls the T-long loop, and compiling it
took about 0.4 s per token on the 2-core CPU machine (about 6 minutes at T=1024, the smallest
shape). The same holds for rlhf_advantages, whose reference contains that loop.
"""

from __future__ import annotations

import itertools

import torch

from feedbackkit import reward
from feedbackkit.bench import Case, Workload
from feedbackkit.reference import reward as reference

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
BETA = 0.05
# PPO's usual discounting; mask_mode "zero" is the classic right-padded loop (on right-padded
# rows it equals the default "skip").
GAE = {"gamma": 1.0, "lam": 0.95, "mask_mode": "zero"}
GROUP = 8


def _mask(batch: int, seq: int, device: torch.device) -> torch.Tensor:
    """Right-padded [B, T] mask with response lengths uniform in [T/4, T], as RL batches look."""
    generator = torch.Generator().manual_seed(batch * 7919 + seq)
    lengths = torch.randint(seq // 4, seq + 1, (batch,), generator=generator).to(device)
    return torch.arange(seq, device=device)[None, :] < lengths[:, None]


def _tokens(batch: int, seq: int, dtype: str, device: torch.device, count: int) -> list[torch.Tensor]:
    """`count` standard-normal [B, T] tensors (rewards, values, log-probs) in `dtype`."""
    generator = torch.Generator(device=device).manual_seed(batch + seq)
    return [
        torch.randn(batch, seq, device=device, generator=generator).to(DTYPES[dtype]) for _ in range(count)
    ]


def _scores(n: int, device: torch.device) -> torch.Tensor:
    """[N] float32 reward-model scores."""
    return torch.randn(n, device=device, generator=torch.Generator(device=device).manual_seed(n))


def _group_ids(n: int, device: torch.device) -> torch.Tensor:
    """Ids of groups of 8 responses, about one group in eight of another size (2 to 16), with
    arbitrary int64 ids, shuffled so that no group is contiguous. No singletons: the baselines
    treat them differently."""
    generator = torch.Generator().manual_seed(n)
    sizes = torch.full((n // 2,), GROUP)
    ragged = torch.rand(sizes.numel(), generator=generator) < 1 / GROUP
    sizes[ragged] = torch.randint(2, 17, (int(ragged.sum()),), generator=generator)
    sizes = sizes[: int(torch.searchsorted(sizes.cumsum(0), n)) + 1]
    sizes[-1] -= int(sizes.sum()) - n
    if sizes[-1] < 2:
        sizes[-2] += sizes[-1]
        sizes = sizes[:-1]
    labels = torch.randint(-(1 << 62), 1 << 62, (sizes.numel(),), generator=generator)
    ids = torch.repeat_interleave(labels, sizes)
    return ids[torch.randperm(n, generator=generator)].to(device)


def _compiled(fn):
    """torch.compile of a reference, from a fresh cache per case so that shape changes never hit
    the recompile limit."""
    torch.compiler.reset()
    return torch.compile(fn, dynamic=False)


def _gae_setup(batch: int, seq: int, dtype: str):
    def setup(device: torch.device) -> Workload:
        mask = _mask(batch, seq, device)
        rewards, values = _tokens(batch, seq, dtype, device, 2)
        impls = {
            "feedbackkit": lambda: reward.gae(rewards, values, mask, **GAE),
            "torch": lambda: reference.gae(rewards, values, mask, **GAE, dtype=torch.float32),
        }
        outputs = 2 * batch * seq * 4  # fp32 advantages and returns
        return Workload(
            impls=impls,
            bytes_moved=rewards.nbytes + values.nbytes + mask.nbytes + outputs,
            output_bytes=outputs,
        )

    return setup


def _group_advantage_setup(n: int, compiled: bool):
    def setup(device: torch.device) -> Workload:
        scores = _scores(n, device)
        ids = _group_ids(n, device)
        impls = {
            "feedbackkit": lambda: reward.group_advantage(scores, ids),
            "torch": lambda: reference.group_advantage(scores, ids, dtype=torch.float32),
            "torch.index_add_": lambda: reference.group_advantage_index_add(scores, ids),
        }
        if compiled:
            fused = _compiled(reference.group_advantage_index_add)
            impls["torch.compile"] = lambda: fused(scores, ids)
        return Workload(impls=impls, bytes_moved=scores.nbytes * 2 + ids.nbytes, output_bytes=scores.nbytes)

    return setup


def _kl_penalty_setup(batch: int, seq: int, dtype: str, compiled: bool):
    def setup(device: torch.device) -> Workload:
        mask = _mask(batch, seq, device)
        logp, ref_logp = _tokens(batch, seq, dtype, device, 2)
        (rewards,) = _tokens(batch, seq, "fp32", device, 1)
        kwargs = {"estimator": "k3", "reward": rewards, "beta": BETA}
        impls = {
            "feedbackkit": lambda: reward.kl_penalty(logp, ref_logp, mask, **kwargs),
            "torch": lambda: reference.kl_penalty(logp, ref_logp, mask, **kwargs, dtype=torch.float32),
        }
        if compiled:
            fused = _compiled(reference.kl_penalty)
            impls["torch.compile"] = lambda: fused(logp, ref_logp, mask, **kwargs, dtype=torch.float32)
        outputs = 2 * batch * seq * 4 + batch * 12  # fp32 kl and shaped reward, row sums and counts
        inputs = logp.nbytes + ref_logp.nbytes + rewards.nbytes + mask.nbytes
        return Workload(impls=impls, bytes_moved=inputs + outputs, output_bytes=outputs)

    return setup


def _masked_whiten_setup(batch: int, seq: int, compiled: bool):
    def setup(device: torch.device) -> Workload:
        mask = _mask(batch, seq, device)
        (x,) = _tokens(batch, seq, "fp32", device, 1)
        impls = {
            "feedbackkit": lambda: reward.masked_whiten(x, mask),
            "torch": lambda: reference.masked_whiten(x, mask, dtype=torch.float32),
        }
        if compiled:
            fused = _compiled(reference.masked_whiten)
            impls["torch.compile"] = lambda: fused(x, mask, dtype=torch.float32)
        return Workload(impls=impls, bytes_moved=x.nbytes * 2 + mask.nbytes, output_bytes=x.nbytes)

    return setup


def _rlhf_advantages_setup(batch: int, seq: int, dtype: str):
    def setup(device: torch.device) -> Workload:
        mask = _mask(batch, seq, device)
        logp, ref_logp, values = _tokens(batch, seq, dtype, device, 3)
        scores = _scores(batch, device)

        def composed():
            """The same pipeline from the single feedbackkit ops, one launch (or more) each."""
            placed = reward.place_at_last_token(scores, mask)
            kl = reward.kl_penalty(logp, ref_logp, mask, reward=placed, beta=BETA)
            advantages, returns = reward.gae(kl.shaped, values, mask, **GAE)
            whitened = reward.masked_whiten(advantages, mask).values
            return kl.shaped, whitened, returns, kl.row_sum, kl.row_count

        impls = {
            "feedbackkit": lambda: reward.rlhf_advantages(
                logp, ref_logp, values, mask, scores=scores, beta=BETA, **GAE
            ),
            "feedbackkit ops composed": composed,
            "torch": lambda: reference.rlhf_advantages(
                logp, ref_logp, values, mask, scores=scores, beta=BETA, **GAE, dtype=torch.float32
            ),
        }
        # Reads the token inputs once, writes fp32 token rewards, advantages, returns and KL stats.
        outputs = 3 * batch * seq * 4 + batch * 12
        inputs = logp.nbytes + ref_logp.nbytes + values.nbytes + mask.nbytes + scores.nbytes
        return Workload(impls=impls, bytes_moved=inputs + outputs, output_bytes=outputs)

    return setup


def _grids(quick: bool) -> dict[str, dict[str, list]]:
    """Per device and op, the (B, T, dtype) / (B, T) / N points to run.

    Quick: the targets of the issue. CPU: GAE at B=256, T=1024 and groups at N=4096; CUDA: GAE at
    B=512, T=4096 (against the eager loop) and B=8192, T=4096 (bandwidth), the fused pipeline.
    Full: the spec's B × T grid everywhere (the eager GAE loop takes about a second per call at
    T=8192 on the CPU, hence nothing that large in the quick grid), plus the CUDA targets; the
    CPU pipeline runs fp32 only, as its eager baseline costs as much as GAE's."""
    if quick:
        return {
            "cpu": {
                "gae": [(256, 1024, "fp32")],
                "group_advantage": [4096],
                "kl_penalty": [(256, 1024, "fp32")],
                "masked_whiten": [(256, 1024)],
                "rlhf_advantages": [(256, 1024, "fp32")],
            },
            "cuda": {
                "gae": [(512, 4096, "fp32"), (8192, 4096, "fp32")],
                "group_advantage": [4096],
                "kl_penalty": [(1024, 4096, "fp32")],
                "masked_whiten": [(1024, 4096)],
                "rlhf_advantages": [(1024, 4096, "fp32")],
            },
        }
    spec = list(itertools.product([256, 1024], [1024, 4096, 8192]))
    both = ["fp32", "bf16"]
    return {
        "cpu": {
            "gae": [(b, t, d) for (b, t), d in itertools.product(spec, both)],
            "group_advantage": [256, 1024, 4096],
            "kl_penalty": [(b, t, d) for (b, t), d in itertools.product(spec, both)],
            "masked_whiten": spec,
            "rlhf_advantages": [(b, t, "fp32") for b, t in spec],
        },
        "cuda": {
            "gae": [(b, t, d) for (b, t), d in itertools.product([*spec, (512, 4096), (8192, 4096)], both)],
            "group_advantage": [1024, 4096, 16384],
            "kl_penalty": [(b, t, d) for (b, t), d in itertools.product([*spec, (8192, 4096)], both)],
            "masked_whiten": [*spec, (8192, 4096)],
            "rlhf_advantages": [(b, t, d) for (b, t), d in itertools.product([*spec, (8192, 4096)], both)],
        },
    }


def cases(quick: bool) -> list[Case]:
    """GAE, group advantages, KL penalty, whitening and the fused pipeline against the eager
    reference steps; torch.compile of the loop-free references in the full grid."""
    compiled = not quick
    out = []
    for device, grid in _grids(quick).items():
        points = [
            *(("gae", {"B": b, "T": t, "dtype": d}, _gae_setup(b, t, d)) for b, t, d in grid["gae"]),
            *(
                ("group_advantage", {"N": n, "G": GROUP}, _group_advantage_setup(n, compiled))
                for n in grid["group_advantage"]
            ),
            *(
                ("kl_penalty", {"B": b, "T": t, "dtype": d}, _kl_penalty_setup(b, t, d, compiled))
                for b, t, d in grid["kl_penalty"]
            ),
            *(
                ("masked_whiten", {"B": b, "T": t}, _masked_whiten_setup(b, t, compiled))
                for b, t in grid["masked_whiten"]
            ),
            *(
                ("rlhf_advantages", {"B": b, "T": t, "dtype": d}, _rlhf_advantages_setup(b, t, d))
                for b, t, d in grid["rlhf_advantages"]
            ),
        ]
        out.extend(
            Case(family="reward", op=op, params=params, setup=setup, devices=(device,))
            for op, params, setup in points
        )
    return out
