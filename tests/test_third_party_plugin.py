"""A real third-party distribution, pip-installed, found through the CLI and the Python API;
and a plugin that raises at import, reported as failed while the others keep working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import method_source, run_cli, write_distribution

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "third_party_plugin"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("third_party_site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        timeout=600,
    )
    return target


def test_listed_through_cli(installed_example):
    result = run_cli("plugins", "list", "--json", path=installed_example)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    row = rows["example.length_penalty"]
    assert row["distribution"] == "feedbackkit-example-plugin" and not row["builtin"]
    assert row["status"] == "available" and row["kind"] == "reward" and row["arxiv"] == "2310.03716"
    assert rows["dpo"]["status"] == "available"


def test_shown_through_cli(installed_example):
    result = run_cli("plugins", "show", "example.length_penalty", "--json", path=installed_example)
    assert result.returncode == 0, result.stderr
    details = json.loads(result.stdout)
    assert details["target"] == "feedbackkit_example_plugin:length_penalty"
    assert "max(0, length − target)" in details["doc"]


def test_loaded_through_python_api(installed_example):
    code = (
        "import torch; from feedbackkit import registry; m = registry.get('example.length_penalty'); "
        "scores, lengths = torch.tensor([1.0, 1.0]), torch.tensor([100, 300]); "
        "print(m(scores=scores, lengths=lengths, target=200, alpha=0.01).tolist())"
    )
    env = {**os.environ, "PYTHONPATH": str(installed_example)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [1.0, 0.0]


def test_autoload_off_hides_third_party(installed_example):
    result = run_cli(
        "plugins", "list", "--json", path=installed_example, env={"FEEDBACKKIT_PLUGIN_AUTOLOAD": "0"}
    )
    names = {row["name"] for row in json.loads(result.stdout)}
    assert "dpo" in names and "example.length_penalty" not in names


def test_broken_plugin_reported_while_others_work(tmp_path):
    write_distribution(
        tmp_path,
        "broken-dist",
        {"broken.method": "broken_plugin:method", "healthy.method": "healthy_plugin:method"},
        {
            "broken_plugin": "raise ImportError('this plugin is broken')\n",
            "healthy_plugin": method_source("healthy.method"),
        },
    )
    listing = run_cli("plugins", "list", "--json", path=tmp_path)
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["broken.method"]["status"] == "failed"
    assert "this plugin is broken" in rows["broken.method"]["error"]
    assert rows["healthy.method"]["status"] == "available" and rows["dpo"]["status"] == "available"

    table = run_cli("plugins", "list", path=tmp_path)
    assert table.returncode == 0 and "failed" in table.stdout and "healthy.method" in table.stdout

    doctor = run_cli("plugins", "doctor", path=tmp_path)
    assert doctor.returncode == 1
    assert "broken.method" in doctor.stdout and "this plugin is broken" in doctor.stdout
    assert "healthy.method" not in doctor.stdout

    show = run_cli("plugins", "show", "broken.method", path=tmp_path)
    assert show.returncode == 1 and "ImportError" in show.stdout

    loaded = run_cli("plugins", "show", "healthy.method", "--json", path=tmp_path)
    assert loaded.returncode == 0 and json.loads(loaded.stdout)["kind"] == "reward"
