"""Paper 1: RLHF Workflow: From Reward Modeling to Online RLHF (arXiv 2405.07863)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from feedbackkit.plugin import Method, Paper

PAPER = Paper(title="RLHF Workflow: From Reward Modeling to Online RLHF", arxiv="2405.07863", year=2024)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    /,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair DPO loss on sequence log-probs.

    z = β·[(π_w − ref_w) − (π_l − ref_l)];
    loss = −(1 − ε)·log σ(z) − ε·log σ(−z), ε = label_smoothing (conservative DPO).
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"dpo: 'label_smoothing' must be in [0, 0.5); got {label_smoothing}")
    if beta <= 0:
        raise ValueError(f"dpo: 'beta' must be > 0; got {beta}")
    z = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


dpo = Method(
    name="dpo",
    kind="preference_loss",
    paper=PAPER,
    summary="Direct preference optimisation loss −log σ(β·margin), with optional label smoothing",
    fn=dpo_loss,
)
