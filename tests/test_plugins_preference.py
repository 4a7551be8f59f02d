"""Built-in preference-optimisation plugins."""

from __future__ import annotations

import math

import pytest
import torch

from feedbackkit import registry


def test_dpo_is_ln2_when_policy_equals_reference():
    dpo = registry.get("dpo")
    logps = torch.randn(4, dtype=torch.float64)
    losses = dpo(logps, logps + 1.0, logps, logps + 1.0)
    torch.testing.assert_close(losses, torch.full((4,), math.log(2), dtype=torch.float64))


def test_dpo_hand_computed_with_label_smoothing():
    dpo = registry.get("dpo")
    # margin = (−1 − −2) − (−3 − −2) = 2 ; z = β·2 = 1
    args = (torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]))
    assert dpo(*args, beta=0.5).item() == pytest.approx(math.log1p(math.exp(-1.0)))
    smoothed = 0.9 * math.log1p(math.exp(-1.0)) + 0.1 * math.log1p(math.exp(1.0))
    assert dpo(*args, beta=0.5, label_smoothing=0.1).item() == pytest.approx(smoothed, rel=1e-6)


def test_dpo_gradient_pushes_chosen_up():
    dpo = registry.get("dpo")
    chosen = torch.tensor([-5.0], requires_grad=True)
    dpo(chosen, torch.tensor([-5.0]), torch.tensor([-5.0]), torch.tensor([-5.0])).sum().backward()
    assert chosen.grad.item() == pytest.approx(-0.1 * 0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"beta": 0.0}, "'beta'"), ({"label_smoothing": 0.5}, "'label_smoothing'")]
)
def test_dpo_rejects_bad_options(kwargs, message):
    x = torch.zeros(1)
    with pytest.raises(ValueError, match=message):
        registry.get("dpo")(x, x, x, x, **kwargs)
