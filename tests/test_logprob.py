"""sequence_reduce: correctness against the float64 reference, autograd, torch.library
conformance, torch.compile, NumPy input, and errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import feedbackkit
from feedbackkit.reference.logprob import sequence_reduce as reference

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 1e-5, torch.float16: 1e-5}


def make_mask(lengths: list[int], seq: int, dtype=torch.bool) -> torch.Tensor:
    return (torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]).to(dtype)


def cu_from(lengths: list[int], dtype=torch.int64) -> torch.Tensor:
    return torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=dtype)


def check_close(got: torch.Tensor, values: torch.Tensor, expected: torch.Tensor) -> None:
    # Inputs are exactly representable in every dtype, so only accumulation error remains.
    assert got.dtype == (torch.float64 if values.dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(got.double(), expected, rtol=TOL[values.dtype], atol=TOL[values.dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.uint8, torch.int32, torch.int64])
def test_mask_matches_reference(dtype, mode, mask_dtype):
    torch.manual_seed(0)
    lengths = [0, 1, 7, 64, 129, 200]
    values = torch.randn(6, 200).to(dtype)
    mask = make_mask(lengths, 200, mask_dtype)
    got = feedbackkit.sequence_reduce(values, mask, mode=mode)
    check_close(got, values, reference(values.double(), mask, mode=mode))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_packed_matches_reference(dtype, mode, index_dtype):
    torch.manual_seed(1)
    lengths = [3, 0, 17, 1, 250]
    values = torch.randn(sum(lengths)).to(dtype)
    cu = cu_from(lengths, index_dtype)
    got = feedbackkit.sequence_reduce(values, cu_seqlens=cu, mode=mode)
    check_close(got, values, reference(values.double(), cu_seqlens=cu, mode=mode))


def test_hand_computed_values():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 0, 1]], dtype=torch.bool)
    assert feedbackkit.sequence_reduce(values, mask).tolist() == [6.0, 12.0]
    assert feedbackkit.sequence_reduce(values, mask, mode="mean").tolist() == [2.0, 6.0]
    packed = torch.arange(10, dtype=torch.float32)
    out = feedbackkit.sequence_reduce(packed, cu_seqlens=torch.tensor([0, 3, 10]), mode="mean")
    assert out.tolist() == [1.0, 6.0]


def test_masked_padding_never_leaks():
    values = torch.tensor([[1.0, float("nan"), float("inf")], [2.0, 3.0, -float("inf")]])
    mask = torch.tensor([[True, False, False], [True, True, False]])
    assert feedbackkit.sequence_reduce(values, mask).tolist() == [1.0, 5.0]


def test_empty_rows_give_zero_and_zero_gradient():
    values = torch.randn(3, 5, requires_grad=True)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[1, :2] = True
    out = feedbackkit.sequence_reduce(values, mask, mode="mean")
    assert out[0].item() == 0.0 and out[2].item() == 0.0
    out.sum().backward()
    assert values.grad[0].abs().sum().item() == 0.0
    assert values.grad[1].tolist() == pytest.approx([0.5, 0.5, 0, 0, 0])
    empty = feedbackkit.sequence_reduce(torch.zeros(0), cu_seqlens=torch.tensor([0, 0, 0]), mode="mean")
    assert empty.tolist() == [0.0, 0.0]


def test_no_rows():
    assert feedbackkit.sequence_reduce(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.bool)).shape == (0,)
    assert feedbackkit.sequence_reduce(torch.zeros(0), cu_seqlens=torch.tensor([0])).shape == (0,)


def test_accumulates_in_fp32_not_input_precision():
    # 4096 bf16 values of 1.0 + 1/128: a bf16 running sum would stall at 256 (ulp 2 > increment).
    values = torch.full((1, 4096), 1.0 + 1 / 128, dtype=torch.bfloat16)
    got = feedbackkit.sequence_reduce(values, torch.ones(1, 4096, dtype=torch.bool))
    assert got.item() == pytest.approx(4096 * (1 + 1 / 128), rel=1e-6)


@pytest.mark.parametrize("layout", ["mask", "packed"])
def test_long_rows_keep_fp32_sums_accurate(layout):
    # 2^20 same-sign values: a sequential fp32 sum is off by ~4e-6 relative; blocked lane sums
    # stay below 1e-6.
    n = 1 << 20
    values = torch.rand(2, n, generator=torch.Generator().manual_seed(11))
    if layout == "mask":
        got = feedbackkit.sequence_reduce(values, torch.ones(2, n, dtype=torch.bool))
    else:
        got = feedbackkit.sequence_reduce(values.reshape(-1), cu_seqlens=torch.tensor([0, n, 2 * n]))
    exact = values.double().sum(-1)
    assert ((got.double() - exact) / exact).abs().max().item() < 1e-6


def test_large_row_parallel_path_matches_reference():
    torch.manual_seed(2)
    lengths = torch.randint(0, 3000, (64,)).tolist()
    values = torch.randn(64, 3000, dtype=torch.bfloat16)
    mask = make_mask(lengths, 3000)
    check_close(
        feedbackkit.sequence_reduce(values, mask, mode="mean"),
        values,
        reference(values.double(), mask, mode="mean"),
    )
    packed = torch.randn(sum(lengths))
    cu = cu_from(lengths)
    check_close(
        feedbackkit.sequence_reduce(packed, cu_seqlens=cu), packed, reference(packed.double(), cu_seqlens=cu)
    )


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_non_contiguous_inputs(mode):
    torch.manual_seed(3)
    base = torch.randn(40, 8, dtype=torch.float64)
    values = base.t()  # [8, 40], strides (1, 8)
    mask = make_mask([40, 3, 0, 17, 40, 1, 9, 22], 40)[:, None, :].expand(8, 2, 40)[:, 1, :]
    got = feedbackkit.sequence_reduce(values, mask, mode=mode)
    check_close(got, values, reference(values, mask, mode=mode))
    packed = torch.randn(60, dtype=torch.float64)[::2]  # stride 2
    cu = torch.tensor([0, -1, 10, -1, 10, -1, 30])[::2]  # stride 2: [0, 10, 10, 30]
    got = feedbackkit.sequence_reduce(packed, cu_seqlens=cu, mode=mode)
    check_close(got, packed, reference(packed, cu_seqlens=cu.contiguous(), mode=mode))


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=0, max_size=12),
    mode=st.sampled_from(["sum", "mean"]),
    packed=st.booleans(),
    data=st.data(),
)
def test_property_against_reference(lengths, mode, packed, data):
    seed = data.draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    if packed:
        values = torch.randn(sum(lengths), generator=generator, dtype=torch.float64)
        cu = cu_from(lengths)
        got = feedbackkit.sequence_reduce(values, cu_seqlens=cu, mode=mode)
        expected = reference(values, cu_seqlens=cu, mode=mode)
    else:
        seq = max(lengths, default=0) + data.draw(st.integers(0, 3))
        values = torch.randn(len(lengths), seq, generator=generator, dtype=torch.float64)
        mask = torch.rand(len(lengths), seq, generator=generator) < 0.6
        got = feedbackkit.sequence_reduce(values, mask, mode=mode)
        expected = reference(values, mask, mode=mode)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_numpy_in_numpy_out():
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=bool)
    out = feedbackkit.sequence_reduce(values, mask, mode="mean")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, [0.5, 5.5, 0.0])
    readonly = np.arange(6, dtype=np.float64)[::-1]
    readonly.flags.writeable = False
    out = feedbackkit.sequence_reduce(readonly, cu_seqlens=np.array([0, 2, 6]))
    assert out.dtype == np.float64 and out.tolist() == [9.0, 6.0]
    assert readonly.tolist() == [5, 4, 3, 2, 1, 0]  # input untouched


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_gradcheck_mask(mode):
    torch.manual_seed(4)
    values = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    mask = make_mask([7, 0, 3, 5], 7)
    op = lambda v: feedbackkit.sequence_reduce(v, mask, mode=mode)  # noqa: E731
    assert torch.autograd.gradcheck(op, (values,))
    assert torch.autograd.gradgradcheck(op, (values,))


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_gradcheck_packed(mode):
    torch.manual_seed(5)
    values = torch.randn(11, dtype=torch.float64, requires_grad=True)
    cu = torch.tensor([0, 4, 4, 11], dtype=torch.int32)
    op = lambda v: feedbackkit.sequence_reduce(v, cu_seqlens=cu, mode=mode)  # noqa: E731
    assert torch.autograd.gradcheck(op, (values,))
    assert torch.autograd.gradgradcheck(op, (values,))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gradient_in_input_dtype_with_per_row_upstream(dtype):
    values = torch.randn(3, 6).to(dtype).requires_grad_(True)
    mask = make_mask([6, 2, 4], 6)
    out = feedbackkit.sequence_reduce(values, mask, mode="mean")
    out.backward(torch.tensor([1.0, -3.0, 0.5]))
    assert values.grad.dtype == dtype
    expected = torch.tensor([1.0 / 6, -1.5, 0.125])[:, None] * mask
    torch.testing.assert_close(values.grad.float(), expected, rtol=4e-3, atol=0)


@pytest.mark.parametrize("layout", ["mask", "packed"])
def test_opcheck(layout):
    torch.manual_seed(6)
    if layout == "mask":
        args = (torch.randn(3, 9, requires_grad=True), make_mask([9, 0, 4], 9), None)
    else:
        args = (torch.randn(9, requires_grad=True), None, torch.tensor([0, 2, 2, 9]))
    for mode in ("sum", "mean"):
        torch.library.opcheck(torch.ops.feedbackkit.sequence_reduce.default, (*args, mode))


def test_opcheck_backward_op():
    grad = torch.randn(3, dtype=torch.float64, requires_grad=True)
    mask = make_mask([9, 0, 4], 9)
    torch.library.opcheck(
        torch.ops.feedbackkit.sequence_reduce_backward.default,
        (grad, mask, None, "mean", [3, 9], torch.float64),
    )


def test_torch_compile_fullgraph():
    torch.manual_seed(7)
    values = torch.randn(5, 33, requires_grad=True)
    mask = make_mask([33, 1, 0, 20, 7], 33)

    def loss_fn(v, m):
        return (feedbackkit.sequence_reduce(v, m, mode="mean") ** 2).sum()

    compiled = torch.compile(loss_fn, fullgraph=True, backend="inductor")
    loss = compiled(values, mask)
    (grad,) = torch.autograd.grad(loss, values)
    expected_loss = loss_fn(values, mask)
    (expected_grad,) = torch.autograd.grad(expected_loss, values)
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(grad, expected_grad)


BAD_INPUTS = [
    (
        lambda: (torch.arange(6).view(2, 3), torch.ones(2, 3, dtype=torch.bool), None, "sum"),
        "'values' must have dtype",
    ),
    (lambda: (torch.randn(2, 3), torch.ones(2, 3), None, "sum"), "'mask' must have dtype"),
    (
        lambda: (torch.randn(2, 3), torch.ones(2, 4, dtype=torch.bool), None, "sum"),
        "'mask' must have the shape",
    ),
    (lambda: (torch.randn(6), torch.ones(6, dtype=torch.bool), None, "sum"), "'values' must be 2-D"),
    (lambda: (torch.randn(2, 3), None, None, "sum"), "exactly one of 'mask'"),
    (
        lambda: (torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool), torch.tensor([0, 3]), "sum"),
        "exactly one",
    ),
    (lambda: (torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool), None, "max"), "'mode' must be one of"),
    (lambda: (torch.randn(2, 3), None, torch.tensor([0, 3, 6]), "sum"), "'values' must be 1-D"),
    (lambda: (torch.randn(6), None, torch.tensor([0.0, 6.0]), "sum"), "'cu_seqlens' must have dtype"),
    (lambda: (torch.randn(6), None, torch.zeros(0, dtype=torch.int64), "sum"), "at least one entry"),
    (lambda: (torch.randn(6), None, torch.tensor([0, 4, 2, 6]), "sum"), "must be non-decreasing"),
    (lambda: (torch.randn(6), None, torch.tensor([0, 4, 5]), "sum"), "must end at N=6"),
    (lambda: (torch.randn(6), None, torch.tensor([1, 4, 6]), "sum"), "must start at 0"),
    (lambda: (torch.randn(6), None, torch.tensor([0, 4, 7]), "sum"), "must end at N=6"),
    (lambda: ([1.0, 2.0], None, torch.tensor([0, 2]), "sum"), "must be a torch.Tensor or numpy.ndarray"),
    (
        lambda: (torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool, device="meta"), None, "sum"),
        "is on meta",
    ),
]


@pytest.mark.parametrize(("make", "message"), BAD_INPUTS)
def test_bad_input_raises_clear_error(make, message):
    values, mask, cu, mode = make()
    with pytest.raises(ValueError, match=message) as info:
        feedbackkit.sequence_reduce(values, mask, cu_seqlens=cu, mode=mode)
    assert "cu_seqlens" in str(info.value) or "sequence_reduce" in str(info.value)


def test_bad_input_does_not_touch_inputs():
    values = torch.randn(6)
    before = values.clone()
    with pytest.raises(ValueError):
        feedbackkit.sequence_reduce(values, cu_seqlens=torch.tensor([0, 5, 4]))
    assert torch.equal(values, before)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_cuda_matches_cpu(dtype, mode):
    torch.manual_seed(8)
    lengths = [0, 1, 31, 32, 33, 255, 256, 1000]
    values = torch.randn(8, 1000).to(dtype)
    mask = make_mask(lengths, 1000)
    check_close(
        feedbackkit.sequence_reduce(values.cuda(), mask.cuda(), mode=mode).cpu(),
        values,
        reference(values.double(), mask, mode=mode),
    )
    packed = torch.randn(sum(lengths)).to(dtype)
    cu = cu_from(lengths, torch.int32)
    check_close(
        feedbackkit.sequence_reduce(packed.cuda(), cu_seqlens=cu.cuda(), mode=mode).cpu(),
        packed,
        reference(packed.double(), cu_seqlens=cu, mode=mode),
    )


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["mask", "packed"])
def test_cuda_gradcheck_and_opcheck(layout):
    if layout == "mask":
        values = torch.randn(4, 300, dtype=torch.float64, device="cuda", requires_grad=True)
        mask, cu = make_mask([300, 0, 3, 299], 300).cuda(), None
    else:
        values = torch.randn(310, dtype=torch.float64, device="cuda", requires_grad=True)
        mask, cu = None, torch.tensor([0, 5, 5, 310], device="cuda")
    for mode in ("sum", "mean"):
        op = lambda v, mode=mode: feedbackkit.sequence_reduce(v, mask, cu_seqlens=cu, mode=mode)  # noqa: E731
        assert torch.autograd.gradcheck(op, (values,))
        torch.library.opcheck(torch.ops.feedbackkit.sequence_reduce.default, (values, mask, cu, mode))


@pytest.mark.cuda
def test_cuda_malformed_cu_seqlens_gives_nan_or_error_with_check():
    values = torch.randn(6, device="cuda", requires_grad=True)
    bad = torch.tensor([0, 4, 2, 6], device="cuda")
    out = feedbackkit.sequence_reduce(values, cu_seqlens=bad)
    assert torch.isnan(out[1]).item()
    out.sum().backward()
    assert torch.isnan(values.grad[2:4]).all().item()
    with pytest.raises(ValueError, match="non-decreasing"):
        feedbackkit.sequence_reduce(values, cu_seqlens=bad, check=True)
    short = torch.tensor([0, 4, 5], device="cuda")
    assert torch.isnan(feedbackkit.sequence_reduce(values.detach(), cu_seqlens=short)).all().item()


@pytest.mark.cuda
def test_cuda_compile_and_other_device_stream():
    values = torch.randn(5, 70, device="cuda", requires_grad=True)
    mask = make_mask([70, 1, 0, 20, 7], 70).cuda()
    compiled = torch.compile(
        lambda v, m: feedbackkit.sequence_reduce(v, m, mode="mean").sum(), fullgraph=True
    )
    torch.testing.assert_close(
        compiled(values, mask), feedbackkit.sequence_reduce(values, mask, mode="mean").sum()
    )
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = feedbackkit.sequence_reduce(values, mask)
    stream.synchronize()
    torch.testing.assert_close(out.cpu(), reference(values.detach().cpu().double(), mask.cpu()).float())
