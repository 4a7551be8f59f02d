"""Checkpoints of the hooks' state as per-rank shards, so nothing is lost.

EF21's g_i and EF14's e differ on every rank, so every rank writes its own shard
``rank{r}-of-{W}.pt`` into one directory: a dict {"format", "rank", "world_size", "state"} where
"state" is :meth:`CompressionState.state_dict` (tensors per parameter on the CPU, counters,
iteration). Shards are written to a temporary file and renamed, so a killed save never leaves a
truncated shard behind. Model and optimizer state are the caller's, saved as usual.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import torch

from .._checks import ArgumentError
from .state import CompressionState

FORMAT = "feedbackkit.distributed.compression/1"
_SHARD = re.compile(r"rank(\d+)-of-(\d+)\.pt")

Policy = Literal["restore", "reset"]


def shard_path(directory: str | os.PathLike[str], rank: int, world_size: int) -> Path:
    """Where rank `rank` of `world_size` keeps its shard."""
    return Path(directory) / f"rank{rank}-of-{world_size}.pt"


def save_state(state: CompressionState, directory: str | os.PathLike[str]) -> Path:
    """Writes this rank's shard of `state` into `directory` (created if needed) and returns its
    path. Every rank of the group must call it; no collective is involved."""
    rank, world_size = state.rank, state.world_size
    path = shard_path(directory, rank, world_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "rank": rank, "world_size": world_size, "state": state.state_dict()}
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save(payload, partial)
    os.replace(partial, path)
    return path


def _saved_shards(directory: Path) -> dict[int, set[int]]:
    """{world size: ranks} of the shards in `directory`."""
    shards: dict[int, set[int]] = {}
    for entry in directory.iterdir() if directory.is_dir() else ():
        match = _SHARD.fullmatch(entry.name)
        if match:
            shards.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
    return shards


def _read(directory: Path, rank: int, world_size: int) -> dict[str, Any]:
    path = shard_path(directory, rank, world_size)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"load_state: {path} is not a feedbackkit compression-state shard")
    if (payload["rank"], payload["world_size"]) != (rank, world_size):
        raise ValueError(
            f"load_state: {path} holds rank {payload['rank']} of {payload['world_size']}, not rank {rank} of "
            f"{world_size} as its name says"
        )
    return payload["state"]


def load_state(
    state: CompressionState, directory: str | os.PathLike[str], policy: Policy = "restore"
) -> None:
    """Loads this rank's shard from `directory` into `state`; every rank of the group calls it.

    - "restore": g_i / e, g, counters and the iteration count come back exactly, so training
      continues bit for bit (given the same data, model and optimizer state, and under
      ``granularity="bucket"`` the same DDP buckets; ``granularity="parameter"`` needs none). The
      checkpoint must come from the same world size, with a shard for every rank; otherwise
      ValueError names both world sizes.
    - "reset": keeps the iteration count (and the counters, when the world size is unchanged),
      discards the error-feedback state and restarts with a dense warm-up; works across world
      sizes.
    """
    if policy not in ("restore", "reset"):
        raise ArgumentError(f"load_state: 'policy' must be 'restore' or 'reset'; got {policy!r}")
    folder = Path(directory)
    shards = _saved_shards(folder)
    if not shards:
        raise FileNotFoundError(f"load_state: no shards named rank<r>-of-<W>.pt in {folder}")
    rank, world_size = state.rank, state.world_size
    if policy == "reset":
        if rank in shards.get(world_size, ()):
            saved = _read(folder, rank, world_size)
        else:
            other = min(shards)
            saved = {**_read(folder, min(shards[other]), other), "counters": {}}
        state.load_state_dict(saved, policy="reset")
        return
    if world_size not in shards:
        sizes = " and ".join(map(str, sorted(shards)))
        raise ValueError(
            f"load_state: the checkpoint in {folder} was written by world size {sizes}, but this process "
            f"group has world size {world_size}; error-feedback state is per rank and cannot be restored on "
            "another world size (use policy='reset' to discard it and restart with a dense warm-up)"
        )
    missing = sorted(set(range(world_size)) - shards[world_size])
    if missing:
        raise FileNotFoundError(
            f"load_state: the checkpoint in {folder} lacks the shards of rank(s) {missing} of {world_size}"
        )
    state.load_state_dict(_read(folder, rank, world_size), policy="restore")
