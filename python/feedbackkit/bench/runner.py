"""Finds the registered cases and measures them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .case import Case, Workload
from .launches import launches_per_call
from .peak import Peak, memory_bandwidth
from .timing import median_seconds, peak_extra_bytes, settle_malloc

CASES_PACKAGE = "feedbackkit.benchmarks"


@dataclass(frozen=True)
class Result:
    family: str
    case: str
    impl: str
    baseline: str
    median_ms: float | None
    launches_per_call: int | None  # CUDA: kernels per call; CPU: outermost torch ops per call
    speedup: float | None  # baseline time / this time (1.0 for the baseline itself)
    peak_extra_mib: float | None
    peak_above_outputs_mib: float | None  # peak_extra minus the outputs every implementation returns
    gb_per_s: float | None
    fraction_of_peak_bandwidth: float | None
    tflop_per_s: float | None
    error: str | None = None  # why this implementation (or the whole case) could not be measured
    # Per-item workloads only (Workload.items): median_ms covers `items` items; speedup, GB/s and
    # TFLOP/s are per item.
    items: int | None = None
    us_per_item: float | None = None
    samples_per_s: float | None = None
    speedup_over: dict[str, float] | None = None  # first implementation only: over each other one


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


def _failed(case: Case, impl: str, baseline: str, error: BaseException) -> Result:
    message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    return Result(case.family, case.label, impl, baseline, *(None,) * 8, error=message)


def _launches(fn: Callable[[], Any], dev: torch.device) -> int | None:
    """Launches of one call; None where the profiler cannot count them (it is a diagnostic, so
    it never fails a case whose timing succeeded)."""
    try:
        return launches_per_call(fn, dev)
    except Exception:
        return None


def _measure(
    case: Case, workload: Workload, dev: torch.device, *, warmup: int, repeats: int, peak_gb_per_s: float
) -> list[Result]:
    times: dict[str, float] = {}
    failures: dict[str, BaseException] = {}
    for name, fn in workload.impls.items():
        try:
            times[name] = median_seconds(fn, dev, warmup=warmup, repeats=repeats)
        except Exception as error:
            failures[name] = error
    items = workload.items or {}
    call_times = times
    times = {name: t / items.get(name, 1) for name, t in call_times.items()}  # per item if items
    base = times.get(workload.baseline)
    first = next(iter(workload.impls))
    results = []
    for name, fn in workload.impls.items():
        if name in failures:
            results.append(_failed(case, name, workload.baseline, failures[name]))
            continue
        t = times[name]
        per_item = name in items
        samples = workload.samples_per_item
        peak = peak_extra_bytes(fn, dev)
        launches = _launches(fn, dev)
        gb_per_s = None if workload.bytes_moved is None else workload.bytes_moved / t / 1e9
        results.append(
            Result(
                family=case.family,
                case=case.label,
                impl=name,
                baseline=workload.baseline,
                median_ms=call_times[name] * 1e3,
                launches_per_call=launches,
                speedup=None if base is None else base / t,
                peak_extra_mib=None if peak is None else peak / 2**20,
                peak_above_outputs_mib=(
                    None
                    if peak is None or workload.output_bytes is None
                    else (peak - workload.output_bytes) / 2**20
                ),
                gb_per_s=gb_per_s,
                fraction_of_peak_bandwidth=None if gb_per_s is None else gb_per_s / peak_gb_per_s,
                tflop_per_s=None if workload.flops is None else workload.flops / t / 1e12,
                items=items[name] if per_item else None,
                us_per_item=t * 1e6 if per_item else None,
                samples_per_s=samples / t if per_item and samples is not None else None,
                speedup_over=(
                    {other: o / t for other, o in times.items() if other != name}
                    if per_item and name == first
                    else None
                ),
            )
        )
    return results


def run(
    cases: Iterable[Case],
    *,
    device: str = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    progress: Callable[[str], Any] | None = None,
    peak: Peak | None = None,
) -> list[Result]:
    """Times every implementation of every case on `device`; median of `repeats` samples.
    GB/s are also given as a fraction of `peak` (measured or looked up when not given)."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch sees no CUDA device")
    peak = peak or memory_bandwidth(dev)
    settle_malloc()
    results: list[Result] = []
    for case in cases:
        if progress is not None:
            progress(case.label)
        try:
            workload = case.setup(dev)
        except Exception as error:  # one broken case must not lose the others' numbers
            results.append(_failed(case, "<setup>", "-", error))
            continue
        results.extend(
            _measure(case, workload, dev, warmup=warmup, repeats=repeats, peak_gb_per_s=peak.gb_per_s)
        )
        del workload
    return results
