"""Finds the registered cases and measures them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .case import Case
from .timing import median_seconds, peak_extra_bytes

CASES_PACKAGE = "feedbackkit.benchmarks"


@dataclass(frozen=True)
class Result:
    family: str
    case: str
    impl: str
    baseline: str
    median_ms: float
    speedup: float  # baseline time / this time (1.0 for the baseline itself)
    peak_extra_mib: float | None
    gb_per_s: float | None
    tflop_per_s: float | None


def families() -> list[str]:
    """Families with a benchmarks/bench_<family>.py module."""
    package = importlib.import_module(CASES_PACKAGE)
    return sorted(
        m.name[len("bench_") :] for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("bench_")
    )


def discover(selected: Iterable[str] = (), *, quick: bool = False, device: str = "cpu") -> list[Case]:
    """Cases of the selected families (all when empty) that run on `device`."""
    known = families()
    wanted = list(selected) or known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"unknown benchmark family {', '.join(unknown)}; known: {', '.join(known)}")
    cases: list[Case] = []
    for family in wanted:
        module = importlib.import_module(f"{CASES_PACKAGE}.bench_{family}")
        cases.extend(c for c in module.cases(quick) if device in c.devices)
    return cases


def run(
    cases: Iterable[Case],
    *,
    device: str = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    progress: Callable[[str], Any] | None = None,
) -> list[Result]:
    """Times every implementation of every case on `device`; median of `repeats` samples."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch sees no CUDA device")
    results: list[Result] = []
    for case in cases:
        if progress is not None:
            progress(case.label)
        workload = case.setup(dev)
        times = {
            name: median_seconds(fn, dev, warmup=warmup, repeats=repeats)
            for name, fn in workload.impls.items()
        }
        base = times[workload.baseline]
        for name, fn in workload.impls.items():
            peak = peak_extra_bytes(fn, dev)
            t = times[name]
            results.append(
                Result(
                    family=case.family,
                    case=case.label,
                    impl=name,
                    baseline=workload.baseline,
                    median_ms=t * 1e3,
                    speedup=base / t,
                    peak_extra_mib=None if peak is None else peak / 2**20,
                    gb_per_s=None if workload.bytes_moved is None else workload.bytes_moved / t / 1e9,
                    tflop_per_s=None if workload.flops is None else workload.flops / t / 1e12,
                )
            )
        del workload
    return results
