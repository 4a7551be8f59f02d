"""An example third-party feedbackkit plugin: reward minus a penalty on over-long responses."""

from __future__ import annotations

import torch

from feedbackkit import Method, Paper


def length_penalised_reward(
    *, scores: torch.Tensor, lengths: torch.Tensor, target: int = 256, alpha: float = 0.01
) -> torch.Tensor:
    """r' = r − α · max(0, length − target), per sequence."""
    if alpha < 0:
        raise ValueError(f"example.length_penalty: 'alpha' must be >= 0; got {alpha}")
    excess = (lengths.to(scores.dtype) - target).clamp(min=0)
    return scores - alpha * excess


length_penalty = Method(
    name="example.length_penalty",
    kind="reward",
    paper=Paper(
        title="A Long Way to Go: Investigating Length Correlations in RLHF", arxiv="2310.03716", year=2023
    ),
    summary="Sequence reward minus alpha times the tokens beyond a target length",
    fn=length_penalised_reward,
)
