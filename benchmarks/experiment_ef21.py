"""Convergence experiment of EF21 / "Error Feedback Reloaded" (specs/compress.md).

Non-convex regularised logistic regression on worker i's data (A_i ∈ R^{m_i×d}, labels b ∈ ±1):

    f_i(x) = (1/m_i) Σ_j log(1 + exp(−b_j a_jᵀx)) + λ Σ_l x_l²/(1 + x_l²),   λ = 0.1,
    f(x) = (1/n) Σ_i f_i(x).

Smoothness in closed form: the logistic part's Hessian is (1/m_i) Σ_j σ(·)(1 − σ(·)) a_j a_jᵀ ⪯
A_iᵀA_i/(4 m_i), and the regulariser's second derivative (2 − 6t²)/(1 + t²)³ lies in [−1/2, 2],
so L_i = λ_max(A_iᵀA_i)/(4 m_i) + 2λ and L = λ_max((1/n) Σ_i A_iᵀA_i/(4 m_i)) + 2λ for f.

Data: scikit-learn's bundled breast-cancer data (569 × 30) or digits (1797 × 64, label "digit is
even"), features standardised (constant columns left at 0). The rows are sorted by their norm
and cut into n contiguous blocks, so workers hold data of different scale and the L_i differ
(L_QM > L_AM).

Methods, for Top-k with α = k/d and ξ = (1 + √(1−α))/α − 1:
GD (dense, γ = 1/L); EF (EF14) and EF21 with EF21's stepsize γ = 1/(L + L_QM ξ); EF21-W
(weights w_i ∝ L_i) with the improved stepsize γ = 1/(L + L_AM ξ). Every method starts at the
same x⁰ (standard normal, seed 0); EF21 and EF21-W send the dense gradient at the first step
(g_i⁰ = ∇f_i(x⁰)). Bits are counted as they cross the wire: the packed TopK message (k int64
indices + k float64 values) or d float64 values for a dense message.

Writes ef21_<dataset>_iterations.png and ef21_<dataset>_bits.png (‖∇f(x_t)‖², log scale, against
iterations and against bits sent per worker) and ef21_<dataset>.json (constants, stepsizes, final
‖∇f‖² per method and whether the expected orderings held: EF21 beats EF; the L_AM stepsize beats
the L_QM one). Run with ``feedbackkit experiment ef21`` or
``python -m feedbackkit.benchmarks.experiment_ef21``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from feedbackkit.compress import ef21_stepsize, xi
from feedbackkit.plugins.error_feedback_reloaded import Trajectory, simulate

DATASETS = ("breast_cancer", "digits")
LAMBDA = 0.1
DEFAULT_OUT = Path("benchmarks/results")
DEFAULT_WORKERS = 10
DEFAULT_KS = (1, 6)
DEFAULT_ITERATIONS = 2000

#: method key -> plot label
LABELS = {
    "gd": "GD (dense, γ = 1/L)",
    "ef14": "EF (EF14), γ from L_QM",
    "ef21": "EF21, γ from L_QM",
    "ef21w": "EF21-W, γ from L_AM",
}


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(A [N, d] standardised features, b [N] labels in {−1, +1}) of a scikit-learn bundled data set."""
    from sklearn.datasets import load_breast_cancer, load_digits  # type: ignore[import-untyped]

    if name == "breast_cancer":
        features, labels = load_breast_cancer(return_X_y=True)
        b = np.where(labels == 1, 1.0, -1.0)
    elif name == "digits":
        features, labels = load_digits(return_X_y=True)
        b = np.where(labels % 2 == 0, 1.0, -1.0)
    else:
        raise ValueError(f"experiment ef21: 'dataset' must be one of {', '.join(DATASETS)}; got {name!r}")
    features = np.asarray(features, dtype=np.float64)
    std = features.std(axis=0)
    A = (features - features.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return A, b


@dataclass
class Problem:
    """f_i of n workers, the rows zero-padded to a common length (zero rows add nothing to a gradient)."""

    A: torch.Tensor  #: [n, m_max, d]
    b: torch.Tensor  #: [n, m_max], 0 on padding
    counts: torch.Tensor  #: [n] m_i
    lam: float

    @classmethod
    def split(cls, A: np.ndarray, b: np.ndarray, workers: int, lam: float = LAMBDA) -> Problem:
        """Sorts the rows by norm (stable) and gives worker i the i-th of n contiguous blocks."""
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= len(b):
            raise ValueError(f"experiment ef21: 'workers' must be an int in [1, {len(b)}]; got {workers!r}")
        order = np.argsort(np.linalg.norm(A, axis=1), kind="stable")
        blocks = np.array_split(order, workers)
        m_max = max(len(block) for block in blocks)
        padded_A = np.zeros((workers, m_max, A.shape[1]))
        padded_b = np.zeros((workers, m_max))
        for i, block in enumerate(blocks):
            padded_A[i, : len(block)] = A[block]
            padded_b[i, : len(block)] = b[block]
        counts = torch.tensor([len(block) for block in blocks], dtype=torch.float64)
        return cls(torch.from_numpy(padded_A), torch.from_numpy(padded_b), counts, lam)

    @property
    def workers(self) -> int:
        return self.A.shape[0]

    @property
    def dim(self) -> int:
        return self.A.shape[2]

    def gradients(self, x: torch.Tensor) -> list[torch.Tensor]:
        """∇f_i(x) = −(1/m_i) Σ_j b_j σ(−b_j a_jᵀx) a_j + λ·2x/(1 + x²)², for every worker."""
        margins = self.b * torch.einsum("nmd,d->nm", self.A, x)
        weights = self.b * torch.sigmoid(-margins) / self.counts[:, None]
        logistic = -torch.einsum("nmd,nm->nd", self.A, weights)
        regulariser = self.lam * 2.0 * x / (1.0 + x * x) ** 2
        return list((logistic + regulariser).unbind(0))

    def smoothness(self) -> tuple[list[float], float]:
        """(L_i, L): L_i = λ_max(A_iᵀA_i)/(4 m_i) + 2λ; L = λ_max((1/n) Σ_i A_iᵀA_i/(4 m_i)) + 2λ."""
        grams = torch.einsum("nmd,nme->nde", self.A, self.A) / (4.0 * self.counts[:, None, None])
        L_i = (torch.linalg.eigvalsh(grams)[:, -1] + 2.0 * self.lam).tolist()
        L = float(torch.linalg.eigvalsh(grams.mean(0))[-1]) + 2.0 * self.lam
        return L_i, L


def _means(L_i: Sequence[float]) -> tuple[float, float]:
    """(L_AM, L_QM) = (mean L_i, √(mean L_i²))."""
    return sum(L_i) / len(L_i), math.sqrt(sum(v * v for v in L_i) / len(L_i))


def _check_ks(ks: Sequence[int], dim: int) -> list[int]:
    checked = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dim:
            raise ValueError(f"experiment ef21: every k must be an int in [1, {dim}] (d = {dim}); got {k!r}")
        checked.append(k)
    if not checked:
        raise ValueError("experiment ef21: give at least one k")
    return checked


def _plot(path: Path, curves: dict[int, dict[str, Trajectory]], dataset: str, against: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4.2), squeeze=False)
    for ax, (k, runs) in zip(axes[0], curves.items(), strict=True):
        for key, run in runs.items():
            values = np.maximum(np.asarray(run.grad_norm_sq), 1e-300)
            if against == "iterations":
                ax.plot(np.arange(len(values)), values, label=LABELS[key])
            else:  # bits: from the first message on, so the log axis has no zero
                ax.plot(np.asarray(run.bits_per_worker[1:]), values[1:], label=LABELS[key])
        ax.set_yscale("log")
        # GD reaches round-off within the run; keep the compressed methods' range readable
        compressed = min(min(run.grad_norm_sq) for key, run in runs.items() if key != "gd")
        ax.set_ylim(bottom=max(compressed / 1e3, 1e-300))
        if against == "bits":
            ax.set_xscale("log")
        ax.set_xlabel("iteration" if against == "iterations" else "bits sent per worker")
        ax.set_ylabel("‖∇f(x_t)‖²")
        ax.set_title(f"{dataset}, Top-{k}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _run_all(
    problem: Problem,
    x0: torch.Tensor,
    L: float,
    plans: Sequence[tuple[int, str, float, dict[str, Any]]],
    iterations: int,
    progress: bool,
) -> tuple[Trajectory, dict[tuple[int, str], Trajectory]]:
    """GD once, then every (k, method, stepsize, options) of `plans`, with a rich progress bar."""
    runs: dict[tuple[int, str], Trajectory] = {}
    with _progress_bar(progress) as bar:

        def run(method: str, gamma: float, options: dict[str, Any], label: str) -> Trajectory:
            task = bar.add_task(label, total=iterations) if bar is not None else None
            tick: Callable[[], None] | None = None
            if bar is not None:

                def tick() -> None:
                    bar.advance(task)

            return simulate(
                method, problem.gradients, x0, stepsize=gamma, iterations=iterations, progress=tick, **options
            )

        gd = run("gd", 1.0 / L, {}, "GD")
        for k, method, gamma, options in plans:
            runs[(k, method)] = run(method, gamma, options, f"{LABELS[method]}, Top-{k}")

    return gd, runs


def run_experiment(
    *,
    dataset: str = "breast_cancer",
    workers: int = DEFAULT_WORKERS,
    ks: Sequence[int] = DEFAULT_KS,
    iterations: int = DEFAULT_ITERATIONS,
    out: str | Path | None = DEFAULT_OUT,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Runs GD, EF, EF21 (γ from L_QM) and EF21-W (γ from L_AM) for every k in `ks` and returns the
    summary (also written as JSON, with the plots, into `out` unless it is None)."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"experiment ef21: 'iterations' must be an int >= 1; got {iterations!r}")
    A, b = load_dataset(dataset)
    problem = Problem.split(A, b, workers)
    ks = _check_ks(ks, problem.dim)
    L_i, L = problem.smoothness()
    L_AM, L_QM = _means(L_i)
    x0 = torch.randn(problem.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))

    plans: list[tuple[int, str, float, dict[str, Any]]] = []  # (k, method, stepsize, options)
    stepsizes: dict[str, dict[str, float]] = {}
    for k in ks:
        alpha = k / problem.dim
        gamma_qm = ef21_stepsize(L, L_i, alpha, mean="quadratic")
        gamma_am = ef21_stepsize(L, L_i, alpha, mean="arithmetic")
        stepsizes[f"top{k}"] = {"alpha": alpha, "xi": xi(alpha), "gamma_QM": gamma_qm, "gamma_AM": gamma_am}
        plans += [
            (k, "ef14", gamma_qm, {"k": k}),
            (k, "ef21", gamma_qm, {"k": k}),
            (k, "ef21w", gamma_am, {"k": k, "smoothness": L_i}),
        ]

    runs: dict[tuple[int, str], Trajectory] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # d ≤ 64: more threads only add synchronisation to every tiny op
    try:
        gd, runs = _run_all(problem, x0, L, plans, iterations, progress)
    finally:
        torch.set_num_threads(threads)

    curves = {k: {"gd": gd, **{m: runs[(k, m)] for m in ("ef14", "ef21", "ef21w")}} for k in ks}
    final = {f"top{k}": {m: t.grad_norm_sq[-1] for m, t in c.items()} for k, c in curves.items()}
    orderings = {
        f"top{k}": {
            "ef21_beats_ef": final[f"top{k}"]["ef21"] < final[f"top{k}"]["ef14"],
            "am_stepsize_beats_qm": final[f"top{k}"]["ef21w"] < final[f"top{k}"]["ef21"],
        }
        for k in ks
    }
    summary: dict[str, Any] = {
        "dataset": dataset,
        "samples": int(problem.counts.sum()),
        "dim": problem.dim,
        "workers": problem.workers,
        "samples_per_worker": [int(c) for c in problem.counts],
        "lambda": problem.lam,
        "iterations": iterations,
        "ks": ks,
        "x0_seed": seed,
        "L_i": L_i,
        "L": L,
        "L_AM": L_AM,
        "L_QM": L_QM,
        "L_QM_over_L_AM": L_QM / L_AM,
        "gamma_gd": 1.0 / L,
        "stepsizes": stepsizes,
        "initial_grad_norm_sq": gd.grad_norm_sq[0],
        "final_grad_norm_sq": final,
        "bits_per_worker": {
            f"top{k}": {m: t.bits_per_worker[-1] for m, t in c.items()} for k, c in curves.items()
        },
        "orderings": orderings,
        # (worse − better)/worse of the final ‖∇f‖²: > 0 where the expected ordering held
        "relative_margins": {
            key: {
                "ef21_vs_ef": (v["ef14"] - v["ef21"]) / v["ef14"],
                "am_stepsize_vs_qm": (v["ef21"] - v["ef21w"]) / v["ef21"],
            }
            for key, v in final.items()
        },
        "orderings_hold": all(all(v.values()) for v in orderings.values()),
    }
    if out is not None:
        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
        files = {
            "iterations": directory / f"ef21_{dataset}_iterations.png",
            "bits": directory / f"ef21_{dataset}_bits.png",
            "json": directory / f"ef21_{dataset}.json",
        }
        _plot(files["iterations"], curves, dataset, "iterations")
        _plot(files["bits"], curves, dataset, "bits")
        summary["files"] = {key: str(path) for key, path in files.items()}
        files["json"].write_text(json.dumps(summary, indent=2) + "\n")
    return summary


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The experiment's command-line options (shared with ``feedbackkit experiment ef21``)."""
    parser.add_argument("--dataset", choices=DATASETS, default="breast_cancer")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="n (default %(default)s)")
    parser.add_argument(
        "--k",
        type=int,
        action="append",
        dest="ks",
        metavar="K",
        help=f"Top-K; repeat for several (default {' and '.join(map(str, DEFAULT_KS))})",
    )
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="T (default %(default)s)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of x⁰")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Runs :func:`run_experiment` with parsed options; an option that is None takes its default."""

    def given(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        return default if value is None else value

    return run_experiment(
        dataset=given("dataset", "breast_cancer"),
        workers=given("workers", DEFAULT_WORKERS),
        ks=given("ks", DEFAULT_KS),
        iterations=given("iterations", DEFAULT_ITERATIONS),
        out=given("out", DEFAULT_OUT),
        progress=not given("no_progress", False),
        seed=given("seed", 0),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    summary = run_from_args(parser.parse_args(argv))
    print(json.dumps({k: summary[k] for k in ("final_grad_norm_sq", "orderings", "files")}, indent=2))
    if not summary["orderings_hold"]:
        print("warning: not every expected ordering held in this run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
