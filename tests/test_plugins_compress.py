"""Built-in compressor plugins of paper 35 (Error Feedback Reloaded): ef14, ef21, ef21w, and the
EF21 convergence experiment (benchmarks/experiment_ef21.py, `feedbackkit experiment ef21`)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from conftest import run_cli

from feedbackkit import registry
from feedbackkit.benchmarks import experiment_ef21  # imports scikit-learn only to load data
from feedbackkit.compress import ef21_stepsize, xi
from feedbackkit.plugins import error_feedback_reloaded as efr

F64 = torch.float64
needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn (feedbackkit[test])"
)


@pytest.fixture(scope="module")
def problem() -> experiment_ef21.Problem:
    pytest.importorskip("sklearn")
    A, b = experiment_ef21.load_dataset("breast_cancer")
    return experiment_ef21.Problem.split(A, b, 6)


@pytest.fixture(autouse=True)
def _one_thread():
    # the tensors are tiny: one thread avoids OpenMP synchronisation on every op
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _x0(dim: int) -> torch.Tensor:
    return torch.randn(dim, dtype=F64, generator=torch.Generator().manual_seed(0))


def _topk(x: torch.Tensor, k: int) -> torch.Tensor:
    """Dense TopK(x): the k largest magnitudes kept (ties to the lowest index), the rest zeroed."""
    keep = torch.sort(x.abs(), descending=True, stable=True).indices[:k]
    out = torch.zeros_like(x)
    out[keep] = x[keep]
    return out


# ---- registry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"), [("ef14", "EF14Compressor"), ("ef21", "EF21Compressor"), ("ef21w", "EF21WCompressor")]
)
def test_registry_discovers_the_compressors(name, cls):
    (entry,) = registry.entries()[name]
    assert entry.builtin and entry.target == f"feedbackkit.plugins.error_feedback_reloaded:{name}"
    method = registry.get(name)
    assert method.kind == "compressor" and method.available()
    assert method.paper.arxiv == "2402.10774" and method.paper.year == 2024
    assert "Error Feedback Reloaded" in method.paper.title
    assert method.extras["simulate"] is efr.simulate
    options = {"k": 2, "lr": 0.1} if name == "ef14" else {"k": 2}
    if name == "ef21w":
        options["smoothness"] = [1.0, 3.0]
    compressor = method(**options)
    assert type(compressor).__name__ == cls
    assert callable(compressor.compress) and callable(compressor.decompress)
    listed = {r.entry.name: r.status for r in registry.records(kind="compressor")}
    assert listed[name] == "available"


# ---- update rules against hand-written references --------------------------------------------


def test_ef21_matches_reference_bitwise():
    """c_i = TopK(∇f_i − g_i); g_i += c_i; g += (1/n)·c_i in rank order (the kernels round like this)."""
    gen = torch.Generator().manual_seed(1)
    n, d, k = 3, 17, 4
    workers = [registry.get("ef21")(k=k, rank=i, workers=n) for i in range(n)]
    receiver = registry.get("ef21")(k=k, rank=1, workers=n)  # another rank holding the same g
    ref_gi = [torch.zeros(d, dtype=F64) for _ in range(n)]
    ref_g = torch.zeros(d, dtype=F64)
    for step in range(5):
        grads = [torch.randn(d, dtype=F64, generator=gen) for _ in range(n)]
        payloads = [w.compress(grad) for w, grad in zip(workers, grads, strict=True)]
        g = workers[0].decompress(payloads)
        assert torch.equal(receiver.decompress(payloads), g)  # replicated g: the same bits on every rank
        for i in range(n):
            c = grads[i].clone() if step == 0 else _topk(grads[i] - ref_gi[i], k)  # dense first step
            ref_gi[i] = ref_gi[i] + c
            ref_g = ref_g + c * (1.0 / n)
            assert torch.equal(workers[i].g_i, ref_gi[i])
            if step == 0:
                assert payloads[i].indices is None and payloads[i].bits == d * 64
            else:
                assert payloads[i].indices.numel() == k and payloads[i].bits == 16 * k * 8
        torch.testing.assert_close(g, ref_g, rtol=0, atol=0)
        torch.testing.assert_close(g, torch.stack(ref_gi).mean(0), rtol=1e-14, atol=1e-14)


def test_ef21_zero_init_sends_topk_from_the_start():
    c = efr.ef21_compressor(k=2, init="zero")
    grad = torch.tensor([0.5, -3.0, 1.0, 2.0], dtype=F64)
    payload = c.compress(grad)
    assert sorted(payload.indices.tolist()) == [1, 3]
    torch.testing.assert_close(c.g_i, torch.tensor([0.0, -3.0, 0.0, 2.0], dtype=F64))
    torch.testing.assert_close(c.decompress([payload]), c.g_i)


def test_ef14_matches_reference_and_virtual_iterate_follows_gd():
    """t = e + γ∇f_i; v = TopK(t); e = t − v; x ← x − mean v, so x − mean e takes exact GD steps."""
    gen = torch.Generator().manual_seed(2)
    n, d, k, lr = 4, 11, 2, 0.3
    workers = [registry.get("ef14")(k=k, lr=lr, rank=i, workers=n) for i in range(n)]
    ref_e = [torch.zeros(d, dtype=F64) for _ in range(n)]
    x = torch.zeros(d, dtype=F64)
    virtual = x.clone()
    for _ in range(6):
        grads = [torch.randn(d, dtype=F64, generator=gen) for _ in range(n)]
        update = workers[0].decompress([w.compress(g) for w, g in zip(workers, grads, strict=True)])
        for i in range(n):
            t = ref_e[i] + lr * grads[i]
            ref_e[i] = t - _topk(t, k)
            torch.testing.assert_close(workers[i].error, ref_e[i], rtol=0, atol=0)
        x = x - update
        virtual = virtual - lr * torch.stack(grads).mean(0)
        torch.testing.assert_close(
            x - torch.stack([w.error for w in workers]).mean(0), virtual, rtol=1e-13, atol=1e-13
        )


def test_ef21w_state_is_ef21_state_divided_by_n_w():
    """EF21-W with TopK: g_i = h_i/(n w_i) for EF21's h_i, and g = Σ w_i g_i = mean h_i."""
    gen = torch.Generator().manual_seed(3)
    L = [1.0, 2.0, 7.0]
    n, d, k = 3, 9, 2
    w = [v / sum(L) for v in L]
    plain = [efr.ef21_compressor(k=k, rank=i, workers=n) for i in range(n)]
    weighted = [efr.ef21w_compressor(k=k, rank=i, smoothness=L) for i in range(n)]
    for _ in range(4):
        grads = [torch.randn(d, dtype=F64, generator=gen) for _ in range(n)]
        g = plain[0].decompress([c.compress(x) for c, x in zip(plain, grads, strict=True)])
        gw = weighted[0].decompress([c.compress(x) for c, x in zip(weighted, grads, strict=True)])
        torch.testing.assert_close(gw, g, rtol=1e-13, atol=1e-13)
        for i in range(n):
            torch.testing.assert_close(weighted[i].g_i * (n * w[i]), plain[i].g_i, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(gw, sum(w[i] * weighted[i].g_i for i in range(n)), rtol=1e-13, atol=1e-13)


# ---- EF21 vs EF21-W iterates -----------------------------------------------------------------


def test_ef21w_iterates_equal_ef21_under_topk(problem):
    """Not bitwise: EF21-W compresses ∇f_i/(n w_i) − g_i, and the division by n w_i and the weighted
    sum Σ w_i c_i round differently from EF21's ∇f_i − h_i and mean_i c_i, so the iterates agree
    only to round-off (≈1e-16 relative per step, slowly accumulating). TopK picks the same
    coordinates as long as no two candidates are within round-off of each other, which holds for
    this data; 1e-12 relative over 300 iterations is far above round-off and far below any real
    difference (the natural-compression test below sees ≈1e-4)."""
    L_i, L = problem.smoothness()
    gamma = ef21_stepsize(L, L_i, 2 / problem.dim, mean="arithmetic")
    x0 = _x0(problem.dim)
    a = efr.simulate("ef21", problem.gradients, x0, stepsize=gamma, iterations=300, keep_iterates=True, k=2)
    b = efr.simulate(
        "ef21w",
        problem.gradients,
        x0,
        stepsize=gamma,
        iterations=300,
        keep_iterates=True,
        k=2,
        smoothness=L_i,
    )
    assert max(L_i) / min(L_i) > 3  # the weights really differ
    assert a.iterates is not None and b.iterates is not None and len(a.iterates) == 301
    worst = max(
        float((u - v).abs().max() / u.abs().max()) for u, v in zip(a.iterates, b.iterates, strict=True)
    )
    assert worst < 1e-12
    assert a.bits_per_worker == b.bits_per_worker
    moved = float((a.iterates[-1] - a.iterates[0]).abs().max())
    assert moved > 1e-2  # the runs went somewhere, so agreeing means something


def test_ef21w_differs_from_ef21_with_natural_compression(problem):
    """Natural compression is not positively homogeneous (it rounds to powers of two), so scaling
    the input by 1/(n w_i) changes which values come out: with the same random draws the iterates
    differ, while both methods still decrease ‖∇f‖²."""
    L_i, L = problem.smoothness()
    alpha = efr.contraction("natural", problem.dim)
    assert alpha == pytest.approx(8 / 9)
    gamma = ef21_stepsize(L, L_i, alpha, mean="arithmetic")
    x0 = _x0(problem.dim)
    common = {"stepsize": gamma, "iterations": 100, "keep_iterates": True, "compressor": "natural", "seed": 5}
    a = efr.simulate("ef21", problem.gradients, x0, **common)
    b = efr.simulate("ef21w", problem.gradients, x0, smoothness=L_i, **common)
    gap = max(float((u - v).abs().max() / u.abs().max()) for u, v in zip(a.iterates, b.iterates, strict=True))
    assert gap > 1e-6
    for run in (a, b):
        assert run.grad_norm_sq[-1] < 0.5 * run.grad_norm_sq[0]
    again = efr.simulate("ef21", problem.gradients, x0, **common)  # the seed makes it reproducible
    assert all(torch.equal(u, v) for u, v in zip(a.iterates, again.iterates, strict=True))


# ---- constants -------------------------------------------------------------------------------


def test_closed_form_constants_of_the_spec():
    L_i = [1.0, 1.0, 1.0, 100.0]
    mean_am, mean_qm = experiment_ef21._means(L_i)
    assert mean_am == pytest.approx(25.75, abs=1e-12)
    assert mean_qm == pytest.approx(50.0075, abs=1e-4)
    assert mean_qm == pytest.approx(math.sqrt(10003 / 4), rel=1e-15)
    assert xi(0.1) == pytest.approx(18.4868, abs=1e-4)
    assert ef21_stepsize(1.0, L_i, 0.1, mean="arithmetic") == pytest.approx(
        1 / (1 + 25.75 * 18.48683), rel=1e-6
    )
    assert ef21_stepsize(1.0, L_i, 0.1, mean="quadratic") == pytest.approx(
        1 / (1 + 50.0075 * 18.48683), rel=1e-6
    )
    assert efr.contraction("topk", 30, 3) == pytest.approx(0.1)
    assert efr.ef21w_compressor(k=1, smoothness=L_i).w == pytest.approx(
        [1 / 103, 1 / 103, 1 / 103, 100 / 103]
    )


def _loss(problem: experiment_ef21.Problem, i: int, x: torch.Tensor) -> torch.Tensor:
    m = int(problem.counts[i])
    A, b = problem.A[i, :m], problem.b[i, :m]
    return torch.nn.functional.softplus(-b * (A @ x)).mean() + problem.lam * (x * x / (1 + x * x)).sum()


def test_gradients_and_smoothness_constants_are_exact(problem):
    """∇f_i against autograd; L_i = λ_max(A_iᵀA_i)/(4 m_i) + 2λ is the Hessian's top eigenvalue at
    x = 0 (where σ' = 1/4 and the regulariser's curvature is 2) and bounds it elsewhere."""
    L_i, L = problem.smoothness()
    x = _x0(problem.dim).requires_grad_(True)
    for i, grad in enumerate(problem.gradients(x.detach())):
        (auto,) = torch.autograd.grad(_loss(problem, i, x), x)
        torch.testing.assert_close(grad, auto, rtol=1e-12, atol=1e-14)
    zero = torch.zeros(problem.dim, dtype=F64)
    for i in (0, problem.workers - 1):
        at_zero = torch.autograd.functional.hessian(lambda v, i=i: _loss(problem, i, v), zero)
        assert float(torch.linalg.eigvalsh(at_zero)[-1]) == pytest.approx(L_i[i], rel=1e-10)
        elsewhere = torch.autograd.functional.hessian(
            lambda v, i=i: _loss(problem, i, v), 0.3 * _x0(problem.dim)
        )
        assert float(torch.linalg.eigvalsh(elsewhere).abs().max()) <= L_i[i]
    f = lambda v: sum(_loss(problem, i, v) for i in range(problem.workers)) / problem.workers  # noqa: E731
    assert float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, zero))[-1]) == pytest.approx(
        L, rel=1e-10
    )
    assert sum(L_i) / len(L_i) + 1e-12 >= L  # L ≤ L_AM
    assert max(L_i) > 4 * min(L_i)  # rows sorted by norm before the split: heterogeneous


# ---- natural compression ---------------------------------------------------------------------


def test_natural_compression_is_unbiased_with_bounded_variance():
    x = torch.tensor([0.3, -1.7, 5.0, 0.0, 1e-3, -0.75, 1.0, 3.0], dtype=F64)
    gen = torch.Generator().manual_seed(0)
    draws = efr.natural_compression(x.expand(40000, -1), gen)  # 40000 independent draws of N(x)
    nonzero = draws[:, x != 0]
    # every draw is sign(x)·2^a or sign(x)·2^(a+1) around x
    assert torch.equal(torch.sign(draws), torch.sign(x).expand_as(draws))
    exponents = torch.log2(nonzero.abs())
    assert torch.equal(exponents, exponents.round())
    assert bool(((nonzero.abs() >= x[x != 0].abs() / 2) & (nonzero.abs() <= 2 * x[x != 0].abs())).all())
    assert bool((draws[:, 3] == 0).all()) and bool((draws[:, 6] == 1.0).all())
    assert set(draws[:, 2].unique().tolist()) == {4.0, 8.0}
    # unbiased: the Monte Carlo mean is within 5 standard errors of x
    standard_error = draws.std(0) / math.sqrt(draws.shape[0])
    assert bool(((draws.mean(0) - x).abs() <= 5 * standard_error + 1e-15).all())
    # per entry the variance is 2^(2a)·p(1 − p) with p = |x|/2^a − 1: |x| = 0.3 = 2^-2·1.2 → 0.0625·0.2·0.8
    assert float(draws[:, 0].var()) == pytest.approx(2.0**-4 * 0.2 * 0.8, rel=0.05)
    # bounded: E‖N(x) − x‖² ≤ ω‖x‖² with ω = 1/8
    mse = float((draws - x).square().sum(1).mean())
    assert 0 < mse <= efr.NATURAL_OMEGA * float(x.square().sum())


def test_natural_compression_is_not_positively_homogeneous():
    x = torch.tensor([0.3, -1.7, 5.0, 0.9], dtype=F64)
    n1 = efr.natural_compression(3 * x, torch.Generator().manual_seed(4))
    n2 = 3 * efr.natural_compression(x, torch.Generator().manual_seed(4))
    assert not torch.equal(n1, n2)
    assert torch.equal(
        efr.natural_compression(4 * x, torch.Generator().manual_seed(4)),
        4 * efr.natural_compression(x, torch.Generator().manual_seed(4)),
    )  # powers of two commute with it


# ---- the experiment --------------------------------------------------------------------------


@needs_sklearn
def test_short_experiment_orderings(tmp_path):
    summary = experiment_ef21.run_experiment(
        dataset="breast_cancer", workers=10, ks=(1, 6), iterations=120, out=tmp_path, progress=False
    )
    assert summary["L_QM"] > 1.3 * summary["L_AM"]  # heterogeneous split
    assert summary["L_AM"] == pytest.approx(sum(summary["L_i"]) / 10)
    for key in ("top1", "top6"):
        final = summary["final_grad_norm_sq"][key]
        assert summary["orderings"][key] == {"ef21_beats_ef": True, "am_stepsize_beats_qm": True}
        assert final["ef21"] < final["ef14"] and final["ef21w"] < final["ef21"]
        assert final["ef21w"] < summary["initial_grad_norm_sq"]
        steps = summary["stepsizes"][key]
        assert steps["gamma_AM"] > steps["gamma_QM"]
    assert summary["orderings_hold"]
    written = json.loads((tmp_path / "ef21_breast_cancer.json").read_text())
    assert written["final_grad_norm_sq"] == summary["final_grad_norm_sq"]
    for name in ("ef21_breast_cancer_iterations.png", "ef21_breast_cancer_bits.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_sklearn
def test_cli_experiment_writes_plots_and_json(tmp_path):
    out = tmp_path / "results"
    result = run_cli(
        "experiment", "ef21", "--dataset", "digits", "--workers", "4", "--k", "2", "--k", "8",
        "--iterations", "20", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "wrote" in result.stdout
    summary = json.loads((out / "ef21_digits.json").read_text())
    assert summary["workers"] == 4 and summary["ks"] == [2, 8] and summary["iterations"] == 20
    assert set(summary["final_grad_norm_sq"]) == {"top2", "top8"}
    assert len(summary["L_i"]) == 4 and summary["dim"] == 64
    assert (out / "ef21_digits_iterations.png").stat().st_size > 0
    assert (out / "ef21_digits_bits.png").stat().st_size > 0


@needs_sklearn
def test_cli_experiment_rejects_bad_options(tmp_path, capsys):
    from feedbackkit.cli import main

    argv = ["experiment", "ef21", "--iterations", "2", "--out", str(tmp_path), "--no-progress"]
    assert main([*argv, "--k", "0"]) == 2
    assert "every k must be an int in [1, 30]" in capsys.readouterr().out
    assert main([*argv, "--workers", "0"]) == 2
    assert "'workers' must be an int in [1, 569]" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit):
        main([*argv, "--dataset", "iris"])


# ---- bad options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "error", "message"),
    [
        ("ef21", {"k": 0}, ValueError, "'k' must be >= 1"),
        ("ef21", {"k": 1.5}, TypeError, "'k' must be an int"),
        ("ef21", {"k": True}, TypeError, "'k' must be an int"),
        ("ef21", {"k": 1, "compressor": "randk"}, ValueError, "'compressor' must be one of"),
        ("ef21", {"k": 1, "init": "random"}, ValueError, "'init' must be one of"),
        ("ef21", {"k": 1, "rank": 3, "workers": 3}, ValueError, "'rank' must be < workers"),
        ("ef21", {"compressor": "natural", "k": 3}, ValueError, "'k' applies to compressor='topk' only"),
        ("ef14", {"k": 1, "lr": -0.1}, ValueError, "'lr' must be a finite number > 0"),
        ("ef14", {"k": 1, "lr": math.nan}, ValueError, "'lr' must be a finite number > 0"),
        ("ef21w", {"k": 1}, ValueError, "exactly one of 'weights'"),
        ("ef21w", {"k": 1, "weights": [0.5, 0.5], "smoothness": [1, 1]}, ValueError, "exactly one of"),
        ("ef21w", {"k": 1, "weights": [0.5, 0.6]}, ValueError, "'weights' must sum to 1"),
        ("ef21w", {"k": 1, "weights": [1.5, -0.5]}, ValueError, "must be a finite number > 0"),
        ("ef21w", {"k": 1, "smoothness": [1.0, 0.0]}, ValueError, "must be a finite number > 0"),
        ("ef21w", {"k": 1, "smoothness": []}, ValueError, "non-empty sequence"),
        ("ef21w", {"k": 1, "smoothness": [1.0, 2.0], "rank": 2}, ValueError, "'rank' must be < workers"),
    ],
)
def test_bad_options_raise_clear_errors(name, options, error, message):
    with pytest.raises(error, match=message):
        registry.get(name)(**options)


@needs_sklearn
def test_bad_use_raises_clear_errors():
    c = efr.ef21_compressor(k=2, workers=2)
    with pytest.raises(ValueError, match="'k' = 2 exceeds the tensor's 1 elements"):
        efr.ef21_compressor(k=2).compress(torch.ones(1, dtype=F64))
    with pytest.raises(TypeError, match="floating-point"):
        c.compress(torch.ones(3, dtype=torch.int64))
    first = c.compress(torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="does not match the state g_i"):
        c.compress(torch.ones(5, dtype=F64))
    with pytest.raises(ValueError, match="does not match the state g_i"):
        c.compress(torch.ones(4, dtype=torch.float32))
    other = efr.ef21_compressor(k=2, rank=1, workers=2).compress(torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="expects 2 payloads"):
        c.decompress([first])
    with pytest.raises(ValueError, match="rank order"):
        c.decompress([other, first])
    with pytest.raises(TypeError, match="sequence of Payload"):
        c.decompress(first)
    c.decompress([first, other])
    wrong = efr.ef21_compressor(k=2, rank=1, workers=2).compress(torch.ones(6, dtype=F64))
    with pytest.raises(ValueError, match="disagree on shape"):
        c.decompress([first, wrong])
    with pytest.raises(ValueError, match="'method' must be one of"):
        efr.simulate("sgd", lambda x: [x], torch.zeros(2), stepsize=0.1, iterations=1)
    with pytest.raises(ValueError, match="'stepsize' must be a finite number > 0"):
        efr.simulate("ef21", lambda x: [x], torch.zeros(2), stepsize=0.0, iterations=1, k=1)
    with pytest.raises(ValueError, match="3 weights but there are 1 workers"):
        efr.simulate(
            "ef21w", lambda x: [x], torch.zeros(2), stepsize=0.1, iterations=1, k=1, weights=[0.2, 0.3, 0.5]
        )
    with pytest.raises(ValueError, match="'dataset' must be one of"):
        experiment_ef21.run_experiment(dataset="iris", out=None, progress=False)
    with pytest.raises(ValueError, match="every k must be an int in"):
        experiment_ef21.run_experiment(ks=(31,), iterations=1, out=None, progress=False)
