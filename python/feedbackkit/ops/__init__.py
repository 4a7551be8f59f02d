"""Registers every feedbackkit op with torch.library (namespace ``feedbackkit``)."""

from . import logprob

__all__ = ["logprob"]
