"""Developer and CI sessions. `nox -s lint tests` is what CI runs (see README.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]

# The CPU build of torch 2.13.0 on local disk: tests never pull the multi-GB CUDA build.
CONSTRAINTS = ("-c", "constraints.txt")
RESULTS = Path("benchmarks/results")


@nox.session
def tests(session: nox.Session) -> None:
    """Build and install feedbackkit (CPU + CUDA compile when nvcc exists), run the test suite."""
    session.install(*CONSTRAINTS, ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) on everything; mypy on the package against its real dependencies."""
    session.install(*CONSTRAINTS, "ruff>=0.6", "mypy>=1.10", "torch", "numpy", "rich", "matplotlib")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", ".")
    session.run("mypy")


@nox.session
def wheel(session: nox.Session) -> None:
    """Build a wheel, install it into a fresh virtualenv, and smoke-test it there."""
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    session.install("build")
    session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), ".")
    (built,) = dist.glob("feedbackkit-*.whl")
    env = tmp / "fresh"
    session.run("python", "-m", "venv", "--clear", str(env))
    session.run(str(env / "bin" / "pip"), "install", "--quiet", *CONSTRAINTS, str(built), external=True)
    smoke = Path("scripts/smoke_test.py").resolve()
    session.chdir(str(tmp))  # away from the source tree, so only the installed wheel is importable
    session.run(str(env / "bin" / "feedbackkit"), "info", external=True)
    session.run(str(env / "bin" / "feedbackkit"), "plugins", "doctor", external=True)
    session.run(str(env / "bin" / "python"), str(smoke), external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Full CPU benchmark run; results land in benchmarks/results/."""
    # pixell (with scipy): the stacking family's peer baselines (thumbnails, map_coordinates).
    session.install(*CONSTRAINTS, ".[bench]", "pixell")
    stem = RESULTS / f"cpu-{_cpu_slug()}"
    session.run(
        "feedbackkit",
        "bench",
        "--device",
        "cpu",
        "--json",
        f"{stem}.json",
        "--plot",
        f"{stem}.png",
        *session.posargs,
    )


def _cpu_slug() -> str:
    """E.g. "AMD-EPYC-2c": the CPU model and core count, for one results file per device."""
    model = "cpu"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return re.sub(r"[^A-Za-z0-9]+", "-", model).strip("-") + f"-{os.cpu_count()}c"


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """On a GPU machine without network: build in place, run the `cuda` tests, benchmark on CUDA."""
    session.run("bash", "scripts/gpu-check", *session.posargs, external=True)
