"""NumPy interop: ops accept NumPy arrays on the CPU and answer NumPy arrays."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ._checks import ArgumentError

ArrayLike = torch.Tensor | np.ndarray


def to_torch(op: str, name: str, value: object) -> torch.Tensor | None:
    """`value` as a tensor: tensors and None pass through; NumPy arrays become zero-copy tensors
    (copied only if they have negative strides); anything else is an ArgumentError."""
    if value is None or isinstance(value, torch.Tensor):
        return value
    if not isinstance(value, np.ndarray):
        raise ArgumentError(
            f"{op}: '{name}' must be a torch.Tensor or numpy.ndarray; got {type(value).__name__}"
        )
    if any(s < 0 for s in value.strides):
        value = np.ascontiguousarray(value)
    with warnings.catch_warnings():
        # Read-only arrays are fine: ops never write to their inputs.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(value)


def like_input(result: torch.Tensor, original: object) -> ArrayLike:
    """Returns `result` as NumPy when the caller passed NumPy."""
    return result.numpy() if isinstance(original, np.ndarray) else result
