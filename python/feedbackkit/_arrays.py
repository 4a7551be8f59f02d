"""NumPy interop: ops accept NumPy arrays on the CPU and answer NumPy arrays."""

from __future__ import annotations

import warnings
from typing import Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray]


def to_torch(value: object) -> object:
    """A zero-copy tensor for a NumPy array (copied only if it has negative strides); anything
    else is returned unchanged for the op's own checks to judge."""
    if not isinstance(value, np.ndarray):
        return value
    if any(s < 0 for s in value.strides):
        value = np.ascontiguousarray(value)
    with warnings.catch_warnings():
        # Read-only arrays are fine: ops never write to their inputs.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(value)


def like_input(result: torch.Tensor, original: object) -> ArrayLike:
    """Returns `result` as NumPy when the caller passed NumPy."""
    return result.numpy() if isinstance(original, np.ndarray) else result
