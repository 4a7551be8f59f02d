"""Plugin discovery, lazy loading, error isolation, duplicates and the kill switches."""

from __future__ import annotations

import sys

import pytest
from conftest import method_source, write_distribution

import feedbackkit
from feedbackkit import Method, Paper, registry
from feedbackkit.plugin import KINDS


def test_builtin_dpo_is_registered_through_entry_points():
    entry = registry.entries()["dpo"][0]
    assert entry.distribution == "feedbackkit" and entry.builtin
    assert entry.target == "feedbackkit.plugins.rlhf_workflow:dpo"
    method = registry.get("dpo")
    assert method.kind == "preference_loss" and method.paper.arxiv == "2405.07863"


def test_names_do_not_import_plugins(plugin_path):
    write_distribution(
        plugin_path, "lazy-dist", {"lazy": "lazy_mod:method"}, {"lazy_mod": method_source("lazy")}
    )
    assert "lazy" in registry.names()
    assert "lazy_mod" not in sys.modules
    assert registry.get("lazy").name == "lazy"
    assert "lazy_mod" in sys.modules


def test_failing_plugin_is_isolated(plugin_path):
    write_distribution(
        plugin_path,
        "mixed-dist",
        {"broken": "broken_mod:method", "fine": "fine_mod:method", "wrong": "fine_mod:not_a_method"},
        {
            "broken_mod": "raise RuntimeError('boom at import')\n",
            "fine_mod": method_source("fine") + "not_a_method = 3\n",
        },
    )
    by_name = {r.entry.name: r for r in registry.records()}
    assert by_name["broken"].status == "failed" and "boom at import" in by_name["broken"].error
    assert "RuntimeError" in by_name["broken"].details
    assert by_name["wrong"].status == "failed" and "not a feedbackkit.Method" in by_name["wrong"].error
    assert by_name["fine"].status == "available"
    assert by_name["dpo"].status == "available"
    with pytest.raises(registry.PluginLoadError, match="boom at import") as info:
        registry.get("broken")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert registry.get("fine").name == "fine"


def test_entry_name_must_match_method_name(plugin_path):
    write_distribution(plugin_path, "misnamed-dist", {"alias": "m:method"}, {"m": method_source("real_name")})
    with pytest.raises(registry.PluginLoadError, match="named 'alias'"):
        registry.get("alias")


def test_duplicate_names_name_both_distributions(plugin_path, monkeypatch):
    write_distribution(
        plugin_path, "first-dist", {"twin": "twin_a:method"}, {"twin_a": method_source("twin")}
    )
    write_distribution(
        plugin_path, "second-dist", {"twin": "twin_b:method"}, {"twin_b": method_source("twin", "selector")}
    )
    with pytest.raises(registry.DuplicatePluginError, match="first-dist") as info:
        registry.get("twin")
    assert "second-dist" in str(info.value)
    assert registry.get("twin", distribution="second-dist").kind == "selector"
    statuses = {r.entry.distribution: r.status for r in registry.records() if r.entry.name == "twin"}
    assert statuses == {"first-dist": "duplicate", "second-dist": "duplicate"}
    monkeypatch.setenv("FEEDBACKKIT_PLUGIN_CHOICE", "twin=first-dist")
    assert registry.get("twin").kind == "reward"
    with pytest.raises(registry.UnknownPluginError, match="not exported by distribution 'nope'"):
        registry.get("twin", distribution="nope")


def test_disable_and_autoload_switches(plugin_path, monkeypatch):
    write_distribution(
        plugin_path, "extra-dist", {"extra": "extra_mod:method"}, {"extra_mod": method_source("extra")}
    )
    assert {"dpo", "extra"} <= set(registry.names())
    monkeypatch.setenv("FEEDBACKKIT_DISABLE_PLUGINS", "dpo, other")
    registry.refresh()
    assert "dpo" not in registry.names() and "extra" in registry.names()
    with pytest.raises(registry.UnknownPluginError, match="no feedbackkit plugin named 'dpo'"):
        registry.get("dpo")
    monkeypatch.setenv("FEEDBACKKIT_DISABLE_PLUGINS", "extra-dist")
    registry.refresh()
    assert "extra" not in registry.names() and "dpo" in registry.names()
    monkeypatch.delenv("FEEDBACKKIT_DISABLE_PLUGINS")
    monkeypatch.setenv("FEEDBACKKIT_PLUGIN_AUTOLOAD", "0")
    registry.refresh()
    assert "extra" not in registry.names() and "dpo" in registry.names()


def test_runtime_registration(plugin_path):
    method = Method(
        name="mine", kind="scheduler", paper=Paper("Mine"), summary="constant", fn=lambda step: 0.5
    )
    registry.register(method)
    try:
        assert registry.get("mine")(3) == 0.5
        assert registry.entries()["mine"][0].distribution == "<runtime>"
    finally:
        registry._runtime.clear()


def test_unknown_plugin_lists_installed():
    with pytest.raises(registry.UnknownPluginError, match=r"installed: .*dpo"):
        registry.get("no-such-method")


def test_kind_filter_keeps_failures(plugin_path):
    write_distribution(
        plugin_path, "k-dist", {"bad": "bad_mod:method"}, {"bad_mod": "import no_such_module\n"}
    )
    rows = registry.records(kind="preference_loss")
    assert {r.entry.name for r in rows} >= {"dpo", "bad"}
    assert all(r.method is None or r.method.kind == "preference_loss" for r in rows)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad Name"}, "Method.name must match"),
        ({"kind": "loss"}, "kind must be one of"),
        ({"summary": ""}, "summary must be"),
        ({"fn": 3}, "fn must be callable"),
        ({"requires": "cuda"}, "requires must be a tuple"),
        ({"paper": "title"}, "paper must be a feedbackkit.Paper"),
    ],
)
def test_method_validation(kwargs, message):
    fields = {"name": "ok", "kind": "reward", "paper": Paper("T"), "summary": "s", "fn": lambda: 1} | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        Method(**fields)


def test_requirements_and_availability(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    tool = tmp_path / "fake-verilog-sim"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    make = lambda *req: Method(name="m", kind="reward", paper=Paper("T"), summary="s", fn=abs, requires=req)  # noqa: E731
    assert make("numpy", "fake-verilog-sim").available()
    missing = make("no_such_module_xyz").missing()
    assert len(missing) == 1 and "no_such_module_xyz" in missing[0]
    cuda = make("cuda")
    assert cuda.available() == (feedbackkit._native.cuda_built() and feedbackkit._native.gpu_count() > 0)


def test_kinds_are_documented():
    doc = feedbackkit.plugin.__doc__
    assert all(kind in doc for kind in KINDS)
