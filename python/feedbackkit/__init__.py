"""feedbackkit: fast, correct kernels and a plugin registry for learning from feedback."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import compress, ops, registry, reward
from ._checks import ArgumentError
from .info import info
from .logprob import linear_logprob, sequence_logprob, sequence_reduce
from .plugin import Method, Paper

try:
    __version__ = version("feedbackkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ArgumentError",
    "Method",
    "Paper",
    "__version__",
    "compress",
    "info",
    "linear_logprob",
    "ops",
    "registry",
    "reward",
    "sequence_logprob",
    "sequence_reduce",
]
