"""feedbackkit.distributed: DDP hooks against a single-process simulator of EF21 / EF14, per-rank
checkpoints (restore bit for bit, reset, world-size changes), errors that reach every rank, and
the byte counters.

Three spawns (gloo on 127.0.0.1) serve every multi-process test: two at world size 2 (train and
save; resume and error cases) and one at world size 4. Each spawned rank runs jobs from
tests/distributed_worker.py; the simulator below runs here. Both granularities are covered:
"bucket" (TopK over DDP's buckets) and "parameter" (TopK per parameter, whatever the buckets).

Why the comparison can be bitwise: a rank's local gradient is the same computation here and in
the worker (one thread each); sparse steps apply the reference worker steps and add messages in
rank order, as the hook does; dense steps sum over ranks, which is exact for two ranks (a + b in
either order) and, at the first iteration, for four (integer data and weights in multiples of
1/2 make every gradient a short dyadic number). The one bucket layout the simulator cannot know
in advance is DDP's, so it replays the layouts the hook recorded; under granularity="parameter"
nothing depends on the layout, so the simulator runs parameter by parameter without one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import distributed_worker as dw
import pytest
import torch

from feedbackkit import ArgumentError
from feedbackkit.compress import message_nbytes, unpack
from feedbackkit.distributed import (
    CompressionState,
    ParameterPart,
    bucket_k,
    parameter_part,
    sparse_saves_bytes,
    wire_bytes,
)
from feedbackkit.reference import compress as reference

STEPS = 6
SAVE_AT = 3

EF21_RATIO = {"ratio": 0.1, "min_bucket_numel": 21}  # the 20-element bucket is "small": dense
EF21_K_ZERO = {
    "k": 10,
    "min_bucket_numel": 0,
    "init": "zero",
    "warmup_steps": 2,
}  # k=10 of 20: no saving at W=2
EF14_RATIO = {"ratio": 0.1, "min_bucket_numel": 0}
CHECKPOINTED = {"ratio": 0.1, "min_bucket_numel": 0}

TRAJECTORIES_W2 = {
    "ef21-ratio": ("ef21", EF21_RATIO),
    "ef21-k-zero": ("ef21", EF21_K_ZERO),
    "ef14": ("ef14", EF21_RATIO),
}
TRAJECTORIES_W4 = {"ef21": ("ef21", EF14_RATIO), "ef14": ("ef14", EF14_RATIO)}

# granularity="parameter" on the model's 24-, 6-, 36-, 6-, 12- and 2-element parameters: at ratio 0.1
# the 2-element bias is sent dense (its 8-byte message would not be smaller than its values).
PER_PARAMETER = {"ratio": 0.1, "min_bucket_numel": 0, "granularity": "parameter"}
DROPPED = (3, ["1.weight", "0.bias"])  # EF21 re-initialises them densely, 0.bias next to a sparse 0.weight
# name: (method, state kwargs, parameters whose state is dropped before an iteration)
PARAMETER_W2: dict[str, tuple[str, dict[str, Any], tuple[int, list[str]] | None]] = {
    "ef21-parameter-reinit": ("ef21", PER_PARAMETER, DROPPED),
    # the biases (6, 6, 2 elements) are under the threshold: dense
    "ef14-parameter-threshold": ("ef14", {**PER_PARAMETER, "ratio": 0.25, "min_bucket_numel": 7}, None),
    # k=2: the 2-element bias is dense (k_p >= numel), the others sparse; g_i = g = 0 at first
    "ef21-parameter-k-zero": (
        "ef21",
        {"k": 2, "min_bucket_numel": 0, "init": "zero", "warmup_steps": 2, "granularity": "parameter"},
        None,
    ),
}
PARAMETER_W4 = {"ef14-parameter": ("ef14", PER_PARAMETER, None)}
GRANULARITIES = ("bucket", "parameter")


# ---- the simulator --------------------------------------------------------------------------------


def local_gradients(model: torch.nn.Module, rank: int, iteration: int) -> dict[str, torch.Tensor]:
    model.zero_grad()
    x, y = dw.batch(rank, iteration)
    dw.loss_fn(model(x), y).backward()
    return {name: p.grad.detach().reshape(-1).clone() for name, p in model.named_parameters()}


def rank_order_sum(flats: list[torch.Tensor]) -> torch.Tensor:
    total = flats[0].clone()
    for flat in flats[1:]:
        total += flat
    return total


def simulate(
    method: str,
    world_size: int,
    layouts: list[tuple[int, list[str]]] | None,
    steps: int,
    *,
    ratio: float | None = None,
    k: int | None = None,
    warmup_steps: int = 1,
    min_bucket_numel: int = 1024,
    init: str = "dense",
    granularity: str = "bucket",
    drop: tuple[int, list[str]] | None = None,
) -> dict[str, Any]:
    """EF21 / EF14 as the spec writes them, for `world_size` workers in one process, per bucket
    of the recorded DDP layouts (granularity="bucket") or per parameter (granularity="parameter",
    `layouts` None), with SGD on one replica. `drop` = (iteration, names) discards those
    parameters' state before that iteration. Returns the final parameters, every worker's state
    per parameter, and the counters the hook should report."""
    model = dw.make_model()
    optimizer = dw.make_optimizer(model)
    params = dict(model.named_parameters())
    per_parameter = granularity == "parameter"
    if per_parameter:
        assert layouts is None, "granularity='parameter' needs no bucket layout"
        layouts = [(i, [name]) for i in range(steps) for name in params]
    assert layouts is not None
    workers: list[dict[str, dict[str, torch.Tensor]]] = [{} for _ in range(world_size)]
    shared: dict[str, torch.Tensor] = {}  # EF21's replicated g
    counters = {"bytes_sent": 0, "dense_bytes": 0, "sparse_steps": 0, "dense_steps": 0}
    for iteration in range(steps):
        if drop is not None and iteration == drop[0]:
            for store in (*workers, shared):
                for name in drop[1]:
                    store.pop(name, None)
        grads = [local_gradients(model, rank, iteration) for rank in range(world_size)]
        for step_iteration, names in layouts:
            if step_iteration != iteration:
                continue
            sizes = [params[n].numel() for n in names]
            d = sum(sizes)
            kk = k if k is not None else max(1, math.ceil(round(ratio * d, 9)))
            flats = [torch.cat([grads[r][n] for n in names]) for r in range(world_size)]
            warm = iteration < warmup_steps
            if per_parameter:
                # the parameter's TopK message (8 bytes an entry) against its values padded to 8
                padded = -(-4 * d // 8) * 8
                no_saving = d < min_bucket_numel or kk >= d or 8 * kk >= padded
            else:
                # int32 index + float32 value per entry, all W messages against a ring all-reduce
                no_saving = d < min_bucket_numel or world_size * 8 * kk >= 2 * 4 * d
            dense = warm or no_saving
            known = all(n in workers[0] for n in names)
            if method == "ef21" and not dense and not known and init == "dense":
                dense = "init"  # parameters without state: initialise them with a dense step
            counters["dense_bytes"] += 4 * d
            if dense and per_parameter and not warm:  # the values travel inside the all-gather
                counters["bytes_sent"] += padded
            else:  # an all-reduce of the bucket or its TopK message
                counters["bytes_sent"] += 4 * d if dense else 8 * kk
            counters["dense_steps" if dense else "sparse_steps"] += 1

            def pieces(
                flat: torch.Tensor, names: list[str] = names, sizes: list[int] = sizes
            ) -> dict[str, torch.Tensor]:
                return dict(zip(names, flat.split(sizes), strict=True))

            def gather(store: dict[str, Any], what: str, names: list[str] = names) -> torch.Tensor:
                return torch.cat(
                    [store[n][what] if n in store else torch.zeros(params[n].numel()) for n in names]
                )

            if method == "ef21" and dense:
                result = rank_order_sum(flats) / world_size
                keep = dense == "init" or (iteration < warmup_steps and init == "dense")
                for rank in range(world_size):
                    for name, piece in pieces(flats[rank]).items():
                        workers[rank].pop(name, None)
                        if keep:
                            workers[rank][name] = {"g_i": piece.clone()}
                for name, piece in pieces(result).items():
                    shared.pop(name, None)
                    if keep:
                        shared[name] = piece.clone()
            elif method == "ef21":
                g = torch.cat([shared.get(n, torch.zeros(params[n].numel())) for n in names])
                messages = []
                for rank in range(world_size):
                    g_i = gather(workers[rank], "g_i")
                    messages.append(reference.ef21_step(flats[rank], g_i, kk))
                    workers[rank].update({n: {"g_i": p} for n, p in pieces(g_i).items()})
                indices, values = (torch.stack(parts) for parts in zip(*messages, strict=True))
                reference.decompress_add(g, indices, values, 1.0 / world_size)
                shared.update(pieces(g.clone()))
                result = g
            elif dense:  # EF14: the identity compressor sends e + grad and leaves e = 0
                if any(n in workers[0] for n in names):
                    flats = [flat + gather(workers[r], "e") for r, flat in enumerate(flats)]
                result = rank_order_sum(flats) / world_size
                for rank in range(world_size):
                    for name in names:
                        workers[rank].pop(name, None)
            else:
                messages = []
                for rank in range(world_size):
                    error = gather(workers[rank], "e")
                    messages.append(reference.ef14_step(flats[rank], error, kk, 1.0))
                    workers[rank].update({n: {"e": p} for n, p in pieces(error).items()})
                indices, values = (torch.stack(parts) for parts in zip(*messages, strict=True))
                result = reference.decompress_add(torch.zeros(d), indices, values, 1.0 / world_size)
            for name, piece in pieces(result).items():
                params[name].grad = piece.view_as(params[name]).clone()
        optimizer.step()
    states = [
        {n: {**s, **({"g": shared[n]} if n in shared else {})} for n, s in worker.items()}
        for worker in workers
    ]
    return {
        "params": {n: p.detach().clone() for n, p in params.items()},
        "states": states,
        "counters": counters,
    }


def assert_equal_tensors(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str
) -> None:
    assert actual.keys() == expected.keys(), what
    for name in expected:
        assert torch.equal(actual[name], expected[name]), (
            f"{what}: {name} differs, max |Δ| = {(actual[name] - expected[name]).abs().max().item()}"
        )


def assert_equal_states(
    actual: dict[Any, dict[str, torch.Tensor]], expected: dict[Any, dict[str, torch.Tensor]]
) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        assert_equal_tensors(actual[key], expected[key], f"state of {key!r}")


# ---- spawned runs (one per fixture) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers, so local gradients are the same bits
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("distributed")
    return {name: str(root / name) for name in ("ef21", "ef14", "ef21-parameter", "ef14-parameter")}


@pytest.fixture(scope="module")
def world2(checkpoints) -> dict[str, Any]:
    """World size 2: the trajectories, uninterrupted runs that save a checkpoint midway (with
    stable buckets, and per parameter with DDP's default buckets), and the messages of both
    granularities."""
    jobs = [
        ("trajectory", {"method": method, "steps": STEPS, "state_kwargs": kwargs})
        for method, kwargs in TRAJECTORIES_W2.values()
    ]
    jobs += [
        ("trajectory", {"method": method, "steps": STEPS, "state_kwargs": kwargs, "drop": drop})
        for method, kwargs, drop in PARAMETER_W2.values()
    ]
    jobs += [
        (
            "run_and_save",
            {
                "method": m,
                "directory": checkpoints[m],
                "save_at": SAVE_AT,
                "steps": STEPS,
                "state_kwargs": CHECKPOINTED,
            },
        )
        for m in ("ef21", "ef14")
    ]
    jobs += [
        (
            "run_and_save",
            {
                "method": m,
                "directory": checkpoints[f"{m}-parameter"],
                "save_at": SAVE_AT,
                "steps": STEPS,
                "state_kwargs": PER_PARAMETER,
                "stable_buckets": False,
            },
        )
        for m in ("ef21", "ef14")
    ]
    jobs += [
        (
            "first_messages",
            {"method": "ef21", "steps": 2, "state_kwargs": {**PER_PARAMETER, "granularity": g}},
        )
        for g in GRANULARITIES
    ]
    ranks = dw.spawn(jobs, world_size=2)
    names = [
        *TRAJECTORIES_W2,
        *PARAMETER_W2,
        "saved-ef21",
        "saved-ef14",
        "saved-ef21-parameter",
        "saved-ef14-parameter",
        *(f"messages-{g}" for g in GRANULARITIES),
    ]
    return {name: [results[j] for results in ranks] for j, name in enumerate(names)}


@pytest.fixture(scope="module")
def world2_again(world2, checkpoints) -> dict[str, Any]:
    """World size 2, fresh processes: resume from the checkpoints, then the error cases."""
    jobs: list[tuple[str, dict[str, Any]]] = [
        ("resume", {"method": m, "directory": checkpoints[m], "steps": STEPS, "state_kwargs": CHECKPOINTED})
        for m in ("ef21", "ef14")
    ]
    jobs += [
        (
            "resume",
            {
                "method": m,
                "directory": checkpoints[f"{m}-parameter"],
                "steps": STEPS,
                "state_kwargs": PER_PARAMETER,
                "stable_buckets": False,
            },
        )
        for m in ("ef21", "ef14")
    ]
    nan_kwargs = {"ratio": 0.1, "min_bucket_numel": 0}
    jobs += [
        ("nan_gradient", {"method": "ef21", "nan_at": 2, "state_kwargs": nan_kwargs}),
        ("nan_gradient", {"method": "ef14", "nan_at": 2, "state_kwargs": nan_kwargs}),
        ("nan_gradient", {"method": "ef21", "nan_at": 2, "state_kwargs": PER_PARAMETER}),
        ("nan_gradient", {"method": "ef14", "nan_at": 2, "state_kwargs": PER_PARAMETER}),
        ("nan_gradient", {"method": "ef21", "nan_at": 0, "state_kwargs": nan_kwargs}),
        ("bad_k", {"k": 37, "steps": 2}),
    ]
    ranks = dw.spawn(jobs, world_size=2)
    names = [
        "resumed-ef21",
        "resumed-ef14",
        "resumed-ef21-parameter",
        "resumed-ef14-parameter",
        "nan-sparse-ef21",
        "nan-sparse-ef14",
        "nan-sparse-ef21-parameter",
        "nan-sparse-ef14-parameter",
        "nan-dense",
        "bad-k",
    ]
    return {name: [results[j] for results in ranks] for j, name in enumerate(names)}


@pytest.fixture(scope="module")
def world4(world2, checkpoints) -> dict[str, Any]:
    """World size 4: trajectories; the world-size-2 checkpoint refused on restore, taken on reset."""
    jobs: list[tuple[str, dict[str, Any]]] = [
        ("trajectory", {"method": method, "steps": STEPS, "state_kwargs": kwargs})
        for method, kwargs in TRAJECTORIES_W4.values()
    ]
    jobs += [
        ("trajectory", {"method": method, "steps": STEPS, "state_kwargs": kwargs, "drop": drop})
        for method, kwargs, drop in PARAMETER_W4.values()
    ]
    jobs += [
        ("load_error", {"directory": checkpoints["ef21"], "policy": "restore"}),
        ("load_error", {"directory": checkpoints["ef21"], "policy": "reset"}),
        (
            "reset_and_train",
            {"method": "ef21", "directory": checkpoints["ef21"], "steps": 3, "state_kwargs": CHECKPOINTED},
        ),
    ]
    ranks = dw.spawn(jobs, world_size=4)
    names = [*TRAJECTORIES_W4, *PARAMETER_W4, "restore-error", "reset-error", "reset"]
    return {name: [results[j] for results in ranks] for j, name in enumerate(names)}


# ---- trajectories ---------------------------------------------------------------------------------


def check_against_simulator(
    runs: list[dict[str, Any]], method: str, kwargs: dict[str, Any]
) -> dict[str, Any]:
    world_size = len(runs)
    layouts = runs[0]["layouts"]
    assert all(run["layouts"] == layouts for run in runs), "ranks saw different buckets"
    assert {i for i, _ in layouts} == set(range(STEPS))
    assert len({tuple(names) for i, names in layouts if i == 0}) < len(
        {tuple(n) for i, n in layouts if i == 1}
    ), "DDP should rebuild its single first bucket into several, exercising state assembly by parameter"
    simulated = simulate(method, world_size, layouts, STEPS, **kwargs)
    for rank, run in enumerate(runs):
        assert_equal_tensors(run["params"], simulated["params"], f"rank {rank} parameters")
        assert_equal_states(run["state"], simulated["states"][rank])
        assert run["counters"] == simulated["counters"], f"rank {rank} counters"
    return simulated


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAJECTORIES_W2))
def test_world2_trajectory_matches_simulator_bitwise(world2, single_thread, name):
    method, kwargs = TRAJECTORIES_W2[name]
    simulated = check_against_simulator(world2[name], method, kwargs)
    counters = simulated["counters"]
    assert counters["sparse_steps"] > 0
    warmup_buckets = 1 + 3 * (name == "ef21-k-zero")
    assert counters["dense_steps"] == warmup_buckets + STEPS - 1 - (name == "ef21-k-zero"), (
        "one bucket falls back"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAJECTORIES_W4))
def test_world4_trajectory_matches_simulator_bitwise(world4, single_thread, name):
    method, kwargs = TRAJECTORIES_W4[name]
    simulated = check_against_simulator(world4[name], method, kwargs)
    assert simulated["counters"]["sparse_steps"] == 3 * (STEPS - 1)


@pytest.mark.slow
def test_g_is_bitwise_identical_on_every_rank(world2, world4):
    for runs in (world2["ef21-ratio"], world2["ef21-k-zero"], world4["ef21"]):
        first = runs[0]["state"]
        assert first, "no EF21 state was kept"
        for run in runs[1:]:
            assert run["state"].keys() == first.keys()
            for name, tensors in first.items():
                assert torch.equal(run["state"][name]["g"], tensors["g"]), name
            assert any(not torch.equal(run["state"][n]["g_i"], first[n]["g_i"]) for n in first), (
                "g_i is per rank"
            )
            assert_equal_tensors(run["params"], runs[0]["params"], "parameters across ranks")


@pytest.mark.slow
def test_counters_are_the_message_and_bucket_bytes(world2):
    # ef21-ratio at W=2: buckets of 20 (small: dense), 36 (k=4) and 30 (k=3) elements after the
    # single 86-element warm-up bucket; float32 values with int32 indices, 8 bytes an entry.
    layouts = world2["ef21-ratio"][0]["layouts"]
    assert sorted(
        sum(dw.make_model().get_parameter(n).numel() for n in names) for i, names in layouts if i == 1
    ) == [
        20,
        30,
        36,
    ]
    expected = {
        "dense_bytes": 4 * 86 + (STEPS - 1) * 4 * (20 + 36 + 30),
        "bytes_sent": 4 * 86 + (STEPS - 1) * (4 * 20 + 8 * 4 + 8 * 3),
        "sparse_steps": (STEPS - 1) * 2,
        "dense_steps": 1 + (STEPS - 1),
    }
    assert world2["ef21-ratio"][0]["counters"] == expected
    assert world2["ef21-ratio"][1]["counters"] == expected


# ---- granularity="parameter" ----------------------------------------------------------------------


def by_name(run: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """The run's state keyed by parameter name: position keys follow the order in which DDP first
    presented the parameters (the layouts of iteration 0)."""
    order = [name for i, names in run["layouts"] if i == 0 for name in names]
    return {key if isinstance(key, str) else order[key]: tensors for key, tensors in run["state"].items()}


def check_per_parameter(
    runs: list[dict[str, Any]],
    method: str,
    kwargs: dict[str, Any],
    drop: tuple[int, list[str]] | None = None,
) -> dict[str, Any]:
    simulated = simulate(method, len(runs), None, STEPS, **kwargs, drop=drop)
    for rank, run in enumerate(runs):
        assert_equal_tensors(run["params"], simulated["params"], f"rank {rank} parameters")
        assert_equal_states(by_name(run), simulated["states"][rank])
        assert run["counters"] == simulated["counters"], f"rank {rank} counters"
    return simulated


@pytest.mark.slow
@pytest.mark.parametrize("name", [*PARAMETER_W2, *PARAMETER_W4])
def test_parameter_granularity_matches_layout_free_simulator_bitwise(world2, world4, single_thread, name):
    method, kwargs, drop = {**PARAMETER_W2, **PARAMETER_W4}[name]
    runs = (world2 if name in PARAMETER_W2 else world4)[name]
    simulated = check_per_parameter(runs, method, kwargs, drop)
    counters = simulated["counters"]
    assert counters["sparse_steps"] > 0 and counters["dense_steps"] > 6, "sparse and dense parameters"
    assert len({tuple(names) for i, names in runs[0]["layouts"] if i == STEPS - 1}) > 1, "several buckets"
    if drop is not None:  # the dropped parameters were re-initialised and hold state again
        assert set(drop[1]) <= by_name(runs[0]).keys()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ef21", "ef14"])
def test_parameter_granularity_resumes_bitwise_with_default_ddp_buckets(
    world2, world2_again, single_thread, method
):
    name = f"{method}-parameter"
    whole_runs = world2[f"saved-{name}"]
    check_per_parameter(whole_runs, method, PER_PARAMETER)
    for rank in range(2):
        whole, resumed = whole_runs[rank], world2_again[f"resumed-{name}"][rank]
        # find_unused_parameters=False: the fresh DDP's first iteration uses one bucket for all six
        # parameters, the uninterrupted run its rebuilt buckets
        assert [names for i, names in resumed["layouts"] if i == SAVE_AT] == [
            [n for n, _ in dw.make_model().named_parameters()]
        ]
        assert len([names for i, names in whole["layouts"] if i == SAVE_AT]) == 3
        assert resumed["start"] == SAVE_AT
        assert_equal_tensors(resumed["params"], whole["params"], f"rank {rank} parameters")
        assert whole["state"], "the run kept no error-feedback state"
        assert_equal_states(resumed["state"], whole["state"])
        assert resumed["counters"] == whole["counters"]
        assert resumed["iteration"] == whole["iteration"] == STEPS


def selected(names: list[str], message: torch.Tensor, granularity: str) -> set[int]:
    """The bucket positions a rank's message sends (ratio 0.1, float32)."""
    model = dw.make_model()
    sizes = [model.get_parameter(n).numel() for n in names]
    numel = sum(sizes)
    if granularity == "bucket":
        k = bucket_k(numel, ratio=0.1, k=None)
        assert message.numel() == message_nbytes(numel, k, torch.float32)
        return set(unpack(message, k, numel, torch.float32)[0].tolist())
    offsets = [sum(sizes[:j]) for j in range(len(sizes))]
    parts = [parameter_part(d, ratio=0.1, k=None, min_numel=0) for d in sizes]
    assert message.numel() == sum(part.nbytes for part in parts), "bytes sent = the sum of the parts"
    chosen: set[int] = set()
    start = 0
    for j in sorted(range(len(sizes)), key=lambda j: parts[j].sparse):  # dense parts first
        piece = message[start : start + parts[j].nbytes]
        start += parts[j].nbytes
        if parts[j].sparse:
            indices = unpack(piece, parts[j].k, sizes[j], torch.float32)[0].tolist()
            assert len(set(indices)) == parts[j].k and all(0 <= i < sizes[j] for i in indices)
            chosen |= {offsets[j] + i for i in indices}
        else:
            chosen |= set(range(offsets[j], offsets[j] + sizes[j]))
    return chosen


@pytest.mark.slow
def test_granularities_send_different_messages_on_a_multi_parameter_bucket(world2):
    for rank in range(2):
        # the first sparse iteration's all-gathers; "bucket" all-reduces the 2-element bucket instead
        bucket, parameter = (
            {tuple(names): message for i, names, message in world2[f"messages-{g}"][rank] if i == 1}
            for g in GRANULARITIES
        )
        assert bucket.keys() < parameter.keys()
        multi = [names for names in bucket if len(names) > 1]
        assert len(multi) == 2, "the buckets of two parameters each"
        for names in multi:
            sent = selected(list(names), bucket[names], "bucket")
            assert sent != selected(list(names), parameter[names], "parameter")


def test_parameter_part_sends_topk_only_when_smaller_than_the_values():
    # float32 with int32 indices: 8 bytes an entry against 4 bytes a value, both padded to 8
    assert parameter_part(24, ratio=0.1, k=None, min_numel=0) == ParameterPart(True, 3, 24)
    assert parameter_part(2, ratio=0.1, k=None, min_numel=0) == ParameterPart(False, 2, 8)  # 8 ≮ 8
    assert parameter_part(3, ratio=0.1, k=None, min_numel=0) == ParameterPart(True, 1, 8)  # 8 < 16
    assert parameter_part(5, ratio=0.5, k=None, min_numel=0) == ParameterPart(False, 5, 24)  # padded
    assert parameter_part(100, ratio=0.1, k=None, min_numel=101) == ParameterPart(False, 100, 400)
    assert parameter_part(6, ratio=None, k=8, min_numel=0) == ParameterPart(False, 6, 24)  # k > numel
    assert parameter_part(1000, torch.bfloat16, ratio=None, k=10, min_numel=0) == ParameterPart(True, 10, 64)
    with pytest.raises(ArgumentError):
        parameter_part(0, ratio=0.1, k=None, min_numel=0)


# ---- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ef21", "ef14"])
def test_resume_in_fresh_processes_matches_uninterrupted_run_bitwise(
    world2, world2_again, method, checkpoints
):
    assert sorted(p.name for p in (Path(checkpoints[method]) / "hook").iterdir()) == [
        "rank0-of-2.pt",
        "rank1-of-2.pt",
    ]
    for rank in range(2):
        whole, resumed = world2[f"saved-{method}"][rank], world2_again[f"resumed-{method}"][rank]
        assert resumed["start"] == SAVE_AT
        assert_equal_tensors(resumed["params"], whole["params"], f"rank {rank} parameters")
        assert whole["state"], "the run kept no error-feedback state"
        assert_equal_states(resumed["state"], whole["state"])
        assert resumed["counters"] == whole["counters"]
        assert resumed["iteration"] == whole["iteration"] == STEPS
        assert resumed["layouts"] == [(i, names) for i, names in whole["layouts"] if i >= SAVE_AT]


@pytest.mark.slow
def test_restore_with_another_world_size_names_both(world4):
    for message in world4["restore-error"]:
        assert message.startswith("ValueError")
        assert "world size 2" in message and "world size 4" in message
    assert all(r == "" for r in world4["reset-error"]), "policy='reset' should accept another world size"


@pytest.mark.slow
def test_reset_policy_restarts_with_dense_warmup(world2, world4, single_thread):
    runs = world4["reset"]
    for run in runs:
        assert run["loaded"] == {
            "iteration": SAVE_AT,
            "keys": [],
            "counters": {"bytes_sent": 0, "dense_bytes": 0, "sparse_steps": 0, "dense_steps": 0},
        }
    model = dw.make_model()
    sizes = [
        sum(model.get_parameter(n).numel() for n in names) for i, names in runs[0]["history"][0]["layouts"]
    ]
    falls_back = [4 * bucket_k(d, ratio=CHECKPOINTED["ratio"], k=None) >= d for d in sizes]
    assert not all(falls_back)
    first, second = (runs[0]["history"][j]["counters"] for j in (0, 1))
    assert (first["dense_steps"], first["sparse_steps"]) == (len(sizes), 0), (
        "the first step after reset is dense"
    )
    assert (second["dense_steps"], second["sparse_steps"]) == (
        len(sizes) + sum(falls_back),
        len(sizes) - sum(falls_back),
    ), "then compression resumes"
    # After the dense step, g_i is the rank's own gradient and g their mean (identical everywhere).
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(runs[0]["history"][0]["params_before"][name])
    grads = [local_gradients(model, rank, SAVE_AT) for rank in range(4)]
    for rank, run in enumerate(runs):
        state = run["history"][0]["state"]
        for name, tensors in state.items():
            assert torch.equal(tensors["g_i"], grads[rank][name])
            assert torch.equal(tensors["g"], runs[0]["history"][0]["state"][name]["g"])
            torch.testing.assert_close(tensors["g"], sum(g[name] for g in grads) / 4, rtol=1e-6, atol=1e-6)


# ---- errors ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ef21", "ef14", "ef21-parameter", "ef14-parameter"])
def test_nan_gradient_on_one_rank_raises_on_every_rank(world2_again, name):
    method = name[:4]
    runs = world2_again[f"nan-sparse-{name}"]
    for rank, run in enumerate(runs):
        assert "NaN" in run["error"] and "rank(s) [1]" in run["error"], run["error"]
        before, after = run["before"]["state"], run["after"]["state"]
        assert before.keys() == after.keys() and before
        for name in before:
            if method == "ef21":  # no rank applied the step to the replicated g
                assert torch.equal(after[name]["g"], before[name]["g"])
            if rank == 1:  # the rank with the NaN left its own state untouched
                assert_equal_tensors(after[name], before[name], f"rank 1 state of {name}")


@pytest.mark.slow
def test_nan_gradient_in_dense_step_raises_everywhere_and_keeps_no_state(world2_again):
    for run in world2_again["nan-dense"]:
        assert "NaN" in run["error"] and "all-reduced gradient" in run["error"], run["error"]
        assert run["after"]["state"] == {} and run["before"]["state"] == {}


@pytest.mark.slow
def test_k_larger_than_a_bucket_is_an_error(world2_again):
    for message in world2_again["bad-k"]:
        assert "k=37 exceeds the" in message and "elements of bucket" in message, message


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"ratio": 0.0}, "'ratio'"),
        ({"ratio": -0.5}, "'ratio'"),
        ({"ratio": 1.5}, "'ratio'"),
        ({"ratio": float("nan")}, "'ratio'"),
        ({"k": 0}, "'k'"),
        ({"k": -3}, "'k'"),
        ({"k": 2.5}, "'k'"),
        ({"k": True}, "'k'"),
        ({"k": 4, "ratio": 0.1}, "not both"),
        ({"warmup_steps": 0}, "'warmup_steps'"),
        ({"min_bucket_numel": -1}, "'min_bucket_numel'"),
        ({"init": "ones"}, "'init'"),
        ({"granularity": "layer"}, "'granularity'"),
    ],
)
def test_state_rejects_bad_arguments(kwargs, needle):
    with pytest.raises(ArgumentError, match=needle):
        CompressionState(**kwargs)


# ---- byte accounting ------------------------------------------------------------------------------


def test_wire_bytes_are_ring_all_gather_against_ring_all_reduce():
    # float32: int32 index + value = 8 bytes an entry; 3 of 4 messages forwarded per rank
    assert wire_bytes(1000, 10, 4) == (3 * 80.0, 2 * 3 / 4 * 4000)
    assert wire_bytes(1000, 10, 4, torch.bfloat16) == (3 * 64.0, 2 * 3 / 4 * 2000)  # 60 bytes padded to 64
    assert wire_bytes(1000, 10, 2, torch.float64) == (160.0, 8000.0)  # int64 indices next to float64
    assert wire_bytes(50, 5, 1) == (0.0, 0.0)
    with pytest.raises(ArgumentError):
        wire_bytes(10, 11, 2)


@pytest.mark.parametrize(
    ("numel", "k", "world_size", "saves"),
    [
        (800, 199, 4, True),
        (800, 200, 4, False),
        (800, 399, 2, True),
        (800, 400, 2, False),
        (800, 1, 1, False),
    ],
)
def test_sparse_is_chosen_only_when_it_sends_fewer_bytes(numel, k, world_size, saves):
    assert sparse_saves_bytes(numel, k, world_size, torch.float32) is saves
    sparse, dense = wire_bytes(numel, k, world_size)
    assert (sparse < dense) is saves or world_size == 1


def test_bucket_k_rounds_the_ratio_up_without_binary_noise():
    assert bucket_k(30, ratio=0.1, k=None) == 3
    assert bucket_k(31, ratio=0.1, k=None) == 4
    assert bucket_k(5, ratio=0.01, k=None) == 1
    assert bucket_k(5, ratio=None, k=2) == 2
