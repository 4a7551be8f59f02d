"""compress family on the CPU: exact top-k index sets against a stable-sort reference and
torch.topk (random, many ties, all equal, narrow ranges that need several radix passes, k=1,
k=d), the fused EF21 / EF14 steps and decompress_add bit for bit against the PyTorch reference,
the message layout, the stepsize constants of the spec, torch.library conformance, and errors
for bad input (which must leave every state tensor untouched)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from feedbackkit import compress
from feedbackkit.reference import compress as ref

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
NAN = float("nan")
KINDS = ["random", "ties", "equal", "narrow", "sparse", "repeats"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def data(kind: str, n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = gen(seed)
    if kind == "random":
        x = torch.randn(n, generator=g, dtype=torch.float64)
    elif kind == "ties":  # 16 distinct values, each repeated about n/16 times, both signs
        x = torch.randint(-8, 8, (n,), generator=g).to(torch.float64) / 4
    elif kind == "equal":
        x = torch.full((n,), -1.5, dtype=torch.float64)
    elif kind == "narrow":  # distinct values sharing their top key bits: forces several passes
        x = 1.0 + torch.rand(n, generator=g, dtype=torch.float64) * 2**-10
    elif kind == "sparse":  # mostly (signed) zeros
        x = torch.randn(n, generator=g, dtype=torch.float64) * (torch.rand(n, generator=g) < 0.01)
        x[torch.rand(n, generator=g) < 0.5] *= -1
    elif kind == "repeats":  # 1000 distinct values repeating with period 1000: ties at the threshold
        x = (torch.arange(n, dtype=torch.float64) % 1000) / 7
    else:
        raise AssertionError(kind)
    return x.to(dtype)


def as_set(indices: torch.Tensor) -> set[int]:
    values = indices.tolist()
    assert len(values) == len(set(values)), "indices repeat"
    return set(values)


# ---- topk ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["random", "ties", "equal", "narrow"])
@pytest.mark.parametrize(
    ("n", "k"), [(1, 1), (37, 1), (37, 37), (1000, 10), (100_003, 997), (1_200_001, 1200)]
)
@pytest.mark.parametrize("by", ["abs", "value"])
def test_topk_matches_stable_sort_reference(dtype, kind, n, k, by):
    x = data(kind, n, dtype, seed=n + k)
    values, indices = compress.topk(x, k, by=by)
    expected_indices = ref.topk(x, k, by=by)[1]
    assert indices.dtype == torch.int64 and values.dtype == dtype and values.shape == (k,)
    assert as_set(indices) == set(expected_indices.tolist())
    assert torch.equal(values, x[indices])  # the signed entries, not magnitudes


@pytest.mark.parametrize("ratio", [1e-4, 1e-3, 1e-2, 0.5])
def test_topk_set_equals_torch_topk_without_ties(ratio):
    x = torch.randn(300_000, generator=gen(1), dtype=torch.float64)  # distinct magnitudes
    k = max(1, int(x.numel() * ratio))
    assert as_set(compress.topk(x, k).indices) == set(torch.topk(x.abs(), k, sorted=False).indices.tolist())


def test_topk_ties_go_to_lowest_indices():
    x = torch.tensor([1.0, -3.0, 3.0, 2.0, -3.0, 3.0, 0.5])
    assert as_set(compress.topk(x, 3).indices) == {1, 2, 4}
    assert as_set(compress.topk(x, 2, by="value").indices) == {2, 5}
    signed_zero = torch.tensor([0.0, -0.0, 0.0, -0.0])
    assert as_set(compress.topk(signed_zero, 2).indices) == {0, 1}


def test_topk_flattens_any_shape_and_strides():
    x = torch.randn(64, 50, generator=gen(2))[:, ::2]  # non-contiguous
    values, indices = compress.topk(x, 40)
    assert as_set(indices) == set(ref.topk(x, 40)[1].tolist())
    assert torch.equal(values, x.reshape(-1)[indices])


def test_topk_int32_indices_and_infinities():
    x = torch.tensor([1.0, float("-inf"), 2.0, float("inf"), -7.0])
    indices = compress.topk(x, 3, index_dtype=torch.int32).indices
    assert indices.dtype == torch.int32 and as_set(indices) == {1, 3, 4}
    assert as_set(compress.topk(x, 1, by="value").indices) == {3}


def test_topk_nan_is_rejected_by_default_and_largest_on_request():
    x = torch.tensor([1.0, NAN, -5.0, 2.0])
    with pytest.raises(ValueError, match="1 NaN"):
        compress.topk(x, 2)
    assert as_set(compress.topk(x, 2, nan="largest").indices) == {1, 2}
    assert as_set(compress.topk(x, 1, by="value", nan="largest").indices) == {1}
    assert as_set(compress.topk(-x, 1, by="value", nan="largest").indices) == {1}  # NaN of either sign


# Small arrays full of repeats, signed zeros and infinities, for property tests on any device.
REPEATS = st.lists(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e-30, float("inf"), 3e38]), min_size=1, max_size=80
)


def check_topk_property(values: list[float], draw: st.DataObject, device: str) -> None:
    x = torch.tensor(values, dtype=torch.float32)
    k = draw.draw(st.integers(1, x.numel()))
    by = draw.draw(st.sampled_from(["abs", "value"]))
    indices = compress.topk(x.to(device), k, by=by).indices.cpu()
    assert as_set(indices) == set(ref.topk(x, k, by=by)[1].tolist())


@settings(max_examples=60, deadline=None)
@given(REPEATS, st.data())
def test_topk_property_small_arrays_with_repeats(values, draw):
    check_topk_property(values, draw, "cpu")


def test_topk_order_is_deterministic():
    x = data("ties", 500_000, torch.float32, seed=3)
    first, second = compress.topk(x, 4321), compress.topk(x, 4321)
    assert torch.equal(first.indices, second.indices) and torch.equal(first.values, second.values)


# ---- messages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("numel", "dtype", "index_dtype", "value_size"),
    [
        (1000, torch.float32, torch.int32, 4),
        (1000, torch.bfloat16, torch.int32, 2),
        (1000, torch.float64, torch.int64, 8),
        (2**31, torch.float32, torch.int64, 4),
    ],
)
def test_message_layout(numel, dtype, index_dtype, value_size):
    assert compress.message_index_dtype(numel, dtype) == index_dtype
    index_size = torch.empty((), dtype=index_dtype).element_size()
    for k in (1, 3, 8):
        nbytes = compress.message_nbytes(numel, k, dtype)
        assert nbytes % 8 == 0 and k * (index_size + value_size) <= nbytes < k * (index_size + value_size) + 8
        packed = torch.zeros(5, nbytes, dtype=torch.uint8)
        indices, values = compress.unpack(packed, k, numel, dtype)
        assert indices.shape == (5, k) and values.shape == (5, k) and values.dtype == dtype
        indices[2, k - 1] = 7
        assert packed[2].view(torch.uint8)[: k * index_size].view(index_dtype)[k - 1] == 7  # a view


# ---- ef21_step -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "k"), [(50, 1), (50, 50), (70_001, 70), (1_100_000, 1100)])
def test_ef21_step_matches_reference_bitwise(dtype, n, k):
    grad = data("random", n, dtype, seed=1)
    g_i = data("random", n, dtype, seed=2)
    expected_state = g_i.clone()
    message = compress.ef21_step(grad, g_i, k)
    expected_indices, expected_values = ref.ef21_step(grad, expected_state, k)
    assert torch.equal(g_i, expected_state)
    assert message.indices.dtype == compress.message_index_dtype(n, dtype)
    order, expected_order = message.indices.long().argsort(), expected_indices.argsort()
    assert torch.equal(message.indices.long()[order], expected_indices[expected_order])
    assert torch.equal(message.values[order], expected_values[expected_order])
    assert message.packed.dtype == torch.uint8 and message.packed.numel() == compress.message_nbytes(
        n, k, dtype
    )


def test_ef21_step_sends_the_difference_and_keeps_the_rest():
    grad = torch.tensor([1.0, 5.0, -2.0, 0.0])
    g_i = torch.tensor([1.0, 1.0, 1.0, 1.0])
    message = compress.ef21_step(grad, g_i, 2)
    assert as_set(message.indices) == {1, 2}
    assert dict(zip(message.indices.tolist(), message.values.tolist(), strict=True)) == {1: 4.0, 2: -3.0}
    assert torch.equal(g_i, torch.tensor([1.0, 5.0, -2.0, 1.0]))


def test_ef21_workers_track_their_gradients_and_the_mean():
    """After enough steps with a fixed gradient, g_i = grad_i exactly and g = mean g_i."""
    workers, n, k = 3, 200, 20
    grads = [torch.randn(n, generator=gen(10 + w), dtype=torch.float64) for w in range(workers)]
    states = [torch.zeros(n, dtype=torch.float64) for _ in range(workers)]
    g = torch.zeros(n, dtype=torch.float64)
    for _ in range(n // k):
        messages = [compress.ef21_step(grads[w], states[w], k) for w in range(workers)]
        indices = torch.stack([m.indices for m in messages])
        values = torch.stack([m.values for m in messages])
        compress.decompress_add(g, indices, values, 1 / workers)
    for w in range(workers):
        assert torch.equal(states[w], grads[w])
    torch.testing.assert_close(g, torch.stack(grads).mean(0), rtol=0, atol=1e-14)


# ---- ef14_step -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "k"), [(50, 1), (50, 50), (70_001, 70), (1_100_000, 1100)])
def test_ef14_step_matches_reference_bitwise(dtype, n, k):
    grad = data("random", n, dtype, seed=3)
    error = data("random", n, dtype, seed=4) * 0.1
    expected_error = error.clone()
    message = compress.ef14_step(grad, error, k, lr=0.3)
    expected_indices, expected_values = ref.ef14_step(grad, expected_error, k, lr=0.3)
    assert torch.equal(error, expected_error)
    order, expected_order = message.indices.long().argsort(), expected_indices.argsort()
    assert torch.equal(message.indices.long()[order], expected_indices[expected_order])
    assert torch.equal(message.values[order], expected_values[expected_order])


def test_ef14_step_error_keeps_what_was_not_sent():
    grad = torch.tensor([1.0, -4.0, 2.0])
    error = torch.tensor([0.5, 0.0, -3.0])
    message = compress.ef14_step(grad, error, 1, lr=1.0)
    assert message.indices.tolist() == [1] and message.values.tolist() == [-4.0]
    assert torch.equal(error, torch.tensor([1.5, 0.0, -1.0]))


# ---- decompress_add --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_decompress_add_matches_reference_in_rank_order(dtype):
    workers, n, k = 5, 1000, 300
    indices = torch.stack(
        [torch.randperm(n, generator=gen(w))[:k] for w in range(workers)]
    )  # overlapping rows
    values = torch.randn(workers, k, generator=gen(9), dtype=torch.float64).to(dtype)
    out = torch.randn(n, generator=gen(8), dtype=torch.float64).to(dtype)
    expected = ref.decompress_add(out.clone(), indices, values, 1 / 3)
    assert torch.equal(compress.decompress_add(out, indices.int(), values, 1 / 3), expected)


def test_decompress_add_reads_strided_message_views():
    n, k, workers = 100, 4, 3
    packed = torch.zeros(workers, compress.message_nbytes(n, k, torch.float32), dtype=torch.uint8)
    indices, values = compress.unpack(packed, k, n, torch.float32)
    indices.copy_(torch.tensor([[0, 1, 2, 3], [3, 4, 5, 6], [99, 0, 50, 3]]))
    values.copy_(torch.arange(12, dtype=torch.float32).view(3, 4))
    out = compress.decompress_add(torch.zeros(n), indices, values)
    assert out[3].item() == 3 + 4 + 11 and out[0].item() == 0 + 9 and out[99].item() == 8 and out.sum() == 66


def test_decompress_add_rejects_bad_indices_and_leaves_out_untouched():
    out = torch.zeros(10)
    with pytest.raises(ValueError, match="indices"):
        compress.decompress_add(out, torch.tensor([[1, 10]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="indices"):
        compress.decompress_add(out, torch.tensor([[-1, 2]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="repeats"):
        compress.decompress_add(out, torch.tensor([[3, 3]]), torch.ones(1, 2), check=True)
    with pytest.raises(ValueError, match="'values' must have dtype"):
        compress.decompress_add(out, torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="same"):
        compress.decompress_add(out, torch.tensor([[1, 2]]), torch.ones(1, 3))
    assert torch.equal(out, torch.zeros(10))


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 11])
def test_k_out_of_range_is_rejected(k):
    x = torch.randn(10)
    for call in (
        lambda: compress.topk(x, k),
        lambda: compress.ef21_step(x, torch.zeros(10), k),
        lambda: compress.ef14_step(x, torch.zeros(10), k, 0.1),
    ):
        with pytest.raises(ValueError, match=r"'k' must satisfy 1 <= k <= 10"):
            call()


def test_nan_gradient_raises_and_leaves_state_untouched():
    grad = torch.randn(100_000, generator=gen(5))
    grad[77_777] = NAN
    g_i = torch.randn(100_000, generator=gen(6))
    before = g_i.clone()
    with pytest.raises(ValueError, match="ef21_step: 'grad' contains 1 NaN"):
        compress.ef21_step(grad, g_i, 100)
    assert torch.equal(g_i, before)
    with pytest.raises(ValueError, match="ef14_step: 'grad' contains 1 NaN"):
        compress.ef14_step(grad, g_i, 100, 0.5)
    assert torch.equal(g_i, before)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (torch.zeros(9), "must have the shape of 'grad'"),
        (torch.zeros(10, dtype=torch.float64), "must have dtype float32"),
        (torch.zeros(20)[::2], "must be contiguous"),
        ("zeros", "must be a torch.Tensor"),
    ],
)
def test_state_mismatch_is_rejected(state, message):
    with pytest.raises(ValueError, match=message):
        compress.ef21_step(torch.randn(10), state, 2)


def test_state_aliasing_grad_and_bad_options_are_rejected():
    grad = torch.randn(10)
    with pytest.raises(ValueError, match="must not share memory"):
        compress.ef21_step(grad, grad, 2)
    buffer = torch.zeros(20)
    with pytest.raises(ValueError, match="must not share memory"):
        compress.ef21_step(buffer[:10], buffer[5:15], 2)
    compress.ef21_step(buffer[:10], buffer[10:], 2)  # one storage, disjoint halves: fine
    with pytest.raises(ValueError, match="'nan' must be"):
        compress.topk(grad, 2, nan="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'by' must be"):
        compress.topk(grad, 2, by="magnitude")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'lr' must be a finite number"):
        compress.ef14_step(grad, torch.zeros(10), 2, math.inf)
    with pytest.raises(TypeError, match="'k' must be an int"):
        compress.topk(grad, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'x' must have dtype"):
        compress.topk(torch.arange(10), 2)


# ---- stepsizes -------------------------------------------------------------------------------


def test_constants_of_the_spec():
    assert compress.xi(0.1) == pytest.approx(18.4868, abs=5e-5)
    theta, beta = compress.ef21_constants(0.1)
    assert math.sqrt(beta / theta) == pytest.approx(compress.xi(0.1), rel=1e-12)
    assert compress.xi(1.0) == 0.0
    constants = [1.0, 1.0, 1.0, 100.0]
    xi = compress.xi(0.1)
    assert 1 / compress.ef21_stepsize(2.0, constants, 0.1) == pytest.approx(2.0 + 25.75 * xi, rel=1e-12)
    assert 1 / compress.ef21_stepsize(2.0, constants, 0.1, mean="quadratic") == pytest.approx(
        2.0 + 50.0075 * xi, rel=1e-6
    )
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="'alpha'"):
            compress.xi(bad)
    with pytest.raises(ValueError, match="'mean'"):
        compress.ef21_stepsize(1.0, constants, 0.1, mean="harmonic")  # type: ignore[arg-type]


# ---- torch.library conformance ---------------------------------------------------------------

OPCHECK = {
    "topk": lambda: (torch.randn(1000, generator=gen(1)), 17, "abs", False, torch.int64),
    "ef21_step": lambda: (
        torch.randn(1000, generator=gen(2)),
        torch.randn(1000, generator=gen(3)),
        17,
        False,
    ),
    "ef14_step": lambda: (
        torch.randn(1000, generator=gen(2)),
        torch.randn(1000, generator=gen(3)),
        17,
        0.5,
        False,
    ),
    "decompress_add": lambda: (
        torch.zeros(100),
        torch.randperm(100, generator=gen(4))[:30].view(3, 10),
        torch.randn(3, 10, generator=gen(5)),
        0.5,
    ),
}


@pytest.mark.parametrize("name", sorted(OPCHECK))
def test_opcheck(name):
    torch.library.opcheck(getattr(torch.ops.feedbackkit, name).default, OPCHECK[name]())


def test_ops_trace_under_torch_compile():
    def step(grad, g_i):
        packed, status = torch.ops.feedbackkit.ef21_step(grad, g_i, 5, True)
        return packed, status

    grad, g_i = torch.randn(100, generator=gen(7)), torch.zeros(100)
    expected_state = g_i.clone()
    expected, _ = step(grad, expected_state)
    packed, _ = torch.compile(step, fullgraph=True, backend="eager")(grad, g_i)
    assert torch.equal(packed, expected) and torch.equal(g_i, expected_state)


@pytest.mark.slow
def test_topk_addresses_more_than_2_to_the_31_elements():
    n = 2**31 + 5
    x = torch.zeros(n, dtype=torch.bfloat16)  # 4 GiB
    x[n - 1], x[2**31 + 1], x[7] = -3.0, 2.0, 1.0
    values, indices = compress.topk(x, 3)
    assert as_set(indices) == {7, 2**31 + 1, n - 1} and sorted(values.tolist()) == [-3.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="int32 indices cannot address"):
        compress.topk(x, 3, index_dtype=torch.int32)


@pytest.mark.parametrize("kind", ["sampled_high", "sampled_low"])
def test_topk_is_exact_when_the_sample_misleads(kind):
    """The CPU engine estimates a bound from evenly spaced keys; when the sample is
    unrepresentative it must fall back to the full selection, never lose an entry."""
    n, k = 2**20, 20_000
    x = torch.rand(n, generator=gen(11))
    sampled = torch.arange(0, n, n // 16384)
    if kind == "sampled_high":  # every sampled key is large, but there are fewer of them than k
        x[sampled] += 10.0
    else:  # every sampled key is small: the bound is too low and the gather overflows
        x[sampled] = 0.0
    assert as_set(compress.topk(x, k).indices) == set(ref.topk(x, k)[1].tolist())
    state, expected_state = x.clone(), x.clone()
    grad = torch.zeros(n)
    compress.ef14_step(grad, state, k, 1.0)
    ref.ef14_step(grad, expected_state, k, 1.0)
    assert torch.equal(state, expected_state)
