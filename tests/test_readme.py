"""The README's usage example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_usage_example_runs():
    text = README.read_text()
    usage = text[text.index("## Using it") :]
    code = re.search(r"```python\n(.*?)```", usage, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    seq = namespace["seq"]
    assert seq.shape == (4,) and str(seq.dtype) == "torch.float32"
    assert namespace["logp"].grad is not None
