"""Plugin objects: a research method is a :class:`Method` with a :class:`Paper`.

Methods of one kind are interchangeable: they follow the calling protocol of their kind.
Tensors are torch tensors; options are keyword arguments with the paper's defaults; losses are
returned unreduced (one value per pair, sequence or token) so callers choose the reduction.

===================  ==========================================================================
kind                 protocol (see the Protocol classes below)
===================  ==========================================================================
preference_loss      (policy_chosen[B], policy_rejected[B], ref_chosen[B], ref_rejected[B],
                     **options) -> losses[B]; inputs are sequence log-probs
token_loss           (logprobs[B, T], mask[B, T], **options) -> losses[B, T]
reward               (**batch) -> rewards[B] (sequence) or [B, T] (token)
advantage            (rewards[B, T], mask[B, T], **options) -> advantages[B, T]
selector             (scores, **options) -> indices of the selected items
transform            (examples, **options) -> transformed examples
compressor           (**options) -> object with compress(tensor) / decompress(payload)
estimator            (data, **options) -> estimate
evaluator            (predictions, references, **options) -> dict of metric name -> value
scheduler            (step: int, **options) -> value at that step
model                (**config) -> a model object (e.g. torch.nn.Module)
===================  ==========================================================================
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, get_args

from . import _native

Kind = Literal[
    "preference_loss",
    "token_loss",
    "reward",
    "advantage",
    "selector",
    "transform",
    "compressor",
    "estimator",
    "evaluator",
    "scheduler",
    "model",
]
KINDS: tuple[str, ...] = get_args(Kind)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


class PreferenceLoss(Protocol):
    def __call__(
        self, policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, /, **options: Any
    ) -> Any: ...


class TokenLoss(Protocol):
    def __call__(self, logprobs: Any, mask: Any, /, **options: Any) -> Any: ...


class Reward(Protocol):
    def __call__(self, **batch: Any) -> Any: ...


class Advantage(Protocol):
    def __call__(self, rewards: Any, mask: Any, /, **options: Any) -> Any: ...


class Selector(Protocol):
    def __call__(self, scores: Any, /, **options: Any) -> Any: ...


class Transform(Protocol):
    def __call__(self, examples: Any, /, **options: Any) -> Any: ...


class Compressor(Protocol):
    def compress(self, tensor: Any) -> Any: ...
    def decompress(self, payload: Any) -> Any: ...


class Estimator(Protocol):
    def __call__(self, data: Any, /, **options: Any) -> Any: ...


class Evaluator(Protocol):
    def __call__(self, predictions: Any, references: Any, /, **options: Any) -> Mapping[str, Any]: ...


class Scheduler(Protocol):
    def __call__(self, step: int, /, **options: Any) -> Any: ...


@dataclass(frozen=True)
class Paper:
    """The publication a method comes from."""

    title: str
    arxiv: str | None = None
    year: int | None = None


def missing_requirement(requirement: str) -> str | None:
    """Why `requirement` is not met here, or None when it is.

    "cuda" needs the compiled CUDA module and a GPU; any other name must be an importable
    Python module or a program on PATH (e.g. "astropy", "iverilog")."""
    if requirement == "cuda":
        if not _native.cuda_built():
            return "cuda: feedbackkit was built without its CUDA module"
        return None if _native.gpu_count() > 0 else "cuda: no NVIDIA GPU is visible"
    if importlib.util.find_spec(requirement) is not None or shutil.which(requirement) is not None:
        return None
    return f"{requirement}: neither an importable Python module nor a program on PATH"


@dataclass(frozen=True, eq=False)
class Method:
    """One research method, exported by a plugin module through an entry point.

    Calling the Method calls `fn`. `extras` holds further callables of the method (e.g. a
    pair-building step next to its loss)."""

    name: str
    kind: Kind
    paper: Paper
    summary: str
    fn: Callable[..., Any]
    requires: tuple[str, ...] = ()
    extras: Mapping[str, Callable[..., Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"Method.name must match {_NAME.pattern!r}; got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(
                f"Method {self.name!r}: kind must be one of {', '.join(KINDS)}; got {self.kind!r}"
            )
        if not isinstance(self.paper, Paper):
            raise TypeError(
                f"Method {self.name!r}: paper must be a feedbackkit.Paper; got {type(self.paper).__name__}"
            )
        if not self.summary:
            raise ValueError(f"Method {self.name!r}: summary must be a non-empty one-line description")
        if not callable(self.fn):
            raise TypeError(f"Method {self.name!r}: fn must be callable; got {type(self.fn).__name__}")
        if isinstance(self.requires, str) or not all(isinstance(r, str) for r in self.requires):
            raise TypeError(
                f"Method {self.name!r}: requires must be a tuple of strings; got {self.requires!r}"
            )
        object.__setattr__(self, "requires", tuple(self.requires))
        object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def missing(self) -> list[str]:
        """Reasons this machine cannot run the method (empty when it can)."""
        return [reason for r in self.requires if (reason := missing_requirement(r)) is not None]

    def available(self) -> bool:
        """Whether every requirement is met on this machine."""
        return not self.missing()
