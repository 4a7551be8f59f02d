"""How many kernels (CUDA) or torch operators (CPU) one call launches."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

# Kineto activity types of GPU work; syncs and GPU annotations are device events too, not launches.
GPU_WORK = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})


def _is_operator(name: str) -> bool:
    """aten::mul, feedbackkit::gae, …; not record_function annotations or autograd-engine frames."""
    return "::" in name and not name.startswith("autograd::")


def _outermost(spans: list[tuple[int, int, int]]) -> int:
    """The number of (start, end, thread) spans not nested inside another span of their thread."""
    count = 0
    open_until: dict[int, int] = {}  # thread -> end of its current outermost span
    for start, end, thread in sorted(spans, key=lambda s: (s[0], -s[1])):
        if start >= open_until.get(thread, start):
            count += 1
            open_until[thread] = end
    return count


def launches_per_call(fn: Callable[[], Any], device: torch.device) -> int | None:
    """CUDA: the kernels, memcpys and memsets one call of `fn` puts on the GPU. CPU: the torch
    operators it dispatches, not counting those called from inside another operator (a fused op
    counts 1, an eager loop its every op). None on the CPU for calls that run torch.compile'd
    code, whose generated C++ loops are not operators."""
    # Kineto prints two "USDT" lines per profile to stderr unless its log level is above all of
    # its levels; a user's own setting is kept.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        result = fn()
        if cuda:
            torch.cuda.synchronize(device)
    del result
    # The raw kineto events: building profile.events() takes seconds for a 100k-op eager loop.
    events = prof.profiler.kineto_results.events()
    if cuda:
        return sum(e.activity_type() in GPU_WORK for e in events)
    if any(e.name().startswith("Torch-Compiled Region") for e in events):
        return None
    operators = [e for e in events if _is_operator(e.name())]
    return _outermost([(e.start_ns(), e.end_ns(), e.start_thread_id()) for e in operators])
