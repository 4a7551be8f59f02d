"""Benchmark harness behind ``feedbackkit bench``.

Each family registers cases in ``benchmarks/bench_<family>.py`` (shipped as
``feedbackkit.benchmarks``) through a ``cases(quick: bool) -> list[Case]`` function. A case
builds a :class:`Workload` on a device: the callables to time (feedbackkit and its baselines,
all in one process), which of them is the baseline, and the bytes or FLOPs one call needs.
"""

from .case import Case, Workload
from .runner import Result, discover, run

__all__ = ["Case", "Result", "Workload", "discover", "run"]
