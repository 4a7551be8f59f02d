"""compress family on CUDA: exact top-k index sets against the stable-sort reference and the CPU
kernel (random, many ties, all equal, narrow ranges, mostly zeros; k=1, k=d; every dtype; both
the prefiltered path for large inputs and its fallbacks), the fused EF21 / EF14 steps and
decompress_add bit for bit against the PyTorch reference, NaN handling (raise leaves every state
untouched, "largest" sends NaN), unaligned inputs, deterministic output, and torch.library
conformance."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_compress import DTYPES, KINDS, NAN, OPCHECK, REPEATS, as_set, check_topk_property, data, gen

from feedbackkit import compress
from feedbackkit.reference import compress as ref

pytestmark = pytest.mark.cuda

# Inputs from 2^18 elements on with a small k/n take the prefiltered path (one streaming read,
# then a selection over the candidates); the rest select over every element.
SIZES = [
    (1, 1),
    (37, 1),
    (37, 37),
    (1000, 10),
    (100_003, 997),
    (300_007, 1),
    (300_007, 300),
    (300_007, 300_007),
    (1_200_001, 1200),
]


def by_index(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, values) on the CPU, ordered by index."""
    indices, values = indices.long().cpu(), values.cpu()
    order = indices.argsort()
    return indices[order], values[order]


# ---- topk ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n", "k"), SIZES)
@pytest.mark.parametrize("by", ["abs", "value"])
def test_cuda_topk_matches_reference_and_cpu(dtype, kind, n, k, by):
    x = data(kind, n, dtype, seed=n + k)
    values, indices = compress.topk(x.cuda(), k, by=by)
    assert indices.is_cuda and values.is_cuda
    assert indices.dtype == torch.int64 and values.dtype == dtype and values.shape == (k,)
    indices, values = indices.cpu(), values.cpu()
    expected = set(ref.topk(x, k, by=by)[1].tolist())
    assert as_set(indices) == expected
    assert as_set(compress.topk(x, k, by=by).indices) == expected  # the CPU kernel agrees
    assert torch.equal(values, x[indices])  # the signed entries, not magnitudes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 1000, 500_000, 1_000_000])
def test_cuda_topk_all_k_on_a_large_input(dtype, k):
    x = data("random", 1_000_000, dtype, seed=k)
    indices = compress.topk(x.cuda(), k).indices
    assert as_set(indices.cpu()) == set(ref.topk(x, k)[1].tolist())


@pytest.mark.parametrize("ratio", [1e-4, 1e-3, 1e-2, 3e-2, 0.5])
def test_cuda_topk_set_equals_torch_topk_without_ties(ratio):
    x = torch.randn(2_000_000, generator=gen(1), dtype=torch.float64).cuda()  # distinct magnitudes
    k = max(1, int(x.numel() * ratio))
    got = as_set(compress.topk(x, k).indices.cpu())
    assert got == set(torch.topk(x.abs(), k, sorted=False).indices.cpu().tolist())


def test_cuda_topk_ties_go_to_lowest_indices():
    x = torch.tensor([1.0, -3.0, 3.0, 2.0, -3.0, 3.0, 0.5], device="cuda")
    assert as_set(compress.topk(x, 3).indices.cpu()) == {1, 2, 4}
    assert as_set(compress.topk(x, 2, by="value").indices.cpu()) == {2, 5}
    signed_zero = torch.tensor([0.0, -0.0, 0.0, -0.0], device="cuda")
    assert as_set(compress.topk(signed_zero, 2).indices.cpu()) == {0, 1}
    assert as_set(compress.topk(signed_zero, 2, by="value").indices.cpu()) == {0, 1}
    # Half a large input ties at the threshold: the lowest half of the ties wins.
    x = torch.ones(600_000, device="cuda")
    x[::3] = 2.0
    k = 200_000 + 1000
    expected = set(range(0, 600_000, 3)) | set([i for i in range(600_000) if i % 3][:1000])
    assert as_set(compress.topk(x, k).indices.cpu()) == expected


def test_cuda_topk_when_the_sample_misleads_the_prefilter():
    # The evenly spaced positions the prefilter samples hold the largest values, so its bound
    # admits fewer than k candidates and the selection must fall back to the whole input.
    n = 300_007
    x = torch.randn(n, generator=gen(9), dtype=torch.float64)
    samples = (2 * torch.arange(16384) + 1) * n // (2 * 16384)
    x[samples] = 100.0 + torch.arange(16384, dtype=torch.float64)
    for k in (100, 1000, 20_000):
        for by in ("abs", "value"):
            got = compress.topk(x.float().cuda(), k, by=by).indices.cpu()
            assert as_set(got) == set(ref.topk(x.float(), k, by=by)[1].tolist()), (k, by)


def test_cuda_topk_clustered_large_values():
    # All the large values in one contiguous block (a layer with large gradients).
    x = torch.randn(2_000_003, generator=gen(10)) * 1e-3
    x[700_000:760_000] = torch.randn(60_000, generator=gen(11))
    for k in (100, 2000, 50_000, 70_000):
        assert as_set(compress.topk(x.cuda(), k).indices.cpu()) == set(ref.topk(x, k)[1].tolist()), k


def test_cuda_topk_unaligned_and_strided_inputs():
    base = torch.randn(300_011, generator=gen(12))
    for offset in (1, 2, 3):
        x = base[offset : offset + 300_000]
        shifted = base.cuda()[offset : offset + 300_000]  # contiguous but not 16-byte aligned
        assert as_set(compress.topk(shifted, 300).indices.cpu()) == set(ref.topk(x, 300)[1].tolist())
    x = torch.randn(64, 50, generator=gen(2))[:, ::2]
    values, indices = compress.topk(x.cuda(), 40)
    assert as_set(indices.cpu()) == set(ref.topk(x, 40)[1].tolist())
    assert torch.equal(values.cpu(), x.reshape(-1)[indices.cpu()])


def test_cuda_topk_int32_indices_and_infinities():
    x = torch.tensor([1.0, float("-inf"), 2.0, float("inf"), -7.0], device="cuda")
    indices = compress.topk(x, 3, index_dtype=torch.int32).indices
    assert indices.dtype == torch.int32 and as_set(indices.cpu()) == {1, 3, 4}
    assert as_set(compress.topk(x, 1, by="value").indices.cpu()) == {3}
    big = data("random", 500_000, torch.float32, seed=13)
    got = compress.topk(big.cuda(), 500, index_dtype=torch.int32).indices
    assert got.dtype == torch.int32 and as_set(got.cpu()) == set(ref.topk(big, 500)[1].tolist())


@pytest.mark.parametrize("n", [4, 100_000, 300_007])
def test_cuda_topk_nan(n):
    x = torch.randn(n, generator=gen(14))
    x[1] = NAN
    x[n - 2] = -NAN
    xc = x.cuda()
    with pytest.raises(ValueError, match="2 NaN"):
        compress.topk(xc, 2)
    assert as_set(compress.topk(xc, 2, nan="largest").indices.cpu()) == {1, n - 2}
    assert as_set(compress.topk(xc, 1, by="value", nan="largest").indices.cpu()) == {1}
    assert as_set(compress.topk(-xc, 1, by="value", nan="largest").indices.cpu()) == {1}  # NaN of either sign
    assert as_set(compress.topk(xc, 3, nan="largest").indices.cpu()) == set(ref.topk(x, 3)[1].tolist())
    status = torch.ops.feedbackkit.topk(xc, 2, "abs", True, torch.int64)[2]
    assert status.is_cuda and status.item() == 2


@settings(max_examples=40, deadline=None)
@given(REPEATS, st.data())
def test_cuda_topk_property_small_arrays_with_repeats(values, draw):
    check_topk_property(values, draw, "cuda")


@pytest.mark.parametrize("kind", ["ties", "random"])
def test_cuda_topk_order_is_deterministic(kind):
    x = data(kind, 500_000, torch.float32, seed=3).cuda()
    for k in (4321, 100_000):
        first, second = compress.topk(x, k), compress.topk(x, k)
        assert torch.equal(first.indices, second.indices) and torch.equal(first.values, second.values)


# ---- ef21_step -------------------------------------------------------------------------------

STEP_SIZES = [(50, 1), (50, 50), (70_001, 70), (300_007, 300), (300_007, 30_000), (1_100_000, 1100)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "k"), STEP_SIZES)
def test_cuda_ef21_step_matches_reference_bitwise(dtype, n, k):
    grad = data("random", n, dtype, seed=1)
    g_i = data("random", n, dtype, seed=2)
    expected_state = g_i.clone()
    expected_indices, expected_values = ref.ef21_step(grad, expected_state, k)
    state = g_i.cuda()
    message = compress.ef21_step(grad.cuda(), state, k)
    assert torch.equal(state.cpu(), expected_state)
    assert message.indices.dtype == compress.message_index_dtype(n, dtype)
    assert message.packed.is_cuda and message.packed.numel() == compress.message_nbytes(n, k, dtype)
    got, expected = by_index(message.indices, message.values), by_index(expected_indices, expected_values)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    cpu_state = g_i.clone()
    cpu_message = compress.ef21_step(grad, cpu_state, k)
    assert torch.equal(state.cpu(), cpu_state)
    cpu = by_index(cpu_message.indices, cpu_message.values)
    assert torch.equal(got[0], cpu[0]) and torch.equal(got[1], cpu[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_ef21_step_with_ties_and_unaligned_views(dtype):
    n, k = 300_007, 5000
    grad = data("ties", n, dtype, seed=5)
    state = torch.zeros(n + 1, dtype=dtype, device="cuda")[1:]  # not 16-byte aligned
    expected_state = torch.zeros(n, dtype=dtype)
    expected = by_index(*ref.ef21_step(grad, expected_state, k))
    buffer = torch.zeros(n + 3, dtype=dtype, device="cuda")
    buffer[3:] = grad.cuda()
    message = compress.ef21_step(buffer[3:], state, k)
    assert torch.equal(state.cpu(), expected_state)
    got = by_index(message.indices, message.values)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_cuda_ef21_workers_track_their_gradients_and_the_mean():
    workers, n, k = 3, 4000, 400
    grads = [torch.randn(n, generator=gen(10 + w), dtype=torch.float64).cuda() for w in range(workers)]
    states = [torch.zeros(n, dtype=torch.float64, device="cuda") for _ in range(workers)]
    g = torch.zeros(n, dtype=torch.float64, device="cuda")
    for _ in range(n // k):
        messages = [compress.ef21_step(grads[w], states[w], k) for w in range(workers)]
        indices = torch.stack([m.indices for m in messages])
        values = torch.stack([m.values for m in messages])
        compress.decompress_add(g, indices, values, 1 / workers)
    for w in range(workers):
        assert torch.equal(states[w], grads[w])
    torch.testing.assert_close(g, torch.stack(grads).mean(0), rtol=0, atol=1e-14)


def test_cuda_ef21_message_is_deterministic():
    grad = data("ties", 1_000_000, torch.float32, seed=6).cuda()
    g_i = data("random", 1_000_000, torch.float32, seed=7).cuda() * 0
    first_state, second_state = g_i.clone(), g_i.clone()
    first = compress.ef21_step(grad, first_state, 10_000)
    second = compress.ef21_step(grad, second_state, 10_000)
    assert torch.equal(first.packed, second.packed) and torch.equal(first_state, second_state)


# ---- ef14_step -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "k"), STEP_SIZES)
def test_cuda_ef14_step_matches_reference_bitwise(dtype, n, k):
    grad = data("random", n, dtype, seed=3)
    error = data("random", n, dtype, seed=4) * 0.1
    expected_error = error.clone()
    expected = by_index(*ref.ef14_step(grad, expected_error, k, lr=0.3))
    state = error.cuda()
    message = compress.ef14_step(grad.cuda(), state, k, lr=0.3)
    assert torch.equal(state.cpu(), expected_error)
    got = by_index(message.indices, message.values)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    cpu_error = error.clone()
    compress.ef14_step(grad, cpu_error, k, lr=0.3)
    assert torch.equal(state.cpu(), cpu_error)


def test_cuda_ef14_step_with_ties_and_unaligned_views():
    n, k = 300_007, 777
    grad = data("ties", n, torch.float32, seed=8)
    error = torch.zeros(n + 2, device="cuda")[2:]
    expected_error = torch.zeros(n)
    expected = by_index(*ref.ef14_step(grad, expected_error, k, lr=1.0))
    message = compress.ef14_step(grad.cuda(), error, k, lr=1.0)
    assert torch.equal(error.cpu(), expected_error)
    got = by_index(message.indices, message.values)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


# ---- NaN -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1000, 100_000, 300_007])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_nan_gradient_raises_and_leaves_state_untouched(n, dtype):
    grad = torch.randn(n, generator=gen(5)).to(dtype)
    grad[n // 3] = NAN
    g_i = torch.randn(n, generator=gen(6)).to(dtype).cuda()
    before = g_i.clone()
    with pytest.raises(ValueError, match="ef21_step: 'grad' contains 1 NaN"):
        compress.ef21_step(grad.cuda(), g_i, 100)
    assert torch.equal(g_i, before)
    with pytest.raises(ValueError, match="ef14_step: 'grad' contains 1 NaN"):
        compress.ef14_step(grad.cuda(), g_i, 100, 0.5)
    assert torch.equal(g_i, before)
    # With nan="largest" the NaN entry is sent and g_i takes it, as on the CPU (NaN payloads may
    # differ between devices, so NaN is compared as NaN).
    cpu_state = before.cpu()
    cpu = compress.ef21_step(grad, cpu_state, 100, nan="largest")
    message = compress.ef21_step(grad.cuda(), g_i, 100, nan="largest")
    assert n // 3 in as_set(message.indices.cpu())
    assert as_set(message.indices.cpu()) == as_set(cpu.indices)
    assert torch.equal(g_i.cpu().isnan(), cpu_state.isnan())
    assert torch.equal(g_i.cpu().nan_to_num(), cpu_state.nan_to_num())
    error, cpu_error = before.clone(), before.cpu()
    message = compress.ef14_step(grad.cuda(), error, 100, 0.5, nan="largest")
    cpu = compress.ef14_step(grad, cpu_error, 100, 0.5, nan="largest")
    assert as_set(message.indices.cpu()) == as_set(cpu.indices)
    assert torch.equal(error.cpu(), cpu_error)


# ---- decompress_add --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("workers", "n", "k"), [(5, 1000, 300), (3, 100_000, 30_000), (1, 10, 10)])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_cuda_decompress_add_matches_reference_in_rank_order(dtype, workers, n, k, index_dtype):
    # Overlapping rows.
    indices = torch.stack([torch.randperm(n, generator=gen(w))[:k] for w in range(workers)])
    values = torch.randn(workers, k, generator=gen(9), dtype=torch.float64).to(dtype)
    out = torch.randn(n, generator=gen(8), dtype=torch.float64).to(dtype)
    expected = ref.decompress_add(out.clone(), indices, values, 1 / 3)
    got = compress.decompress_add(out.cuda(), indices.to(index_dtype).cuda(), values.cuda(), 1 / 3)
    assert torch.equal(got.cpu(), expected)


@pytest.mark.parametrize("k", [4, 5000])
def test_cuda_decompress_add_reads_strided_message_views(k):
    n, workers = 20_000, 3
    packed = torch.zeros(
        workers, compress.message_nbytes(n, k, torch.float32), dtype=torch.uint8, device="cuda"
    )
    indices, values = compress.unpack(packed, k, n, torch.float32)
    rows = torch.stack([torch.randperm(n, generator=gen(20 + w))[:k] for w in range(workers)])
    indices.copy_(rows)
    values.copy_(torch.randn(workers, k, generator=gen(23)))
    out = torch.randn(n, generator=gen(24))
    expected = ref.decompress_add(out.clone(), rows, values.cpu(), 0.5)
    assert torch.equal(compress.decompress_add(out.cuda(), indices, values, 0.5).cpu(), expected)
    transposed_indices = rows.t().contiguous().cuda().t()  # column-major [W, k] views
    transposed_values = values.t().contiguous().t()
    got = compress.decompress_add(out.cuda(), transposed_indices, transposed_values, 0.5)
    assert torch.equal(got.cpu(), expected)


def test_cuda_round_trip_of_packed_messages_matches_cpu():
    workers, n, k = 4, 300_007, 3000
    grads = [data("random", n, torch.bfloat16, seed=30 + w) for w in range(workers)]
    zeros = torch.zeros(n, dtype=torch.bfloat16)
    gpu_messages = [compress.ef21_step(g.cuda(), zeros.cuda(), k) for g in grads]
    cpu_messages = [compress.ef21_step(g, zeros.clone(), k) for g in grads]
    gpu_packed = torch.stack([m.packed for m in gpu_messages])
    cpu_packed = torch.stack([m.packed for m in cpu_messages])
    # The orders within a message differ between devices; the sums do not.
    gpu_out = torch.zeros(n, dtype=torch.bfloat16, device="cuda")
    compress.decompress_add(gpu_out, *compress.unpack(gpu_packed, k, n, torch.bfloat16), 1 / workers)
    cpu_out = torch.zeros(n, dtype=torch.bfloat16)
    compress.decompress_add(cpu_out, *compress.unpack(cpu_packed, k, n, torch.bfloat16), 1 / workers)
    assert torch.equal(gpu_out.cpu(), cpu_out)


# ---- torch.library conformance ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPCHECK))
def test_cuda_opcheck(name):
    args = tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in OPCHECK[name]())
    torch.library.opcheck(getattr(torch.ops.feedbackkit, name).default, args)


def test_cuda_ops_under_torch_compile():
    def step(grad, g_i):
        return torch.ops.feedbackkit.ef21_step(grad, g_i, 5, True)

    grad, g_i = torch.randn(100, generator=gen(7)).cuda(), torch.zeros(100, device="cuda")
    expected_state = g_i.clone()
    expected, _ = step(grad, expected_state)
    packed, _ = torch.compile(step, fullgraph=True)(grad, g_i)
    assert torch.equal(packed, expected) and torch.equal(g_i, expected_state)


@pytest.mark.slow
def test_cuda_topk_addresses_more_than_2_to_the_31_elements():
    n = 2**31 + 5
    x = torch.zeros(n, dtype=torch.bfloat16, device="cuda")  # 4 GiB
    x[n - 1], x[2**31 + 1], x[7] = -3.0, 2.0, 1.0
    values, indices = compress.topk(x, 3)
    assert as_set(indices.cpu()) == {7, 2**31 + 1, n - 1} and sorted(values.tolist()) == [-3.0, 1.0, 2.0]
    x[100:200] = 2.0  # ties with x[2**31 + 1]: the lowest indices win
    assert as_set(compress.topk(x, 50).indices.cpu()) == {n - 1, *range(100, 149)}
