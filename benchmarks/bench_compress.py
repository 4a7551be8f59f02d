"""Benchmark cases of the `compress` family.

Baselines are what a user writes with torch ops: ``torch.topk(x.abs(), k, sorted=False)`` and
the EF21 step ``c = TopK(grad − g_i); g_i[idx] += c`` through it. Inputs are standard normal
("random") or 64 distinct values repeated ("ties": most entries tie with the threshold).
"""

from __future__ import annotations

import itertools

import torch

from feedbackkit import compress
from feedbackkit.bench import Case, Workload

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _vector(d: int, dtype: str, data: str, device: torch.device, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(d + seed)
    if data == "ties":
        levels = torch.randn(64, device=device, generator=generator)
        x = levels[torch.randint(0, 64, (d,), device=device, generator=generator)]
    else:
        x = torch.randn(d, device=device, generator=generator)
    return x.to(DTYPES[dtype])


def torch_topk(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    indices = torch.topk(x.abs(), k, sorted=False).indices
    return x[indices], indices


def torch_ef21_step(grad: torch.Tensor, g_i: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    difference = grad - g_i
    indices = torch.topk(difference.abs(), k, sorted=False).indices
    values = difference[indices]
    g_i[indices] += values
    return indices, values


def _topk_setup(d: int, ratio: float, dtype: str, data: str):
    k = max(1, round(d * ratio))

    def setup(device: torch.device) -> Workload:
        x = _vector(d, dtype, data, device)
        index_bytes = 8 * k
        return Workload(
            impls={
                "feedbackkit": lambda: compress.topk(x, k, nan="largest"),
                "torch": lambda: torch_topk(x, k),
            },
            bytes_moved=x.nbytes + k * x.element_size() + index_bytes,
            output_bytes=k * x.element_size() + index_bytes,
        )

    return setup


def _ef21_setup(d: int, ratio: float, dtype: str):
    k = max(1, round(d * ratio))

    def setup(device: torch.device) -> Workload:
        grad = _vector(d, dtype, "random", device)
        state = _vector(d, dtype, "random", device, seed=1)
        baseline_state = state.clone()
        message = compress.message_nbytes(d, k, grad.dtype)
        return Workload(
            impls={
                "feedbackkit": lambda: compress.ef21_step(grad, state, k, nan="largest"),
                "torch": lambda: torch_ef21_step(grad, baseline_state, k),
            },
            # Reads grad and g_i once; writes the message and k entries of g_i.
            bytes_moved=grad.nbytes + state.nbytes + message + k * grad.element_size(),
            output_bytes=message,
        )

    return setup


def _grids(quick: bool) -> dict[str, dict[str, list]]:
    """Per device: topk (d, k/d, dtype, data) and EF21 (d, k/d, dtype) points.
    Quick: the issue's targets (CPU d=1e7, GPU d=1e8, k/d=1e-3, fp32). Full: the spec's grid."""
    if quick:
        return {
            "cpu": {"topk": [(10**7, 1e-3, "fp32", "random")], "ef21_step": [(10**7, 1e-3, "fp32")]},
            "cuda": {"topk": [(10**8, 1e-3, "fp32", "random")], "ef21_step": [(10**8, 1e-3, "fp32")]},
        }
    ratios = [1e-4, 1e-3, 1e-2]
    points = list(itertools.product(ratios, DTYPES, ["random", "ties"]))
    return {
        "cpu": {
            "topk": [(d, r, t, data) for d in (10**6, 10**7) for r, t, data in points],
            "ef21_step": [(d, r, "fp32") for d in (10**6, 10**7) for r in ratios],
        },
        "cuda": {
            "topk": [(d, r, t, data) for d in (10**6, 10**7, 10**8, 10**9) for r, t, data in points],
            "ef21_step": [(d, r, t) for d in (10**7, 10**8) for r in ratios for t in DTYPES],
        },
    }


def cases(quick: bool) -> list[Case]:
    """topk against torch.topk, and the fused EF21 step against the same written in torch ops."""
    out = []
    for device, grid in _grids(quick).items():
        points = [
            *(
                ("topk", {"d": d, "k/d": r, "dtype": t, "data": data}, _topk_setup(d, r, t, data))
                for d, r, t, data in grid["topk"]
            ),
            *(
                ("ef21_step", {"d": d, "k/d": r, "dtype": t}, _ef21_setup(d, r, t))
                for d, r, t in grid["ef21_step"]
            ),
        ]
        out.extend(
            Case(family="compress", op=op, params=params, setup=setup, devices=(device,))
            for op, params, setup in points
        )
    return out
