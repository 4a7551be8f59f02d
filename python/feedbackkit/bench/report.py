"""Presents benchmark results: a rich table, a JSON file with provenance, a PNG chart."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from .peak import Peak
from .runner import Result


def _commit() -> str:
    """The git commit being measured: FEEDBACKKIT_COMMIT, else the checkout in the current
    directory (marked -dirty with uncommitted changes), else "unknown"."""
    if os.environ.get("FEEDBACKKIT_COMMIT"):
        return os.environ["FEEDBACKKIT_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.strip() + ("-dirty" if dirty.strip() else "")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, peak: Peak | None = None) -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    if device == "cuda":
        name = torch.cuda.get_device_name()
    else:
        name = f"{_cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return {
        "device": device,
        "device_name": name,
        "commit": _commit(),
        "feedbackkit": version("feedbackkit"),
        "torch": torch.__version__,
        "numpy": version("numpy"),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "peak_gb_per_s": None if peak is None else round(peak.gb_per_s, 1),
        "peak_source": None if peak is None else peak.source,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: Sequence[Result], env: dict[str, Any]) -> Table:
    title = f"feedbackkit bench — {env['device_name']} — torch {env['torch']} — {env['commit'][:12]}"
    if env.get("peak_gb_per_s"):
        title += f"\npeak bandwidth {env['peak_gb_per_s']} GB/s ({env['peak_source']})"
    out = Table(title=title)
    columns: tuple[str, ...] = (
        "case",
        "impl",
        "median ms",
        "launches/call",
        "speed-up vs baseline",
        "peak extra MiB",
        "above outputs MiB",
        "GB/s",
        "% of peak BW",
        "TFLOP/s",
    )
    per_item = any(r.us_per_item is not None for r in results)
    if per_item:
        columns += ("items/call", "µs/item", "Msamples/s", "speed-up over")
    for column in columns:
        out.add_column(column, justify="left" if column in ("case", "impl") else "right")
    previous = None
    for r in results:
        case = r.case if r.case != previous else ""
        previous = r.case
        if r.error is not None:
            out.add_row(case, r.impl, f"[red]failed: {r.error}[/]", *[""] * (len(columns) - 3))
            continue
        speedup = "baseline" if r.impl == r.baseline else _fmt(r.speedup, ".2f") + "x"
        fraction = None if r.fraction_of_peak_bandwidth is None else 100 * r.fraction_of_peak_bandwidth
        extra = (
            (
                _fmt(r.items, "d"),
                _fmt(r.us_per_item, ".2f"),
                _fmt(None if r.samples_per_s is None else r.samples_per_s / 1e6, ".1f"),
                ", ".join(f"{other} {x:.2f}x" for other, x in (r.speedup_over or {}).items()),
            )
            if per_item
            else ()
        )
        out.add_row(
            case,
            r.impl,
            _fmt(r.median_ms, ".4f"),
            _fmt(r.launches_per_call, "d"),
            speedup,
            _fmt(r.peak_extra_mib, ".2f"),
            _fmt(r.peak_above_outputs_mib, ".2f"),
            _fmt(r.gb_per_s, ".1f"),
            _fmt(fraction, ".1f"),
            _fmt(r.tflop_per_s, ".3f"),
            *extra,
        )
    return out


def print_table(results: Sequence[Result], env: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(table(results, env))


def write_json(path: str | Path, results: Sequence[Result], env: dict[str, Any]) -> None:
    payload = {"environment": env, "results": [dataclasses.asdict(r) for r in results]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def write_plot(path: str | Path, results: Sequence[Result], env: dict[str, Any]) -> None:
    """Horizontal bars: speed-up of each non-baseline implementation over its baseline."""
    try:
        import matplotlib
    except ImportError as error:
        raise RuntimeError("--plot needs matplotlib: pip install 'feedbackkit[bench]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [
        (f"{r.case} {r.impl}", r.speedup) for r in results if r.impl != r.baseline and r.speedup is not None
    ]
    speedups = [speedup for _, speedup in bars]
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.32 * len(bars)))
    ax.barh(range(len(bars)), speedups, color=["#2a7" if s >= 1 else "#c44" for s in speedups])
    ax.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize=7)
    ax.set_ylim(len(bars) - 0.5, -0.5)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("speed-up over baseline (higher is better)")
    ax.set_title(f"{env['device_name']}\ntorch {env['torch']}, commit {env['commit'][:12]}", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
