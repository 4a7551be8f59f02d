"""sequence_logprob: float64 reference, the "never worse than torch at the same precision"
criterion, gradients (log-prob, entropy, lse; per-token upstream), top-K labels, torch.library
conformance, torch.compile, and errors for bad input."""

from __future__ import annotations

import pytest
import torch

import feedbackkit
from feedbackkit.reference.logprob import sequence_logprob as reference

TOL = {torch.float32: 1e-5, torch.float64: 1e-10, torch.bfloat16: 1e-5, torch.float16: 1e-5}


def make_case(n: int, vocab: int, dtype: torch.dtype, ignored: float, k: int | None = None, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, vocab, generator=generator) * 4).to(dtype)
    shape = (n,) if k is None else (n, k)
    labels = torch.randint(0, vocab, shape, generator=generator)
    drop = torch.rand(shape, generator=generator) < ignored
    return logits, labels.masked_fill(drop, -100)


def assert_never_worse(ours: torch.Tensor, lowprec: torch.Tensor, exact: torch.Tensor, tol: float) -> None:
    """|ours − exact| ≤ |torch at the input precision − exact| + tol, element by element."""
    err = (ours.double() - exact).abs()
    allowed = (lowprec.double() - exact).abs() + tol
    worst = (err - allowed).max().item() if err.numel() else 0.0
    assert worst <= 0, f"exceeds torch's own error by {worst:.3g}"


def grads(logits: torch.Tensor, fn, upstream: list[torch.Tensor]) -> torch.Tensor:
    x = logits.detach().clone().requires_grad_(True)
    outs = fn(x)
    torch.autograd.backward(outs, upstream)
    return x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize(("n", "vocab"), [(47, 31), (3 * 9, 32000), (3, 128256)])
@pytest.mark.parametrize("ignored", [0.0, 0.2, 1.0])
def test_forward_never_worse_than_torch(dtype, n, vocab, ignored):
    logits, labels = make_case(n, vocab, dtype, ignored)
    logp, entropy, lse = feedbackkit.sequence_logprob(logits, labels, return_entropy=True, return_lse=True)
    assert (
        logp.dtype
        == entropy.dtype
        == lse.dtype
        == (torch.float64 if dtype == torch.float64 else torch.float32)
    )
    exact = reference(logits, labels)
    lowprec = reference(logits, labels, dtype=dtype if dtype != torch.float64 else torch.float32)
    for ours, low, ex in zip((logp, entropy, lse), lowprec, exact, strict=True):
        assert_never_worse(
            ours, low, ex, TOL[dtype] * max(1.0, ex.abs().max().item() if ex.numel() else 1.0) / 10
        )
    assert (logp <= 0).all()
    assert (logp[labels == -100] == 0).all()


@pytest.mark.parametrize("temperature", [0.3, 1.7])
def test_temperature_is_applied_in_fp32(temperature):
    logits, labels = make_case(64, 1000, torch.bfloat16, 0.2, seed=3)
    got = feedbackkit.sequence_logprob(logits, labels, temperature=temperature)
    exact = reference(logits, labels, temperature=temperature)[0]
    naive = reference((logits / temperature), labels, dtype=torch.float32)[0]  # bf16 division first
    assert_never_worse(got, naive, exact, 1e-5)
    assert (got.double() - exact).abs().max().item() < 2e-5


def test_topk_labels_match_reference_and_duplicates():
    logits, labels = make_case(20, 50, torch.float32, 0.2, k=5, seed=4)
    labels[0, 1] = labels[0, 0]
    labels[3] = -100
    got = feedbackkit.sequence_logprob(logits, labels)
    assert got.shape == (20, 5)
    torch.testing.assert_close(got.double(), reference(logits, labels)[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("k", [None, 3])
def test_gradcheck_float64(k):
    logits, labels = make_case(6, 11, torch.float64, 0.25, k=k, seed=5)
    if k is None:
        labels[0] = labels[1] = -100 if labels[0] == 0 else labels[0]
    logits.requires_grad_(True)

    def op(x):
        return feedbackkit.sequence_logprob(x, labels, temperature=0.8, return_entropy=True, return_lse=True)

    assert torch.autograd.gradcheck(op, (logits,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_with_per_token_upstream_match_reference(dtype):
    logits, labels = make_case(33, 700, dtype, 0.2, seed=6)
    generator = torch.Generator().manual_seed(7)
    up = [torch.randn(33, generator=generator) for _ in range(3)]

    def ours(x):
        return feedbackkit.sequence_logprob(x, labels, temperature=1.3, return_entropy=True, return_lse=True)

    def exact(x):
        return reference(x, labels, temperature=1.3)

    got = grads(logits, ours, up)
    expected = grads(logits.double(), exact, [u.double() for u in up])
    low = grads(
        logits, lambda x: reference(x, labels, temperature=1.3, dtype=dtype), [u.to(dtype) for u in up]
    )
    assert got.dtype == dtype
    assert_never_worse(got, low, expected, 1e-5)
    ignored_rows = labels == -100
    assert (got[ignored_rows] == 0).all()


def test_sliced_logits_are_read_in_place():
    generator = torch.Generator().manual_seed(8)
    full = torch.randn(4, 9, 257, generator=generator)
    logits = full[:, :-1, :]  # the causal-LM shift: not viewable as [N, V]
    labels = torch.randint(0, 257, (4, 9), generator=generator)[:, 1:]
    got = feedbackkit.sequence_logprob(logits, labels, return_entropy=True)
    expected = reference(logits, labels)
    torch.testing.assert_close(got[0].double(), expected[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[1].double(), expected[1], rtol=0, atol=1e-5)
    transposed = full.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    torch.testing.assert_close(
        feedbackkit.sequence_logprob(transposed, torch.randint(0, 257, (4, 9))).shape, torch.Size([4, 9])
    )


def test_grad_of_entropy_alone():
    logits, labels = make_case(5, 13, torch.float64, 0.0, seed=9)
    logits.requires_grad_(True)
    _, entropy = feedbackkit.sequence_logprob(logits, labels, return_entropy=True)
    entropy.sum().backward()
    x = logits.detach().requires_grad_(True)
    p = torch.softmax(x, -1)
    (-(p * torch.log_softmax(x, -1)).sum()).backward()
    torch.testing.assert_close(logits.grad, x.grad)


def test_opcheck_and_backward_opcheck():
    logits, labels = make_case(4, 17, torch.float32, 0.25, seed=10)
    logits.requires_grad_(True)
    torch.library.opcheck(torch.ops.feedbackkit.sequence_logprob.default, (logits, labels, -100, 0.9))
    _, entropy, lse = torch.ops.feedbackkit.sequence_logprob(logits.detach(), labels, -100, 0.9)
    torch.library.opcheck(
        torch.ops.feedbackkit.sequence_logprob_backward.default,
        (torch.randn(4), torch.randn(4), None, logits.detach(), labels, entropy, lse, -100, 0.9),
    )


def test_torch_compile_fullgraph():
    logits, labels = make_case(6, 40, torch.float32, 0.2, seed=11)
    logits.requires_grad_(True)

    def loss_fn(x, y):
        logp, entropy = feedbackkit.sequence_logprob(x, y, temperature=0.9, return_entropy=True)
        return logp.sum() + 0.1 * entropy.sum()

    compiled = torch.compile(loss_fn, fullgraph=True)
    loss = compiled(logits, labels)
    (grad,) = torch.autograd.grad(loss, logits)
    expected_loss = loss_fn(logits, labels)
    (expected_grad,) = torch.autograd.grad(expected_loss, logits)
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.slow
def test_more_than_2_pow_31_logits_on_cpu():
    n, vocab = (1 << 15) + 3, 1 << 16  # N·V > 2^31: 4.3 GB of bf16
    logits = torch.zeros(n, vocab, dtype=torch.bfloat16)
    logits[-1, 12345] = 8.0
    labels = torch.zeros(n, dtype=torch.int64)
    labels[-1] = 12345
    logp = feedbackkit.sequence_logprob(logits, labels)
    exact_last = reference(logits[-1:], labels[-1:])[0]
    assert abs(logp[-1].item() - exact_last.item()) < 1e-5
    assert abs(logp[0].item() + 11.090354888959125) < 1e-5  # log(1 / 65536)


BAD = [
    (lambda: (torch.randn(3, 5), torch.tensor([0, 5, 1])), "must lie in \\[0, V=5\\)"),
    (lambda: (torch.randn(3, 5), torch.tensor([0, -2, 1])), "must lie in"),
    (lambda: (torch.randn(3, 5), torch.tensor([0.0, 1.0, 2.0])), "'labels' must have dtype"),
    (lambda: (torch.randint(0, 3, (3, 5)), torch.tensor([0, 1, 2])), "'logits' must have dtype"),
    (lambda: (torch.randn(3, 5), torch.tensor([0, 1])), "'labels' must have shape \\[3\\]"),
    (lambda: (torch.randn(3, 0), torch.tensor([0, 1, 2])), "V >= 1"),
    (lambda: (torch.randn(3, 5), torch.tensor([0, 1, 2], device="meta")), "is on meta"),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_input(make, message):
    logits, labels = make()
    with pytest.raises(ValueError, match=message):
        feedbackkit.sequence_logprob(logits, labels)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="'temperature' must be a finite number > 0"):
        feedbackkit.sequence_logprob(torch.randn(2, 3), torch.tensor([0, 1]), temperature=temperature)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("n", "vocab"), [(47, 31), (27, 32000), (3, 128256)])
def test_cuda_matches_reference(dtype, n, vocab):
    logits, labels = make_case(n, vocab, dtype, 0.2)
    up = [torch.randn(n) for _ in range(3)]
    out = feedbackkit.sequence_logprob(
        logits.cuda(), labels.cuda(), temperature=1.1, return_entropy=True, return_lse=True
    )
    exact = reference(logits, labels, temperature=1.1)
    low = reference(logits, labels, temperature=1.1, dtype=dtype)
    for ours, lo, ex in zip(out, low, exact, strict=True):
        assert_never_worse(ours.cpu(), lo, ex, 1e-4)

    def on_cuda(x):
        return feedbackkit.sequence_logprob(
            x.cuda(), labels.cuda(), temperature=1.1, return_entropy=True, return_lse=True
        )

    got = grads(logits, on_cuda, [u.cuda() for u in up])
    expected = grads(
        logits.double(), lambda x: reference(x, labels, temperature=1.1), [u.double() for u in up]
    )
    assert_never_worse(
        got.cpu(),
        grads(
            logits, lambda x: reference(x, labels, temperature=1.1, dtype=dtype), [u.to(dtype) for u in up]
        ),
        expected,
        1e-6,
    )


@pytest.mark.cuda
def test_cuda_gradcheck_opcheck_and_bad_labels():
    logits, labels = make_case(6, 300, torch.float64, 0.25, k=2, seed=12)
    logits, labels = logits.cuda().requires_grad_(True), labels.cuda()
    assert torch.autograd.gradcheck(
        lambda x: feedbackkit.sequence_logprob(x, labels, return_entropy=True, return_lse=True), (logits,)
    )
    torch.library.opcheck(torch.ops.feedbackkit.sequence_logprob.default, (logits, labels, -100, 1.0))
    bad = labels.clone()
    bad[2, 0] = 300
    assert torch.isnan(feedbackkit.sequence_logprob(logits.detach(), bad)[2, 0]).item()
    with pytest.raises(ValueError, match="must lie in"):
        feedbackkit.sequence_logprob(logits, bad, check=True)
