"""The memory-bandwidth roof that benchmark GB/s are compared with."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from .. import _native


@dataclass(frozen=True)
class Peak:
    gb_per_s: float
    source: str


def _measured_read(device: torch.device, nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """GB/s of torch summing `nbytes` of float32: a read-only stream, like most of our kernels."""
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    samples = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        src.sum()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        samples.append(time.perf_counter() - start)
    return nbytes / statistics.median(samples[1:]) / 1e9


def memory_bandwidth(device: torch.device) -> Peak:
    """CUDA: the GPU's theoretical DRAM bandwidth (from the driver's memory clock and bus width).
    CPU: the read bandwidth torch reaches summing 256 MiB with all its threads (the theoretical
    figure of a shared cloud machine is unknowable from inside). Working sets that fit in the
    caches can exceed this roof."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        theoretical = _native.cuda().peak_memory_bandwidth(index)
        if theoretical > 0:
            return Peak(theoretical / 1e9, "theoretical DRAM bandwidth (memory clock × bus width)")
    return Peak(
        _measured_read(device), f"measured DRAM read, torch sum of 256 MiB, {torch.get_num_threads()} threads"
    )
