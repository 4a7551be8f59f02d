"""The benchmark harness: discovery, measurement, failure isolation, reports."""

from __future__ import annotations

import json
import re

import pytest
import torch
from rich.console import Console

from feedbackkit.bench import Case, Workload, discover, run
from feedbackkit.bench.launches import launches_per_call
from feedbackkit.bench.peak import Peak, memory_bandwidth
from feedbackkit.bench.report import environment, print_table, write_json
from feedbackkit.bench.timing import peak_extra_bytes


def _case(setup, name="probe") -> Case:
    return Case(family="test", op=name, params={"n": 1}, setup=setup)


def test_discover_finds_logprob_cases():
    quick = discover(["logprob"], quick=True)
    full = discover(["logprob"], quick=False)
    assert quick and len(full) > len(quick)
    assert all(c.family == "logprob" for c in full)
    assert {c.op for c in full} == {"sequence_reduce", "sequence_logprob", "linear_logprob"}
    assert {c.op for c in discover(["logprob"], quick=False, device="cuda")} == {
        "sequence_reduce",
        "sequence_logprob",
        "linear_logprob",
    }
    with pytest.raises(ValueError, match="unknown benchmark family"):
        discover(["nope"])


def test_speedup_is_relative_to_baseline():
    x = torch.randn(1 << 16)
    workload = Workload(
        impls={"fast": lambda: x.sum(), "torch": lambda: torch.stack([x.sum() for _ in range(20)])},
        bytes_moved=x.nbytes,
    )
    results = {r.impl: r for r in run([_case(lambda device: workload)], repeats=3)}
    assert results["torch"].speedup == 1.0
    assert results["fast"].speedup == pytest.approx(results["torch"].median_ms / results["fast"].median_ms)
    assert results["fast"].gb_per_s == pytest.approx(x.nbytes / (results["fast"].median_ms * 1e-3) / 1e9)


def test_launches_count_outermost_ops_on_cpu():
    x = torch.randn(1 << 10)
    mask = torch.ones(4, 8, dtype=torch.bool)
    values = torch.randn(4, 8)
    cpu = torch.device("cpu")
    assert launches_per_call(lambda: (x * 2).sum(), cpu) == 2  # not the to/copy_/fill_ inside them
    assert launches_per_call(lambda: torch.stack([x + i for i in range(20)]), cpu) == 21
    fused = torch.ops.feedbackkit.sequence_reduce
    assert launches_per_call(lambda: fused(values, mask, None, "mean"), cpu) == 1
    (result,) = run([_case(lambda device: Workload({"torch": lambda: x.sum()}))], repeats=2)
    assert result.launches_per_call == 1


def test_launches_of_compiled_cpu_code_are_unknown():
    compiled = torch.compile(lambda x: (x * 2).sin().sum(), dynamic=False)
    x = torch.randn(1 << 10)
    compiled(x)
    assert launches_per_call(lambda: compiled(x), torch.device("cpu")) is None


@pytest.mark.cuda
def test_launches_count_cuda_kernels():
    x = torch.randn(1 << 16, device="cuda")

    def ten_adds():
        y = x
        for _ in range(10):
            y = y + 1
        return y

    assert launches_per_call(ten_adds, torch.device("cuda")) == 10


def test_failures_are_isolated():
    def broken_setup(device):
        raise RuntimeError("cannot build inputs")

    def boom():
        raise ValueError("impl exploded")

    ok = Workload(impls={"feedbackkit": boom, "torch": lambda: torch.ones(3).sum()})
    results = run([_case(broken_setup, "a"), _case(lambda device: ok, "b")], repeats=2)
    by_impl = {(r.case, r.impl): r for r in results}
    assert "cannot build inputs" in by_impl[("a[n=1]", "<setup>")].error
    assert "impl exploded" in by_impl[("b[n=1]", "feedbackkit")].error
    assert by_impl[("b[n=1]", "torch")].error is None and by_impl[("b[n=1]", "torch")].median_ms > 0
    console = Console(record=True, width=200)
    print_table(results, environment("cpu"), console)
    text = console.export_text()
    assert "failed: RuntimeError: cannot build inputs" in text and "failed: ValueError: impl exploded" in text


def test_bandwidth_fraction_uses_the_peak():
    x = torch.randn(1 << 16)
    workload = Workload(impls={"torch": lambda: x.sum()}, bytes_moved=x.nbytes)
    (result,) = run([_case(lambda device: workload)], repeats=2, peak=Peak(gb_per_s=2.0, source="test"))
    assert result.fraction_of_peak_bandwidth == pytest.approx(result.gb_per_s / 2.0)
    measured = memory_bandwidth(torch.device("cpu"))
    assert measured.gb_per_s > 0.1 and "measured" in measured.source


def test_cpu_peak_memory_sees_a_large_temporary():
    size = 64 << 20
    peak = peak_extra_bytes(lambda: torch.ones(size // 4, dtype=torch.float32).sum(), torch.device("cpu"))
    if peak is None:
        pytest.skip("/proc/self/clear_refs is not writable here")
    assert size * 0.9 <= peak <= size * 1.5


def test_json_has_provenance(tmp_path):
    results = run([_case(lambda device: Workload(impls={"torch": lambda: torch.zeros(2)}))], repeats=2)
    write_json(tmp_path / "r.json", results, environment("cpu"))
    payload = json.loads((tmp_path / "r.json").read_text())
    assert set(payload["environment"]) >= {"device", "device_name", "commit", "torch", "feedbackkit", "date"}
    assert payload["results"][0]["impl"] == "torch"


def test_per_item_workloads_compare_time_per_item():
    """A baseline run on a subset of the items (2 of 20) is compared per item, not per call."""
    x = torch.randn(1 << 12)

    def sums(count):
        return lambda: [x.sum() for _ in range(count)]

    workload = Workload(
        impls={"all": sums(20), "subset": sums(2)},
        baseline="subset",
        items={"all": 20, "subset": 2},
        samples_per_item=x.numel(),
    )
    results = {r.impl: r for r in run([_case(lambda device: workload)], repeats=3)}
    every, subset = results["all"], results["subset"]
    assert (every.items, subset.items) == (20, 2)
    assert every.us_per_item == pytest.approx(every.median_ms * 1e3 / 20)
    assert every.samples_per_s == pytest.approx(x.numel() / (every.us_per_item * 1e-6))
    assert every.speedup == pytest.approx(subset.us_per_item / every.us_per_item)
    assert 0.25 < every.speedup < 4  # the same work per item (per call it would be 10x apart)
    assert every.speedup_over == {"subset": every.speedup} and subset.speedup_over is None
    console = Console(record=True, width=300)
    print_table(list(results.values()), environment("cpu"), console)
    text = console.export_text()
    assert "µs/item" in text and re.search(r"subset \d+\.\d+x", text)  # the speed-up over it
