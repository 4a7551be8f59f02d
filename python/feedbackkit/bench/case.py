"""What a benchmark case is."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Workload:
    """Inputs built on one device, and the implementations to time on them."""

    impls: Mapping[str, Callable[[], Any]]  # name -> zero-argument call; "feedbackkit" first
    baseline: str = "torch"
    bytes_moved: int | None = None  # minimal memory traffic of one call, for GB/s
    flops: int | None = None
    output_bytes: int | None = None  # size of what every implementation must return (e.g. gradients)
    # Per-item workloads (e.g. objects of a stack): how many items one call of each implementation
    # handles (a slow baseline may run on a subset). Times, speed-ups, bytes_moved and flops are
    # then per item.
    items: Mapping[str, int] | None = None
    samples_per_item: int | None = None  # e.g. interpolated values per object, for samples/s


@dataclass(frozen=True)
class Case:
    """One shape/dtype configuration of one op."""

    family: str
    op: str
    params: Mapping[str, Any]
    setup: Callable[[torch.device], Workload]
    devices: tuple[str, ...] = ("cpu", "cuda")
    tags: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        return f"{self.op}[" + ",".join(f"{k}={v}" for k, v in self.params.items()) + "]"
