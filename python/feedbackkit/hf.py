"""Hugging Face integration: per-token log-probs of a causal LM without materialising its logits."""

from __future__ import annotations

from typing import Any

import torch

from .logprob import linear_logprob

__all__ = ["from_hf"]

# Config attributes that change logits after the LM head; from_hf refuses models that set them
# rather than return log-probs of a different distribution.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_logits_scale")


def from_hf(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    temperature: float = 1.0,
    return_entropy: bool = False,
    vocab_tile: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """log π(labels[:, t+1] | tokens ≤ t) for a transformers causal LM, shape [B, T-1].

    Runs the model body (``model.base_model``) for the final hidden states and feeds them with
    the LM head (``model.get_output_embeddings()``) to :func:`linear_logprob`, so the [B, T, V]
    logits are never built. The one-token shift is done here: position t scores token t+1.
    ``labels`` defaults to ``input_ids``; positions where ``attention_mask`` is 0 or ``labels``
    equals ``ignore_index`` give 0 (mask the prompt by setting its labels to ``ignore_index``).
    Differentiable with respect to the model's parameters. Needs the ``transformers`` extra.
    """
    config = getattr(model, "config", None)
    for name in _LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value not in (None, 1, 1.0):
            raise NotImplementedError(
                f"from_hf: models with config.{name}={value} post-process logits; not supported"
            )
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"from_hf: expected the LM head to be a torch.nn.Linear; got {type(head).__name__}")
    targets = input_ids if labels is None else labels
    if attention_mask is not None:
        targets = targets.masked_fill(attention_mask == 0, ignore_index)
    outputs = model.base_model(input_ids=input_ids, attention_mask=attention_mask)
    hidden = outputs[0][:, :-1]
    return linear_logprob(
        hidden,
        head.weight,
        targets[:, 1:],
        bias=head.bias,
        ignore_index=ignore_index,
        temperature=temperature,
        return_entropy=return_entropy,
        vocab_tile=vocab_tile,
    )
