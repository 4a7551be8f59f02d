"""linear_logprob: equals sequence_logprob on the materialised logits (float64 reference), over
tiles, bias, ignored tokens and temperature; gradients for hidden, weight and bias; opcheck,
torch.compile; bad input."""

from __future__ import annotations

import pytest
import torch

import feedbackkit
from feedbackkit.reference.logprob import sequence_logprob as reference


def make_case(n, h, v, dtype, ignored=0.2, bias=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=generator).to(dtype)
    weight = (torch.randn(v, h, generator=generator) / h**0.5 * 3).to(dtype)
    b = torch.randn(v, generator=generator).to(dtype) if bias else None
    labels = torch.randint(0, v, (n,), generator=generator)
    labels[torch.rand(n, generator=generator) < ignored] = -100
    return hidden, weight, b, labels


def exact_outputs(hidden, weight, bias, labels, temperature=1.0):
    logits = hidden.double() @ weight.double().t()
    if bias is not None:
        logits = logits + bias.double()
    return reference(logits, labels, temperature=temperature)


@pytest.mark.parametrize(
    ("n", "h", "v", "tile"), [(47, 123, 31, None), (3 * 41, 64, 1000, 128), (9, 16, 32000, None)]
)
@pytest.mark.parametrize("ignored", [0.0, 0.2, 1.0])
def test_forward_matches_reference_float32(n, h, v, tile, ignored):
    hidden, weight, bias, labels = make_case(n, h, v, torch.float32, ignored)
    out = feedbackkit.linear_logprob(
        hidden,
        weight,
        labels,
        bias=bias,
        vocab_tile=tile,
        temperature=1.2,
        return_entropy=True,
        return_lse=True,
    )
    for ours, exact in zip(out, exact_outputs(hidden, weight, bias, labels, 1.2), strict=True):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours.double(), exact, rtol=1e-5, atol=2e-5)
    assert (out[0][labels == -100] == 0).all()


def test_bf16_never_worse_than_the_eager_bf16_path():
    hidden, weight, bias, labels = make_case(64, 96, 5000, torch.bfloat16, seed=1)
    ours = feedbackkit.linear_logprob(hidden, weight, labels, bias=bias, vocab_tile=512)
    exact = exact_outputs(hidden, weight, bias, labels)[0]
    eager = reference(torch.addmm(bias, hidden, weight.t()), labels, dtype=torch.float32)[0]
    excess = ((ours.double() - exact).abs() - (eager.double() - exact).abs() - 1e-5).max().item()
    assert excess <= 0


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_float64(bias):
    hidden, weight, b, labels = make_case(13, 7, 50, torch.float64, bias=bias, seed=2)
    inputs = [hidden.requires_grad_(True), weight.requires_grad_(True)] + (
        [b.requires_grad_(True)] if bias else []
    )

    def op(h, w, *rest):
        return feedbackkit.linear_logprob(
            h,
            w,
            labels,
            bias=rest[0] if rest else None,
            vocab_tile=16,
            temperature=0.7,
            return_entropy=True,
            return_lse=True,
        )

    assert torch.autograd.gradcheck(op, tuple(inputs))


def test_gradients_match_eager_with_per_token_upstream():
    hidden, weight, bias, labels = make_case(40, 32, 700, torch.float32, seed=3)
    generator = torch.Generator().manual_seed(4)
    up = [torch.randn(40, generator=generator) for _ in range(3)]

    def grads(fn, dtype):
        leaves = [x.detach().to(dtype).requires_grad_(True) for x in (hidden, weight, bias)]
        torch.autograd.backward(fn(*leaves), [u.to(dtype) for u in up])
        return [x.grad for x in leaves]

    ours = grads(
        lambda h, w, b: feedbackkit.linear_logprob(
            h, w, labels, bias=b, vocab_tile=128, return_entropy=True, return_lse=True
        ),
        torch.float32,
    )
    exact = grads(lambda h, w, b: reference(h @ w.t() + b, labels), torch.float64)
    for got, want in zip(ours, exact, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_frozen_head_skips_weight_gradient():
    hidden, weight, bias, labels = make_case(20, 16, 300, torch.float64, seed=9)
    h = hidden.clone().requires_grad_(True)
    feedbackkit.linear_logprob(h, weight, labels, bias=bias, vocab_tile=64).sum().backward()
    assert weight.grad is None and bias.grad is None
    h_ref = hidden.clone().requires_grad_(True)
    reference(h_ref @ weight.t() + bias, labels)[0].sum().backward()
    torch.testing.assert_close(h.grad, h_ref.grad)


def test_leading_dims_and_int32_labels():
    hidden, weight, _, labels = make_case(12, 8, 40, torch.float32, bias=False, seed=5)
    out = feedbackkit.linear_logprob(hidden.view(3, 4, 8), weight, labels.view(3, 4).int())
    assert out.shape == (3, 4)
    torch.testing.assert_close(out.reshape(-1), feedbackkit.linear_logprob(hidden, weight, labels))


def test_opcheck():
    hidden, weight, bias, labels = make_case(6, 5, 40, torch.float32, seed=6)
    args = (
        hidden.requires_grad_(True),
        weight.requires_grad_(True),
        labels,
        bias.requires_grad_(True),
        -100,
        1.0,
        16,
    )
    torch.library.opcheck(torch.ops.feedbackkit.linear_logprob.default, args)


def test_torch_compile_fullgraph():
    hidden, weight, bias, labels = make_case(10, 8, 60, torch.float32, seed=7)
    hidden.requires_grad_(True)

    def loss_fn(h):
        return feedbackkit.linear_logprob(h, weight, labels, bias=bias, vocab_tile=32).sum()

    compiled = torch.compile(loss_fn, fullgraph=True)
    loss = compiled(hidden)
    (grad,) = torch.autograd.grad(loss, hidden)
    expected = loss_fn(hidden)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, torch.autograd.grad(expected, hidden)[0])


BAD = [
    ({"weight": torch.randn(10, 5)}, "H = 4"),
    ({"weight": torch.randn(10, 4, dtype=torch.float64)}, "dtype of 'hidden'"),
    ({"labels": torch.tensor([0, 1, 10])}, "must lie in \\[0, V=10\\)"),
    ({"labels": torch.tensor([0, 1])}, "N = 3"),
    ({"bias": torch.randn(9)}, "V = 10"),
    ({"temperature": 0.0}, "'temperature'"),
    ({"labels": torch.tensor([0, 1, 2], device="meta")}, "is on meta"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_input(override, message):
    args = {
        "hidden": torch.randn(3, 4),
        "weight": torch.randn(10, 4),
        "labels": torch.tensor([0, 1, 2]),
    } | override
    kwargs = {k: args.pop(k) for k in ("bias", "temperature") if k in args}
    with pytest.raises(ValueError, match=message):
        feedbackkit.linear_logprob(args["hidden"], args["weight"], args["labels"], **kwargs)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    hidden, weight, bias, labels = make_case(300, 64, 3000, dtype, seed=8)
    cpu = feedbackkit.linear_logprob(
        hidden.float(), weight.float(), labels, bias=bias.float(), return_entropy=True
    )
    gpu = feedbackkit.linear_logprob(
        hidden.cuda(), weight.cuda(), labels.cuda(), bias=bias.cuda(), vocab_tile=512, return_entropy=True
    )
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    for c, g in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(g.cpu(), c, rtol=tol, atol=tol)
    h64, w64, b64 = (x.double().cuda().requires_grad_(True) for x in (hidden, weight, bias))
    bad = labels.cuda().clone()
    bad[7] = 3000
    assert torch.isnan(feedbackkit.linear_logprob(hidden.cuda(), weight.cuda(), bad)[7]).item()
    with pytest.raises(ValueError, match="must lie in"):
        feedbackkit.linear_logprob(hidden.cuda(), weight.cuda(), bad, check=True)
    assert torch.autograd.gradcheck(
        lambda h, w, b: feedbackkit.linear_logprob(h, w, labels.cuda(), bias=b, vocab_tile=1024),
        (h64[:5].detach().requires_grad_(True), w64, b64),
        fast_mode=True,
    )
