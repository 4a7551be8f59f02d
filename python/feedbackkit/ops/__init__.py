"""Registers every feedbackkit op with torch.library (namespace ``feedbackkit``)."""

from . import compress, linear_logprob, logprob, reward, stacking

__all__ = ["compress", "linear_logprob", "logprob", "reward", "stacking"]
