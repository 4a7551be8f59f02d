"""Timing and peak-memory measurement of one callable."""

from __future__ import annotations

import contextlib
import ctypes
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    fn: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int, min_sample_s: float = 2e-3
) -> float:
    """Median wall time of one call over `repeats` samples, after `warmup` calls. Each sample
    runs enough back-to-back calls to last at least `min_sample_s`, so microsecond ops are
    not dominated by timer resolution."""
    for _ in range(warmup):
        fn()
    _sync(device)
    inner = 1
    while True:
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        if time.perf_counter() - start >= min_sample_s or inner >= 1 << 16:
            break
        inner *= 2
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def settle_malloc() -> None:
    """Sets glibc's thresholds to where its own dynamic tuning settles (mmap 32 MiB, trim 64 MiB),
    so that every case is timed with the same allocator. Left at their defaults, outputs of 128 KiB
    and more are fresh mmaps whose page faults the first case of a run pays on every call, and the
    cases after a peak-memory measurement (which ends by settling) do not."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 64 << 20)


@contextlib.contextmanager
def large_frees_returned_to_os() -> Iterator[None]:
    """While active, glibc serves allocations of >= 64 KiB with mmap and unmaps them on free, so
    the resident-set peak tracks live tensors (otherwise freed memory is kept and reused).
    Afterwards the allocator is settled (:func:`settle_malloc`), so timings are not slowed by page
    faults."""
    libc = _libc()
    if libc is None:
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, 64 << 10)
    libc.mallopt(M_TRIM_THRESHOLD, 64 << 10)
    libc.malloc_trim(0)  # hands back free pages already held, so reusing them shows in the RSS
    try:
        yield
    finally:
        settle_malloc()


def peak_extra_bytes(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak memory one call needs above what is already allocated (outputs included).

    CUDA: torch's allocator statistics. CPU: the process's resident-set high-water mark, reset
    through /proc/self/clear_refs (Linux); None where that is not possible."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result = fn()
        _sync(device)
        del result
        return torch.cuda.max_memory_allocated(device) - base
    try:
        with large_frees_returned_to_os():
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")
            base = _status_kib("VmRSS")
            result = fn()
            peak = _status_kib("VmHWM")
    except (OSError, KeyError):
        return None
    del result
    return max(0, peak - base) * 1024
