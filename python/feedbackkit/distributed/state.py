"""The error-feedback state behind :func:`~feedbackkit.distributed.ef21_hook` and
:func:`~feedbackkit.distributed.ef14_hook`, keyed by parameter.

DDP hands its hook one flat bucket at a time and rebuilds the buckets after the first iteration,
so bucket indices are not stable. The state therefore lives per parameter: a key is the
parameter's name in ``model.named_parameters()`` when a model is given, else its position in the
order DDP first presents the parameters. For speed it is stored as one flat tensor per bucket
layout (under ``granularity="parameter"``: per set of a bucket's parameters sent as TopK
messages, each parameter's piece a contiguous view); when a bucket with a new parameter set
arrives, its flat tensors are assembled from the per-parameter pieces (views into the flat
tensors of the old layouts, or pieces loaded from a checkpoint).
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.distributed as dist

from .._checks import ArgumentError

Method = Literal["ef21", "ef14"]
Init = Literal["dense", "zero"]
Granularity = Literal["bucket", "parameter"]
ParamKey = str | int

#: The tensors kept per parameter: EF21 keeps this worker's estimate g_i and the replicated
#: aggregate g; EF14 keeps this worker's error e.
STATE_TENSORS: dict[str, tuple[str, ...]] = {"ef21": ("g_i", "g"), "ef14": ("e",)}


@dataclass
class Counters:
    """What this rank has sent, summed over buckets and steps. Byte counts are payloads: the
    packed message on an all-gather step (exactly the bytes this rank put into it, padding
    included), the whole bucket on an all-reduce (:func:`wire_bytes` turns payloads into bytes on
    the wire of a ring algorithm).

    Steps are counted per bucket under ``granularity="bucket"`` and per parameter under
    ``granularity="parameter"`` (a parameter sent as its values, inside the message or by an
    all-reduce, is a dense step), so that there every counter is independent of the bucket
    layout."""

    bytes_sent: int = 0  #: payload bytes this rank contributed
    dense_bytes: int = 0  #: payload bytes a dense all-reduce of every bucket would have contributed
    sparse_steps: int = 0  #: bucket (parameter) steps sent as TopK messages
    dense_steps: int = 0  #: bucket (parameter) steps sent dense (warm-up, fallback, initialisation)


class _Flat:
    """State tensors in one bucket's layout: parameter `keys[j]` occupies `numels[j]` elements
    from its offset on, in the order DDP lays out the bucket."""

    def __init__(self, keys: tuple[ParamKey, ...], numels: tuple[int, ...], tensors: dict[str, torch.Tensor]):
        self.keys = keys
        self.numels = numels
        self.tensors = tensors
        self.spans: dict[ParamKey, tuple[int, int]] = {}
        offset = 0
        for key, numel in zip(keys, numels, strict=True):
            self.spans[key] = (offset, numel)
            offset += numel

    def piece(self, key: ParamKey, name: str) -> torch.Tensor:
        offset, numel = self.spans[key]
        return self.tensors[name][offset : offset + numel]


class CompressionState:
    """Configuration and error-feedback state of a TopK communication hook on one process group.

    Args:
        process_group: the group the hook communicates over (None: the default group).
        ratio: k = max(1, ⌈ratio · d⌉) entries per message for a bucket (under
            ``granularity="parameter"``: a parameter) of d elements, 0 < ratio ≤ 1. Default 0.01
            when `k` is not given either.
        k: a fixed message size for every bucket (parameter) instead of `ratio` (k ≥ 1; a bucket
            with fewer than k elements, other than a small one, raises ArgumentError; a parameter
            with at most k elements is sent dense).
        warmup_steps: iterations (≥ 1) that all-reduce densely before compression starts. The
            first iteration must be dense: DDP rebuilds its buckets after it.
        min_bucket_numel: buckets (under ``granularity="parameter"``: parameters) with fewer
            elements always go dense.
        model: the module (or its DDP wrapper) whose parameter names key the state, which keeps
            checkpoints valid when buckets change; without it parameters are keyed by the
            position in which DDP first presents them.
        init: EF21's g_i at the first compressed step: "dense" sets g_i = ∇f_i(x), g = mean_i
            ∇f_i(x) from a dense step (the warm-up's last one, or an extra dense step for a
            bucket, under ``granularity="parameter"`` a parameter, with no state yet); "zero"
            starts g_i = g = 0. EF14's error always starts at 0.
        granularity: what one TopK selection runs over.

            - "bucket" (default): the whole DDP bucket, k fixed per bucket: one selection and one
              message per bucket, the fewest kernel launches. Which entries compete depends on
              how DDP groups parameters into buckets, and a fresh DDP (find_unused_parameters=
              False) groups them differently in its first iteration than a long-running one, so
              bit-exact resume from a checkpoint needs a stable layout
              (find_unused_parameters=True or static_graph=True).
            - "parameter": each parameter's slice of the bucket on its own, with k_p =
              :func:`~feedbackkit.distributed.bucket_k` (numel_p, ratio=…, k=…); parameters
              with fewer than `min_bucket_numel` elements, or whose TopK message would not be
              smaller than their values, are sent as their values instead
              (:func:`~feedbackkit.distributed.parameter_part`). After the warm-up every bucket
              is one all-gather of the concatenated parts, and the receivers add the dense parts
              in rank order and decompress the sparse ones parameter by parameter, so
              trajectories, state and counters do not depend on the bucket layout: resume is bit
              exact under any DDP settings. Costs one fused step and one decompression per
              parameter (more kernel launches per bucket), and dense parameters travel in the
              all-gather, (W − 1) values each per rank instead of an all-reduce's 2(W − 1)/W.

            Use "bucket" for one selection per bucket with k fixed per bucket (the spec's
            setting) and the fewest launches; use "parameter" when runs must not depend on DDP's
            bucketing (bucket_cap_mb, find_unused_parameters, rebuilt buckets), e.g. to resume
            bit for bit from checkpoints with default DDP settings. A single rank all-reduces
            densely under both.

    One state serves one hook (EF21 or EF14) on one DDP model. The per-parameter bookkeeping is
    guarded by a lock, since collective callbacks (NCCL) may run on another thread than the hook.
    """

    def __init__(
        self,
        process_group: dist.ProcessGroup | None = None,
        *,
        ratio: float | None = None,
        k: int | None = None,
        warmup_steps: int = 1,
        min_bucket_numel: int = 1024,
        model: torch.nn.Module | None = None,
        init: Init = "dense",
        granularity: Granularity = "bucket",
    ) -> None:
        if ratio is not None and k is not None:
            raise ArgumentError("CompressionState: give 'ratio' or 'k', not both")
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ArgumentError(f"CompressionState: 'k' must be an int >= 1; got {k!r}")
        else:
            ratio = 0.01 if ratio is None else ratio
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
                raise ArgumentError(f"CompressionState: 'ratio' must be a number in (0, 1]; got {ratio!r}")
            if not math.isfinite(ratio):
                raise ArgumentError(f"CompressionState: 'ratio' must be finite; got {ratio!r}")
            ratio = float(ratio)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 1:
            raise ArgumentError(
                f"CompressionState: 'warmup_steps' must be an int >= 1 (DDP rebuilds buckets after the first "
                f"iteration, which therefore runs dense); got {warmup_steps!r}"
            )
        if (
            isinstance(min_bucket_numel, bool)
            or not isinstance(min_bucket_numel, int)
            or min_bucket_numel < 0
        ):
            raise ArgumentError(
                f"CompressionState: 'min_bucket_numel' must be an int >= 0; got {min_bucket_numel!r}"
            )
        if init not in ("dense", "zero"):
            raise ArgumentError(f"CompressionState: 'init' must be 'dense' or 'zero'; got {init!r}")
        if granularity not in ("bucket", "parameter"):
            raise ArgumentError(
                f"CompressionState: 'granularity' must be 'bucket' or 'parameter'; got {granularity!r}"
            )
        if model is not None and not isinstance(model, torch.nn.Module):
            raise ArgumentError(
                f"CompressionState: 'model' must be a torch.nn.Module; got {type(model).__name__}"
            )

        self.process_group = process_group
        self.ratio = ratio
        self.k = k
        self.warmup_steps = warmup_steps
        self.min_bucket_numel = min_bucket_numel
        self.init: Init = init
        self.granularity: Granularity = granularity
        self.method: Method | None = None  #: set by the first hook call or checkpoint load
        self.iteration = 0  #: completed iterations (a bucket marked last ends one)
        self.warm_until = warmup_steps  #: iterations before this one all-reduce densely
        self.counters = Counters()

        self._model = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
        self._names: dict[int, str] | None = None
        self._positions: dict[int, int] = {}
        self._seen: list[torch.Tensor] = []  # keeps positioned parameters alive, so ids stay unique
        self._flats: dict[tuple[ParamKey, ...], _Flat] = {}
        self._owner: dict[ParamKey, _Flat] = {}
        self._loose: dict[ParamKey, dict[str, torch.Tensor]] = {}
        self._lock = threading.RLock()

    # ---- public ------------------------------------------------------------------------------

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.process_group)

    @property
    def rank(self) -> int:
        return dist.get_rank(self.process_group)

    @property
    def keyed_by(self) -> Literal["name", "position"]:
        return "position" if self._model is None else "name"

    def param_keys(self) -> list[ParamKey]:
        """Keys of the parameters that currently hold error-feedback state."""
        with self._lock:
            return [*self._owner, *self._loose]

    def param_state(self, key: ParamKey) -> dict[str, torch.Tensor]:
        """This rank's error-feedback tensors for one parameter, flat: {"g_i", "g"} for EF21,
        {"e"} for EF14; empty when the parameter holds no state (dense buckets keep none).
        The tensors are views into the live state."""
        with self._lock:
            if key in self._owner:
                flat = self._owner[key]
                return {name: flat.piece(key, name) for name in flat.tensors}
            return dict(self._loose.get(key, {}))

    def reset(self) -> None:
        """Discards the error-feedback state; the next `warmup_steps` iterations run dense and
        compression restarts from a fresh initialisation. Counters are kept."""
        self._clear()
        self.warm_until = self.iteration + self.warmup_steps

    def state_dict(self) -> dict[str, Any]:
        """This rank's state with per-parameter tensors copied to the CPU, independent of the
        bucket layout: {"method", "iteration", "warm_until", "counters", "keyed_by", "params":
        {key: {name: flat tensor}}, "config"}."""
        params: dict[ParamKey, dict[str, torch.Tensor]] = {}
        for key in self.param_keys():
            params[key] = {name: t.detach().to("cpu", copy=True) for name, t in self.param_state(key).items()}
        return {
            "method": self.method,
            "iteration": self.iteration,
            "warm_until": self.warm_until,
            "counters": asdict(self.counters),
            "keyed_by": self.keyed_by,
            "params": params,
            "config": {
                "ratio": self.ratio,
                "k": self.k,
                "warmup_steps": self.warmup_steps,
                "min_bucket_numel": self.min_bucket_numel,
                "init": self.init,
                "granularity": self.granularity,
            },
        }

    def load_state_dict(
        self, state: dict[str, Any], *, policy: Literal["restore", "reset"] = "restore"
    ) -> None:
        """Replaces this state by `state` (from :meth:`state_dict`). "restore" takes everything,
        so training continues bit for bit; "reset" takes the iteration count and counters but
        discards the error-feedback tensors and schedules a dense warm-up (see :meth:`reset`).
        The configuration (ratio, k, …) stays this object's own."""
        if policy not in ("restore", "reset"):
            raise ArgumentError(f"load_state_dict: 'policy' must be 'restore' or 'reset'; got {policy!r}")
        method = state.get("method")
        if method is not None and self.method is not None and method != self.method:
            raise ArgumentError(
                f"load_state_dict: the checkpoint holds {method} state but this state serves {self.method}"
            )
        self._clear()
        self.method = method if method is not None else self.method
        self.iteration = int(state["iteration"])
        names = {f.name for f in fields(Counters)}
        self.counters = Counters(
            **{key: int(v) for key, v in state.get("counters", {}).items() if key in names}
        )
        if policy == "reset":
            self.warm_until = self.iteration + self.warmup_steps
            return
        self.warm_until = int(state["warm_until"])
        params: dict[ParamKey, dict[str, torch.Tensor]] = state["params"]
        if params and state.get("keyed_by") != self.keyed_by:
            raise ArgumentError(
                f"load_state_dict: the checkpoint keys parameters by {state.get('keyed_by')} but this state "
                f"keys them by {self.keyed_by} (pass the same 'model' argument as the run that saved it)"
            )
        if self._model is not None:
            known = {name for name, _ in self._model.named_parameters()}
            unknown = sorted(str(key) for key in params if key not in known)
            if unknown:
                raise ArgumentError(
                    f"load_state_dict: the checkpoint has state for parameters the model lacks: {unknown}"
                )
        expected = STATE_TENSORS[method] if method is not None else ()
        for key, pieces in params.items():
            if tuple(sorted(pieces)) != tuple(sorted(expected)):
                raise ArgumentError(
                    f"load_state_dict: parameter {key!r} has tensors {sorted(pieces)}; {method} needs "
                    f"{list(expected)}"
                )
        self._loose = {key: dict(pieces) for key, pieces in params.items()}

    # ---- used by the hooks ---------------------------------------------------------------------

    def _clear(self) -> None:
        with self._lock:
            self._flats.clear()
            self._owner.clear()
            self._loose.clear()

    def _bind(self, method: Method) -> None:
        if self.method is None:
            self.method = method
        elif self.method != method:
            raise ArgumentError(
                f"{method}_hook: this CompressionState holds {self.method} state; give each hook its own "
                "state"
            )

    def _keys(self, params: list[torch.Tensor]) -> tuple[ParamKey, ...]:
        if self._model is not None:
            if self._names is None:
                self._names = {id(p): name for name, p in self._model.named_parameters()}
            missing = [i for i, p in enumerate(params) if id(p) not in self._names]
            if missing:
                raise ArgumentError(
                    f"CompressionState: the bucket holds {len(missing)} parameter(s) that are not in 'model' "
                    "(pass the model wrapped by this DistributedDataParallel)"
                )
            return tuple(self._names[id(p)] for p in params)
        for p in params:
            if id(p) not in self._positions:
                self._positions[id(p)] = len(self._positions)
                self._seen.append(p)
        return tuple(self._positions[id(p)] for p in params)

    def _has_state(self, key: ParamKey) -> bool:
        with self._lock:
            return key in self._owner or key in self._loose

    def _tensors(
        self, keys: tuple[ParamKey, ...], numels: tuple[int, ...], like: torch.Tensor, *, fill: bool
    ) -> dict[str, torch.Tensor] | None:
        """The flat state tensors of a bucket with parameters `keys`, assembled from
        per-parameter pieces if the layout is new; parameters without state get zeros when
        `fill`, else the result is None (and nothing changes)."""
        with self._lock:
            flat = self._flats.get(keys)
            if (
                flat is not None
                and flat.numels == numels
                and all(self._owner.get(key) is flat for key in keys)
            ):
                return flat.tensors
            assert self.method is not None
            names = STATE_TENSORS[self.method]
            pieces = [self.param_state(key) for key in keys]
            if not fill and any(not p for p in pieces):
                return None
            for key, numel, piece in zip(keys, numels, pieces, strict=True):
                for t in piece.values():
                    if t.numel() != numel:
                        raise ArgumentError(
                            f"CompressionState: parameter {key!r} has {numel} elements but its state has "
                            f"{t.numel()}"
                        )
            tensors = {
                name: torch.cat(
                    [
                        piece[name].reshape(-1).to(like.device, like.dtype)
                        if piece
                        else like.new_zeros(numel)
                        for numel, piece in zip(numels, pieces, strict=True)
                    ]
                )
                for name in names
            }
            self._store(keys, numels, tensors)
            return tensors

    def _store(
        self, keys: tuple[ParamKey, ...], numels: tuple[int, ...], tensors: dict[str, torch.Tensor]
    ) -> None:
        with self._lock:
            flat = _Flat(keys, numels, tensors)
            for key in keys:
                self._owner[key] = flat
                self._loose.pop(key, None)
            self._flats[keys] = flat
            self._drop_unowned()

    def _forget(self, keys: tuple[ParamKey, ...]) -> None:
        with self._lock:
            for key in keys:
                self._owner.pop(key, None)
                self._loose.pop(key, None)
            self._drop_unowned()

    def _drop_unowned(self) -> None:
        self._flats = {
            keys: flat
            for keys, flat in self._flats.items()
            if any(self._owner.get(key) is flat for key in keys)
        }
