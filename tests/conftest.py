from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

from feedbackkit import registry

# A private torch.compile cache per test run: inductor's on-disk cache does not key on custom-op
# schemas, so graphs compiled by another checkout of feedbackkit on this machine must not leak in.
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="feedbackkit-inductor-")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def write_distribution(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Writes an installed-looking distribution (dist-info with entry points, plus modules) into
    `root`, as `pip install --target root` would."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{registry.GROUP}]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


def method_source(name: str, kind: str = "reward") -> str:
    return f"""
    from feedbackkit import Method, Paper
    method = Method(name={name!r}, kind={kind!r}, paper=Paper(title="A test paper", arxiv="0000.00000"),
                    summary="test method", fn=lambda **batch: 1.0)
    """


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A fresh directory on sys.path for fake distributions; the registry is reset around the test."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()
    yield root
    importlib.invalidate_caches()
    registry.refresh()


def run_cli(
    *args: str, path: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs `python -m feedbackkit ARGS` in a subprocess, optionally with `path` on PYTHONPATH."""
    full_env = dict(os.environ)
    full_env.pop("FEEDBACKKIT_DISABLE_PLUGINS", None)
    full_env.pop("FEEDBACKKIT_PLUGIN_AUTOLOAD", None)
    if path is not None:
        full_env["PYTHONPATH"] = os.pathsep.join([str(path), full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    full_env["COLUMNS"] = "250"
    return subprocess.run(
        [sys.executable, "-m", "feedbackkit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )
