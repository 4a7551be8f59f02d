"""The README's usage example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_usage_example_runs():
    text = README.read_text()
    start = text.index("## Using it")
    usage = text[start : text.index("\n## ", start + 1)]
    namespace: dict = {}
    for code in re.findall(r"```python\n(.*?)```", usage, re.S):
        exec(compile(code, str(README), "exec"), namespace)
    seq = namespace["seq"]
    assert seq.shape == (4,) and str(seq.dtype) == "torch.float32"
    assert namespace["logp"].grad is not None
    assert namespace["grpo"].shape == (8, 16) and namespace["ppo"].advantages.shape == (8, 16)
    # The fused pipeline's token rewards fed to GAE reproduce its returns.
    assert (namespace["gae"].returns - namespace["ppo"].returns).abs().max() < 1e-5
    # EF21: the shared estimate is the mean of the workers' estimates; the hook ran its dense warm-up.
    assert (namespace["g"] - namespace["g_i"].mean(0)).abs().max() < 1e-6
    assert namespace["top"].indices.shape == (1000,) and 0 < namespace["gamma"] < 1
    assert namespace["state"].counters.dense_steps == 1
    # Stacking: 8 regions of 81² pixels; the binned profiles and their jackknife errors.
    parts, profiles = namespace["parts"], namespace["profiles"]
    assert parts.sum.shape == (8, 1, 81, 81) and int(parts.count.sum()) == 400
    assert profiles.C.shape == profiles.C_err.shape == (1, 5, 10) and (profiles.C_err[0, :, 1:] > 0).all()
    # Near the equator the tangent-plane stack samples within ~0.01 pixel of the flat one: on
    # white noise the two stacks are strongly correlated (a wrong axis or sign would decorrelate).
    flat, sphere = parts.total().stack().ravel(), namespace["sphere"].stack().ravel()
    assert namespace["sphere"].count.tolist() == [400]
    assert np.corrcoef(flat, sphere)[0, 1] > 0.999
