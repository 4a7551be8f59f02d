"""What runs inside the processes that tests/test_distributed.py spawns: the launcher, the tiny
model and its per-rank data (shared with the single-process simulator in the test), and the jobs.

Each spawned rank runs a list of jobs (name, keyword arguments) in one gloo process group and
returns a list of results, so one spawn (about 4 s of CPU per process to import torch and the
modules DDP pulls in) serves several checks.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import feedbackkit.distributed.hooks as hook_module
from feedbackkit.distributed import CompressionState, ef14_hook, ef21_hook, load_state, save_state

COLLECTIVE_TIMEOUT_S = 30.0
HOOKS = {"ef21": ef21_hook, "ef14": ef14_hook}
LR, MOMENTUM = 0.0625, 0.5


# ---- launcher -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(jobs: list[tuple[str, dict[str, Any]]], world_size: int, timeout: float = 90.0) -> list[list[Any]]:
    """Runs `jobs` on `world_size` spawned ranks (gloo, 127.0.0.1) and returns result[rank][job].

    A rank that raises makes this raise with its traceback; ranks still running after `timeout`
    seconds (a deadlock) are killed and TimeoutError is raised."""
    context = torch.multiprocessing.get_context("spawn")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="feedbackkit-dist-") as out:
        processes = [
            context.Process(target=_rank_main, args=(rank, world_size, port, out, jobs), daemon=True)
            for rank in range(world_size)
        ]
        for process in processes:
            process.start()
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
        for rank in hung:
            processes[rank].kill()
            processes[rank].join()
        outcomes = [_read_outcome(Path(out) / f"{rank}.pt") for rank in range(world_size)]
    errors = [f"rank {rank}:\n{o['error']}" for rank, o in enumerate(outcomes) if o and "error" in o]
    if errors:
        raise RuntimeError("a spawned rank raised:\n" + "\n".join(errors))
    if hung:
        raise TimeoutError(f"ranks {hung} of {world_size} still ran after {timeout:.0f} s (deadlock?)")
    lost = [(rank, processes[rank].exitcode) for rank, o in enumerate(outcomes) if o is None]
    if lost:
        raise RuntimeError(f"ranks exited without a result (rank, exit code): {lost}")
    return [o["results"] for o in outcomes]


def _read_outcome(path: Path) -> dict[str, Any] | None:
    return torch.load(path, weights_only=False) if path.exists() else None


def _rank_main(
    rank: int, world_size: int, port: int, out: str, jobs: list[tuple[str, dict[str, Any]]]
) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    outcome: dict[str, Any]
    try:
        dist.init_process_group(
            "gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S)
        )
        outcome = {"results": [JOBS[name](rank, world_size, **kwargs) for name, kwargs in jobs]}
    except BaseException:
        outcome = {"error": traceback.format_exc()}
    partial = Path(out) / f".{rank}.partial"
    torch.save(outcome, partial)
    partial.rename(Path(out) / f"{rank}.pt")
    # Skip the interpreter's teardown: seconds per process with torch loaded, and the gloo
    # threads can crash it after the result is safely written.
    os._exit(0)


# ---- model and data (also used by the simulator) ---------------------------------------------------

LAYERS = ((4, 6), (6, 6), (6, 2))
BATCH = 8


def make_model() -> torch.nn.Sequential:
    """Three linear layers whose weights are multiples of 1/2 in [−1/2, 1/2]: with integer inputs
    every gradient at the initial point is a multiple of 2^-8 below 2^11, so a sum over ranks is
    exact in float32 whatever order gloo adds in (the dense warm-up step is then reproducible)."""
    generator = torch.Generator().manual_seed(1234)
    model = torch.nn.Sequential(*(torch.nn.Linear(n_in, n_out) for n_in, n_out in LAYERS))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-1, 2, p.shape, generator=generator).float() / 2)
    return model


def batch(rank: int, iteration: int, nan: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-specific integer data, shifted by rank so that the workers' gradients differ."""
    generator = torch.Generator().manual_seed(1000 * rank + iteration)
    x = torch.randint(-3, 4, (BATCH, LAYERS[0][0]), generator=generator).float().clamp(-3 + rank, 3)
    y = torch.randint(-4, 5, (BATCH, LAYERS[-1][1]), generator=generator).float() + rank
    if nan:
        x[0, 0] = float("nan")
    return x, y


def loss_fn(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((output - y) ** 2).mean()


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def parameter_names(model: torch.nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


# ---- jobs -----------------------------------------------------------------------------------------


class _Run:
    """A DDP model with a compression hook that records the bucket layout of every hook call."""

    def __init__(self, method: str, state_kwargs: dict[str, Any], ddp_kwargs: dict[str, Any], named: bool):
        self.model = make_model()
        self.names = parameter_names(self.model)
        self.state = CompressionState(**state_kwargs, model=self.model if named else None)
        self.ddp = DistributedDataParallel(self.model, **ddp_kwargs)
        self.optimizer = make_optimizer(self.model)
        self.layouts: list[tuple[int, list[str]]] = []  # (iteration, parameter names) per hook call
        hook = HOOKS[method]

        # Unannotated: under `from __future__ import annotations` DDP would see strings and refuse.
        def recording_hook(state, bucket):
            self.layouts.append((state.iteration, [self.names[id(p)] for p in bucket.parameters()]))
            return hook(state, bucket)

        self.ddp.register_comm_hook(self.state, recording_hook)

    def step(self, rank: int, iteration: int, nan: bool = False) -> None:
        x, y = batch(rank, iteration, nan)
        self.optimizer.zero_grad()
        loss_fn(self.ddp(x), y).backward()
        self.optimizer.step()

    def snapshot(self) -> dict[str, Any]:
        """Parameters, this rank's state per parameter key, counters and layouts."""
        return {
            "params": {n: p.detach().clone() for n, p in self.model.named_parameters()},
            "state": {
                key: {t: v.clone() for t, v in self.state.param_state(key).items()}
                for key in self.state.param_keys()
            },
            "counters": asdict(self.state.counters),
            "iteration": self.state.iteration,
            "layouts": list(self.layouts),
        }


DDP_SMALL_BUCKETS = {"bucket_cap_mb": 64 / 2**20}  # 16 float32 per bucket: several buckets


def trajectory(
    rank: int,
    world_size: int,
    method: str,
    steps: int,
    state_kwargs: dict[str, Any],
    drop: tuple[int, list[str]] | None = None,
) -> dict[str, Any]:
    """`steps` SGD steps of DDP with the hook; DDP rebuilds its buckets after the first. With
    `drop` = (iteration, names), the state of those parameters is discarded (through
    state_dict / load_state_dict) before that iteration."""
    run = _Run(method, state_kwargs, DDP_SMALL_BUCKETS, named=True)
    for iteration in range(steps):
        if drop is not None and iteration == drop[0]:
            saved = run.state.state_dict()
            saved["params"] = {key: t for key, t in saved["params"].items() if key not in drop[1]}
            run.state.load_state_dict(saved)
        run.step(rank, iteration)
    return run.snapshot()


def first_messages(
    rank: int, world_size: int, method: str, steps: int, state_kwargs: dict[str, Any]
) -> list[tuple[int, list[str], torch.Tensor]]:
    """(iteration, parameter names, this rank's message) of every all-gather in `steps` steps on
    stable buckets, captured from the hooks' collective."""
    run = _Run(method, state_kwargs, DDP_STABLE_BUCKETS, named=True)
    sent: list[tuple[int, list[str], torch.Tensor]] = []
    gather = hook_module._all_gather

    def spy(output: torch.Tensor, message: torch.Tensor, group: Any) -> Any:
        iteration, names = run.layouts[-1]
        sent.append((iteration, names, message.clone()))
        return gather(output, message, group)

    hook_module._all_gather = spy
    try:
        for iteration in range(steps):
            run.step(rank, iteration)
    finally:
        hook_module._all_gather = gather
    return sent


# Stable buckets: with find_unused_parameters DDP keeps its first bucket layout, so a fresh DDP
# after a restart sees the buckets the uninterrupted run saw (else its first iteration would use
# one big bucket, and TopK over other buckets is a different, equally valid, trajectory).
DDP_STABLE_BUCKETS = {**DDP_SMALL_BUCKETS, "find_unused_parameters": True}


def run_and_save(
    rank: int,
    world_size: int,
    method: str,
    directory: str,
    save_at: int,
    steps: int,
    state_kwargs: dict[str, Any],
    stable_buckets: bool = True,
) -> dict[str, Any]:
    """An uninterrupted run of `steps` steps that saves model, optimizer and hook state after
    `save_at` steps (state keyed by position: no model given). Without `stable_buckets` DDP runs
    with its default find_unused_parameters=False, so a fresh DDP's first iteration uses other
    buckets than this run's later ones."""
    ddp_kwargs = DDP_STABLE_BUCKETS if stable_buckets else DDP_SMALL_BUCKETS
    run = _Run(method, state_kwargs, ddp_kwargs, named=False)
    for iteration in range(steps):
        if iteration == save_at:
            save_state(run.state, Path(directory) / "hook")
            torch.save(
                {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict()},
                Path(directory) / f"train-rank{rank}.pt",
            )
        run.step(rank, iteration)
    return run.snapshot()


def resume(
    rank: int,
    world_size: int,
    method: str,
    directory: str,
    steps: int,
    state_kwargs: dict[str, Any],
    stable_buckets: bool = True,
) -> dict[str, Any]:
    """A fresh run that loads everything `run_and_save` saved and continues to `steps` steps."""
    ddp_kwargs = DDP_STABLE_BUCKETS if stable_buckets else DDP_SMALL_BUCKETS
    run = _Run(method, state_kwargs, ddp_kwargs, named=False)
    saved = torch.load(Path(directory) / f"train-rank{rank}.pt", weights_only=True)
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    load_state(run.state, Path(directory) / "hook")
    start = run.state.iteration
    for iteration in range(start, steps):
        run.step(rank, iteration)
    return {**run.snapshot(), "start": start}


def load_error(rank: int, world_size: int, directory: str, policy: str) -> str:
    """The error loading the hook checkpoint in `directory` raises ('' if none)."""
    state = CompressionState(ratio=0.25)
    try:
        load_state(state, Path(directory) / "hook", policy=policy)
    except (ValueError, FileNotFoundError) as error:
        return f"{type(error).__name__}: {error}"
    return ""


def reset_and_train(
    rank: int, world_size: int, method: str, directory: str, steps: int, state_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Loads model and optimizer from `directory`, the hook state with policy="reset", and trains
    `steps` more steps, recording counters, state keys and this rank's own gradients."""
    run = _Run(method, state_kwargs, DDP_STABLE_BUCKETS, named=True)
    saved = torch.load(Path(directory) / "train-rank0.pt", weights_only=True)
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    load_state(run.state, Path(directory) / "hook", policy="reset")
    loaded = {
        "iteration": run.state.iteration,
        "keys": run.state.param_keys(),
        "counters": asdict(run.state.counters),
    }
    start = run.state.iteration
    history = []
    for iteration in range(start, start + steps):
        params = {n: p.detach().clone() for n, p in run.model.named_parameters()}
        run.step(rank, iteration)
        history.append({**run.snapshot(), "params_before": params})
    return {"loaded": loaded, "history": history}


def nan_gradient(
    rank: int, world_size: int, method: str, nan_at: int, state_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Trains until rank 1's data holds NaN at iteration `nan_at`; returns the error each rank
    saw and the hook state just before and after that step."""
    run = _Run(method, state_kwargs, DDP_SMALL_BUCKETS, named=True)
    for iteration in range(nan_at):
        run.step(rank, iteration)
    before = run.snapshot()
    error = ""
    try:
        run.step(rank, nan_at, nan=rank == 1)
    except Exception as caught:
        error = f"{type(caught).__name__}: {caught}"
    return {"error": error, "before": before, "after": run.snapshot()}


def bad_k(rank: int, world_size: int, k: int, steps: int) -> str:
    """The error of training with a k larger than some bucket."""
    run = _Run("ef21", {"k": k, "min_bucket_numel": 0}, DDP_SMALL_BUCKETS, named=True)
    try:
        for iteration in range(steps):
            run.step(rank, iteration)
    except Exception as caught:
        return f"{type(caught).__name__}: {caught}"
    return ""


JOBS: dict[str, Callable[..., Any]] = {
    "trajectory": trajectory,
    "run_and_save": run_and_save,
    "resume": resume,
    "load_error": load_error,
    "reset_and_train": reset_and_train,
    "nan_gradient": nan_gradient,
    "bad_k": bad_k,
    "first_messages": first_messages,
}
