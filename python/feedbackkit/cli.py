"""The ``feedbackkit`` command: info, plugins list/show/doctor, bench, stack, experiment."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from . import registry
from .info import info
from .plugin import KINDS
from .stacking.cli import add_stack_parser


def _print_json(payload: object) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def _cmd_info(args: argparse.Namespace, console: Console) -> int:
    details = info()
    if args.json:
        _print_json(details)
        return 0
    table = Table(title="feedbackkit", show_header=False)
    for key, value in details.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    console.print(table)
    return 0


def _record_row(record: registry.Record) -> dict[str, Any]:
    method, entry = record.method, record.entry
    return {
        "name": entry.name,
        "distribution": entry.distribution,
        "builtin": entry.builtin,
        "status": record.status,
        "kind": method.kind if method else None,
        "paper": method.paper.title if method else None,
        "arxiv": method.paper.arxiv if method else None,
        "summary": method.summary if method else None,
        "missing": method.missing() if method else [],
        "error": record.error,
        "duplicate_of": list(record.duplicate_of),
    }


def _cmd_plugins_list(args: argparse.Namespace, console: Console) -> int:
    rows = [_record_row(r) for r in registry.records(kind=args.kind)]
    if args.json:
        _print_json(rows)
        return 0
    table = Table(title=f"feedbackkit plugins ({len(rows)})")
    for column in ("name", "kind", "paper", "arXiv", "status", "distribution"):
        table.add_column(column, overflow="fold")
    colours = {"available": "green", "unavailable": "yellow", "failed": "red", "duplicate": "red"}
    for row in rows:
        status = f"[{colours[row['status']]}]{row['status']}[/]"
        table.add_row(
            row["name"],
            row["kind"] or "?",
            row["paper"] or (row["error"] or ""),
            row["arxiv"] or "",
            status,
            row["distribution"],
        )
    console.print(table)
    return 0


def _cmd_plugins_show(args: argparse.Namespace, console: Console) -> int:
    try:
        method = registry.get(args.name, distribution=args.distribution)
    except (LookupError, registry.PluginLoadError) as error:
        console.print(f"[red]error:[/] {error}")
        if error.__cause__ is not None:
            console.print(f"cause: {type(error.__cause__).__name__}: {error.__cause__}")
        return 1
    entry = registry._resolve(args.name, args.distribution)
    details = {
        "name": method.name,
        "kind": method.kind,
        "summary": method.summary,
        "paper": method.paper.title,
        "arxiv": method.paper.arxiv,
        "year": method.paper.year,
        "distribution": entry.distribution,
        "target": entry.target,
        "requires": list(method.requires),
        "available": method.available(),
        "missing": method.missing(),
        "extras": sorted(method.extras),
        "doc": inspect.getdoc(method.fn) or "",
    }
    if args.json:
        _print_json(details)
        return 0
    table = Table(title=f"plugin {method.name}", show_header=False)
    for key, value in details.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    console.print(table)
    return 0


def _cmd_plugins_doctor(args: argparse.Namespace, console: Console) -> int:
    records = registry.records()
    problems = [r for r in records if r.status != "available"]
    for record in problems:
        where = f"{record.entry.name} ({record.entry.distribution}, {record.entry.target})"
        if record.status == "failed":
            console.print(f"[red]failed[/] {where}: {record.error}")
            if args.verbose and record.details:
                console.print(record.details, markup=False)
        elif record.status == "duplicate":
            console.print(f"[red]duplicate[/] {where}: also exported by {', '.join(record.duplicate_of)}")
        else:
            console.print(f"[yellow]unavailable[/] {where}: {'; '.join(record.method.missing())}")  # type: ignore[union-attr]
    ok = len(records) - len(problems)
    console.print(f"{ok} of {len(records)} plugins load and can run here")
    return 1 if any(r.status in ("failed", "duplicate") for r in problems) else 0


def _cmd_bench(args: argparse.Namespace, console: Console) -> int:
    import torch

    from .bench import discover, run
    from .bench.peak import memory_bandwidth
    from .bench.report import environment, print_table, write_json, write_plot

    try:
        cases = discover(args.families, quick=args.quick, device=args.device)
    except ValueError as error:
        console.print(f"[red]error:[/] {error}")
        return 2
    if args.filter:
        cases = [c for c in cases if args.filter in c.label]
    repeats = args.repeats or (5 if args.quick else 15)
    if args.device == "cuda" and not torch.cuda.is_available():
        console.print("[red]error:[/] --device cuda was requested but torch sees no CUDA device")
        return 2
    with console.status("measuring the memory-bandwidth roof") as status:
        peak = memory_bandwidth(torch.device(args.device))
        results = run(
            cases, device=args.device, repeats=repeats, peak=peak, progress=lambda label: status.update(label)
        )
    env = environment(args.device, peak)
    print_table(results, env, console)
    if args.json:
        write_json(args.json, results, env)
        console.print(f"wrote {args.json}")
    if args.plot:
        write_plot(args.plot, results, env)
        console.print(f"wrote {args.plot}")
    failed = [r for r in results if r.error is not None]
    if failed:
        console.print(f"[red]{len(failed)} measurement(s) failed[/]")
    return 1 if failed else 0


def _cmd_experiment_ef21(args: argparse.Namespace, console: Console) -> int:
    import importlib

    try:
        experiment_ef21 = importlib.import_module("feedbackkit.benchmarks.experiment_ef21")
        summary = experiment_ef21.run_from_args(args)
    except ModuleNotFoundError as error:
        if error.name not in ("sklearn", "matplotlib"):
            raise
        console.print(f"[red]error:[/] {error}; install it with: pip install 'feedbackkit[experiments]'")
        return 2
    except ValueError as error:
        console.print(f"[red]error:[/] {error}")
        return 2
    table = Table(
        title=f"EF21 experiment: {summary['dataset']}, n = {summary['workers']}, T = {summary['iterations']}"
    )
    table.add_column("Top-k")
    for method in ("gd", "ef14", "ef21", "ef21w"):
        table.add_column(f"final ‖∇f‖² {experiment_ef21.LABELS[method]}")
    table.add_column("EF21 < EF")
    table.add_column("L_AM γ < L_QM γ")
    for key, final in summary["final_grad_norm_sq"].items():
        held = summary["orderings"][key]
        table.add_row(
            key,
            *(f"{final[m]:.3e}" for m in ("gd", "ef14", "ef21", "ef21w")),
            *(
                "[green]yes[/]" if held[o] else "[red]no[/]"
                for o in ("ef21_beats_ef", "am_stepsize_beats_qm")
            ),
        )
    console.print(table)
    console.print(
        f"L_AM = {summary['L_AM']:.4g}, L_QM = {summary['L_QM']:.4g} "
        f"(L_QM/L_AM = {summary['L_QM_over_L_AM']:.3f}), L = {summary['L']:.4g}"
    )
    for path in summary.get("files", {}).values():
        console.print(f"wrote {path}")
    if not summary["orderings_hold"]:
        console.print("[yellow]warning:[/] not every expected ordering held in this run (see the JSON)")
    return 0


def _experiment_ef21_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``experiment ef21``. Defaults (None) are filled in by experiment_ef21, which
    is imported only when the command runs (building the parser never imports it)."""
    parser.add_argument("--dataset", choices=("breast_cancer", "digits"), help="default breast_cancer")
    parser.add_argument("--workers", type=int, help="number of workers n (default 10)")
    parser.add_argument(
        "--k",
        type=int,
        action="append",
        dest="ks",
        metavar="K",
        help="Top-K; repeat for several (default 1 and 6)",
    )
    parser.add_argument("--iterations", type=int, help="iterations T (default 2000)")
    parser.add_argument("--out", help="output directory (default benchmarks/results)")
    parser.add_argument("--seed", type=int, help="seed of the starting point x⁰ (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedbackkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, native modules, GPUs, OpenMP threads")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_info)

    plugins = sub.add_parser("plugins", help="list, inspect and diagnose plugins").add_subparsers(
        dest="plugins_command", required=True
    )
    p = plugins.add_parser("list", help="every plugin with kind, paper, arXiv id and status")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_plugins_list)
    p = plugins.add_parser("show", help="details of one plugin")
    p.add_argument("name")
    p.add_argument("--distribution", help="pick one when several distributions export the name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_plugins_show)
    p = plugins.add_parser("doctor", help="which plugins fail to load or cannot run here, and why")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failed plugins")
    p.set_defaults(handler=_cmd_plugins_doctor)

    p = sub.add_parser("bench", help="benchmark kernels against their PyTorch baselines")
    p.add_argument("families", nargs="*", metavar="FAMILY", help="families to run (default: all)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quick", action="store_true", help="a few small cases, fewer repeats")
    p.add_argument("--filter", help="only cases whose label contains this text")
    p.add_argument("--repeats", type=int, help="timed samples per implementation (median is reported)")
    p.add_argument("--json", metavar="FILE", help="write results with device, versions and commit")
    p.add_argument("--plot", metavar="FILE.png", help="write a speed-up chart")
    p.set_defaults(handler=_cmd_bench)

    add_stack_parser(sub)

    experiments = sub.add_parser(
        "experiment", help="the papers' experiments (needs feedbackkit[experiments])"
    )
    experiment = experiments.add_subparsers(dest="experiment", required=True)
    p = experiment.add_parser(
        "ef21", help="EF vs EF21 vs EF21-W on non-convex logistic regression: PNG plots and a JSON summary"
    )
    _experiment_ef21_arguments(p)
    p.set_defaults(handler=_cmd_experiment_ef21)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args, Console())
