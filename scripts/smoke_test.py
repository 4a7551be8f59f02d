"""Smoke test of an installed feedbackkit (run by `nox -s wheel` in a fresh virtualenv)."""

import numpy as np
import torch

import feedbackkit as fk

values = torch.randn(3, 5, requires_grad=True)
mask = torch.ones(3, 5, dtype=torch.bool)
out = fk.sequence_reduce(values, mask, mode="mean")
out.sum().backward()
assert torch.allclose(out, values.detach().mean(-1))
assert torch.allclose(values.grad, torch.full_like(values, 0.2))
assert fk.sequence_reduce(np.ones(4, np.float32), cu_seqlens=np.array([0, 4])).tolist() == [4.0]
assert fk.registry.get("dpo").kind == "preference_loss"
assert fk.info()["cuda_module_built"] in (True, False)
print("wheel smoke test passed")
