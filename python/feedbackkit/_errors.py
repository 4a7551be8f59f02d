"""The exception every feedbackkit op raises for a bad argument. Torch-free, so the NumPy-only
families (stacking) share it."""

from __future__ import annotations


class ArgumentError(ValueError, TypeError):
    """A bad argument to a feedbackkit op. Catchable as ValueError or TypeError."""
