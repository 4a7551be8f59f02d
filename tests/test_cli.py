"""The feedbackkit command."""

from __future__ import annotations

import json

from conftest import run_cli

from feedbackkit import _build_info, _native


def test_info_json():
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    details = json.loads(result.stdout)
    assert details["cuda_module_built"] == _native.cuda_built()
    assert details["openmp_threads"] >= 1
    assert details["torch"].startswith("2.")
    if _build_info.CUDA_BUILT:
        assert details["cuda_version"] and "90-real" in details["cuda_archs"]


def test_info_table():
    result = run_cli("info")
    assert result.returncode == 0 and "cuda_module_built" in result.stdout


def test_plugins_list_kind_filter():
    result = run_cli("plugins", "list", "--kind", "preference_loss", "--json")
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows if r["status"] != "failed"] == ["dpo"]
    assert rows[0]["paper"] == "RLHF Workflow: From Reward Modeling to Online RLHF"


def test_plugins_show_unknown_is_an_error():
    result = run_cli("plugins", "show", "no-such-plugin")
    assert result.returncode == 1 and "no feedbackkit plugin named 'no-such-plugin'" in result.stdout


def test_plugins_doctor_clean_install():
    result = run_cli("plugins", "doctor")
    assert result.returncode == 0, result.stdout
    assert "plugins load and can run here" in result.stdout


def test_bench_quick_writes_json_and_png(tmp_path):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    result = run_cli(
        "bench",
        "logprob",
        "--quick",
        "--filter",
        "layout=mask,pass=fwd]",
        "--repeats",
        "3",
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
    )
    assert result.returncode == 0, result.stderr
    assert "sequence_reduce" in result.stdout and "speed-up" in result.stdout
    payload = json.loads(out_json.read_text())
    assert payload["environment"]["device"] == "cpu" and payload["environment"]["torch"].startswith("2.")
    impls = {r["impl"] for r in payload["results"]}
    assert impls == {"feedbackkit", "torch"}
    assert all(r["median_ms"] > 0 and r["gb_per_s"] > 0 for r in payload["results"])
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_unknown_family():
    result = run_cli("bench", "nonsense")
    assert result.returncode == 2 and "unknown benchmark family nonsense" in result.stdout
