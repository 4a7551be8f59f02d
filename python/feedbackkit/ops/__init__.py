"""Registers every feedbackkit op with torch.library (namespace ``feedbackkit``)."""

from . import linear_logprob, logprob, reward

__all__ = ["linear_logprob", "logprob", "reward"]
