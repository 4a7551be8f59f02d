"""Paper 35: Error Feedback Reloaded: From Quadratic to Arithmetic Mean of Smoothness Constants
(Richtárik, Gasanov, Burlachenko 2024, arXiv 2402.10774), with the methods it builds on: EF21
(Richtárik, Sokolov, Fatkhullin 2021, arXiv 2106.05203) and classic error feedback EF14
(Seide et al. 2014; Stich et al. 2018).

Three methods of kind ``compressor``. ``fn(**options)`` builds the compressor of *one* worker
(rank i of n); every rank holds one. ``compress(grad)`` updates the worker's state and returns the
:class:`Payload` that crosses the wire; ``decompress(payloads)`` takes every rank's payload, in rank
order, updates the state that all ranks replicate and returns the aggregated update.

=======  ====================================================================================
ef14     t = e_i + γ∇f_i(x); v_i = TopK(t); e_i ← t − v_i.  decompress: mean_i v_i
         (the caller applies x ← x − mean_i v_i).
ef21     c_i = C(∇f_i(x) − g_i); g_i ← g_i + c_i.  decompress: g ← g + mean_i c_i, returns g
         (the caller applies x ← x − γ g).
ef21w    w_i = L_i / Σ_j L_j; c_i = C(∇f_i(x)/(n w_i) − g_i); g_i ← g_i + c_i.
         decompress: g ← g + Σ_i w_i c_i (so g = Σ_i w_i g_i), returns g.
=======  ====================================================================================

C is ``"topk"`` (the k largest magnitudes, through the fused kernels
:func:`feedbackkit.compress.ef21_step`, :func:`~feedbackkit.compress.ef14_step` and
:func:`~feedbackkit.compress.decompress_add`) or ``"natural"``: natural compression (Horváth et al.
2019) scaled to a contraction, C(x) = N(x)/(1 + ω) with ω = 1/8, where N rounds every entry at
random to one of the two nearest signed powers of two, unbiased (E N(x) = x) with
E‖N(x) − x‖² ≤ ω‖x‖², so E‖C(x) − x‖² ≤ (1 − α)‖x‖² with α = 1/(1 + ω) = 8/9.

TopK is positively homogeneous, TopK(s·x) = s·TopK(x) for s > 0, so EF21-W with TopK produces the
same iterates as EF21 (substitute h_i = n w_i g_i); N is not (it rounds to powers of two), so with
``compressor="natural"`` the two methods differ. What EF21-W changes in theory is the stepsize:
γ = 1/(L + L_AM ξ(α)) with L_AM = mean_i L_i instead of EF21's γ = 1/(L + L_QM ξ(α)) with
L_QM = √(mean_i L_i²) (:func:`feedbackkit.compress.ef21_stepsize`).

:func:`simulate` runs n workers in one process (the experiment and the tests use it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch

from feedbackkit.compress import decompress_add, ef14_step, ef21_step
from feedbackkit.plugin import Method, Paper

__all__ = [
    "NATURAL_OMEGA",
    "PAPER",
    "EF14Compressor",
    "EF21Compressor",
    "EF21WCompressor",
    "Payload",
    "Trajectory",
    "contraction",
    "ef14",
    "ef14_compressor",
    "ef21",
    "ef21_compressor",
    "ef21w",
    "ef21w_compressor",
    "natural_compression",
    "simulate",
]

PAPER = Paper(
    title="Error Feedback Reloaded: From Quadratic to Arithmetic Mean of Smoothness Constants",
    arxiv="2402.10774",
    year=2024,
)

CompressorName = Literal["topk", "natural"]
Init = Literal["dense", "zero"]

#: Variance bound of natural compression: E‖N(x) − x‖² ≤ ω‖x‖² with ω = 1/8.
NATURAL_OMEGA = 1.0 / 8.0
_COMPRESSORS = ("topk", "natural")
_INITS = ("dense", "zero")


class Payload(NamedTuple):
    """One worker's message for one tensor.

    ``indices is None`` means dense: ``values`` holds every element in order. The values are the
    decoded message (what the receivers add), in the gradient's dtype; ``bits`` is what the
    message costs on the wire: the packed TopK message (k indices + k values, padded to 8 bytes),
    numel·(1 + exponent bits) for natural compression (a sign and an exponent per entry), or
    numel·(bits of the dtype) for a dense message."""

    rank: int  #: the sender
    shape: torch.Size  #: shape of the compressed tensor
    indices: torch.Tensor | None  #: [k] positions in the flattened tensor, or None when dense
    values: torch.Tensor  #: [k] (sparse) or [numel] (dense) values
    bits: int  #: wire cost of this message


# ---- option checks ---------------------------------------------------------------------------


def _check_int(method: str, name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{method}: {name!r} must be an int; got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{method}: {name!r} must be >= {low}; got {value}")
    return value


def _check_choice(method: str, name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{method}: {name!r} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)


def _check_positive(method: str, name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{method}: {name!r} must be a finite number > 0; got {value!r}")
    return float(value)


def _check_grad(method: str, grad: object) -> torch.Tensor:
    if not isinstance(grad, torch.Tensor):
        raise TypeError(f"{method}: compress expects a torch.Tensor; got {type(grad).__name__}")
    if not grad.is_floating_point():
        raise TypeError(f"{method}: compress expects a floating-point tensor; got {grad.dtype}")
    if grad.numel() == 0:
        raise ValueError(f"{method}: compress expects a non-empty tensor")
    return grad


def _check_state(method: str, name: str, state: torch.Tensor, grad: torch.Tensor) -> None:
    if state.shape != grad.shape or state.dtype != grad.dtype or state.device != grad.device:
        raise ValueError(
            f"{method}: the gradient ({list(grad.shape)}, {grad.dtype}, {grad.device}) does not match the "
            f"state {name} ({list(state.shape)}, {state.dtype}, {state.device}) made by the first compress "
            "call; use one compressor per tensor"
        )


def _weights(method: str, weights: Sequence[float] | None, smoothness: Sequence[float] | None) -> list[float]:
    """w_i from explicit weights (positive, Σ w_i = 1 up to 1e-9 relative) or w_i = L_i / Σ_j L_j."""
    if (weights is None) == (smoothness is None):
        raise ValueError(
            f"{method}: pass exactly one of 'weights' (w_i) or 'smoothness' (L_i, w_i = L_i/Σ L_j)"
        )
    name, given = ("weights", weights) if weights is not None else ("smoothness", smoothness)
    if isinstance(given, torch.Tensor):
        given = given.tolist()
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence) or len(given) == 0:
        raise ValueError(f"{method}: {name!r} must be a non-empty sequence of numbers; got {given!r}")
    values = []
    for value in given:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{method}: every entry of {name!r} must be a finite number > 0; got {given!r}")
        values.append(float(value))
    total = math.fsum(values)
    if weights is not None:
        if abs(total - 1.0) > 1e-9:
            raise ValueError(
                f"{method}: 'weights' must sum to 1 (got sum {total!r}); pass 'smoothness' to have them "
                "normalised from the L_i"
            )
        return values
    return [v / total for v in values]


# ---- natural compression ---------------------------------------------------------------------


def natural_compression(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(x): every nonzero entry rounded at random to one of its two neighbouring signed powers of two.

    For 2^a ≤ |x| < 2^(a+1): N(x) = sign(x)·2^(a+1) with probability p = |x|/2^a − 1, else
    sign(x)·2^a. Unbiased: E N(x) = 2^a + p·2^a = |x|·sign(x). Variance per entry
    2^(2a)·p(1 − p) ≤ x²/8, so E‖N(x) − x‖² ≤ ‖x‖²/8 (ω = 1/8). Zeros stay zero; powers of two are
    kept exactly. Not positively homogeneous: N(3x) ≠ 3N(x)."""
    mantissa, exponent = torch.frexp(x)  # |x| = |m|·2^e with |m| in [0.5, 1)
    low = torch.ldexp(torch.sign(x), exponent - 1)  # sign·2^a with a = e − 1
    p_up = 2.0 * mantissa.abs() - 1.0  # |x|/2^a − 1 in [0, 1)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return torch.where(u < p_up, 2.0 * low, low)


def _natural_bits(numel: int, dtype: torch.dtype) -> int:
    """A sign bit and an exponent per entry."""
    exponent_bits = {torch.float64: 11, torch.float32: 8, torch.bfloat16: 8, torch.float16: 5}.get(dtype, 8)
    return numel * (1 + exponent_bits)


def contraction(compressor: CompressorName, numel: int, k: int | None = None) -> float:
    """α of the contractive compressor, E‖C(x) − x‖² ≤ (1 − α)‖x‖²: k/numel for TopK,
    1/(1 + ω) = 8/9 for scaled natural compression."""
    _check_choice("contraction", "compressor", compressor, _COMPRESSORS)
    numel = _check_int("contraction", "numel", numel, 1)
    if compressor == "natural":
        return 1.0 / (1.0 + NATURAL_OMEGA)
    if k is None:
        raise ValueError("contraction: TopK needs 'k'")
    return min(_check_int("contraction", "k", k, 1), numel) / numel


# ---- compressors -----------------------------------------------------------------------------


def _dense_bits(numel: int, dtype: torch.dtype) -> int:
    return numel * torch.empty((), dtype=dtype).element_size() * 8


def _sent(message: Any, rank: int, shape: torch.Size) -> Payload:
    return Payload(rank, shape, message.indices, message.values, message.packed.numel() * 8)


class _Replicated:
    """The receivers' side: checks payloads and adds them into a replicated dense tensor in rank order."""

    def __init__(self, method: str, workers: int | None) -> None:
        self._method = method
        self._workers = workers
        self._dense_indices: torch.Tensor | None = None

    def _check(self, payloads: Sequence[Payload]) -> tuple[torch.Size, torch.dtype, torch.device]:
        method = self._method
        if isinstance(payloads, Payload) or not isinstance(payloads, Sequence) or len(payloads) == 0:
            raise TypeError(f"{method}: decompress expects a non-empty sequence of Payload, one per rank")
        if self._workers is not None and len(payloads) != self._workers:
            raise ValueError(
                f"{method}: decompress expects {self._workers} payloads (one per rank); got {len(payloads)}"
            )
        first = payloads[0]
        for rank, payload in enumerate(payloads):
            if not isinstance(payload, Payload):
                raise TypeError(f"{method}: decompress expects Payload objects; got {type(payload).__name__}")
            if payload.rank != rank:
                raise ValueError(
                    f"{method}: payloads must come in rank order 0..n−1; "
                    f"position {rank} holds rank {payload.rank}"
                )
            if payload.shape != first.shape or payload.values.dtype != first.values.dtype:
                raise ValueError(
                    f"{method}: payloads disagree on shape/dtype: rank 0 sent {list(first.shape)} "
                    f"{first.values.dtype}, rank {rank} sent {list(payload.shape)} {payload.values.dtype}"
                )
        return first.shape, first.values.dtype, first.values.device

    def _indices(self, payload: Payload) -> torch.Tensor:
        if payload.indices is not None:
            return payload.indices
        numel = payload.values.numel()
        if self._dense_indices is None or self._dense_indices.numel() != numel:
            self._dense_indices = torch.arange(numel, device=payload.values.device)
        return self._dense_indices

    def add(self, out: torch.Tensor, payloads: Sequence[Payload], scales: Sequence[float]) -> None:
        """out += scales[j]·c_j for j = 0, 1, … in order (each product and sum rounded once)."""
        sizes = {p.values.numel() if p.indices is not None else -1 for p in payloads}
        if len(set(scales)) == 1 and len(sizes) == 1 and -1 not in sizes:
            # one call, the same row order and rounding as one call per row
            indices = torch.stack([p.indices for p in payloads])  # type: ignore[misc]
            decompress_add(out, indices, torch.stack([p.values for p in payloads]), scales[0])
            return
        for payload, scale in zip(payloads, scales, strict=True):
            decompress_add(out, self._indices(payload).view(1, -1), payload.values.reshape(1, -1), scale)


@dataclass
class EF14Compressor:
    """Classic error feedback (EF14) for worker `rank`.

    compress: t = e + lr·grad; v = TopK(t) is sent; e ← t − v (fused :func:`ef14_step`).
    decompress: returns mean_i v_i; the caller applies x ← x − mean_i v_i. The stepsize lives in
    the worker (it scales what is accumulated in e), hence the `lr` option."""

    k: int
    lr: float
    rank: int = 0
    workers: int | None = None
    error: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.k = _check_int("ef14", "k", self.k, 1)
        self.lr = _check_positive("ef14", "lr", self.lr)
        _check_rank("ef14", self.rank, self.workers)
        self._receiver = _Replicated("ef14", self.workers)

    def compress(self, grad: torch.Tensor) -> Payload:
        grad = _check_grad("ef14", grad)
        _check_k_fits("ef14", self.k, grad)
        if self.error is None:
            self.error = torch.zeros_like(grad)
        _check_state("ef14", "e", self.error, grad)
        return _sent(ef14_step(grad, self.error, self.k, self.lr), self.rank, grad.shape)

    def decompress(self, payloads: Sequence[Payload]) -> torch.Tensor:
        shape, dtype, device = self._receiver._check(payloads)
        out = torch.zeros(shape, dtype=dtype, device=device)
        self._receiver.add(out, payloads, [1.0 / len(payloads)] * len(payloads))
        return out


def _check_rank(method: str, rank: object, workers: int | None) -> None:
    rank = _check_int(method, "rank", rank, 0)
    if workers is not None:
        _check_int(method, "workers", workers, 1)
        if not rank < workers:
            raise ValueError(f"{method}: 'rank' must be < workers = {workers}; got {rank}")


def _check_k_fits(method: str, k: int, grad: torch.Tensor) -> None:
    if k > grad.numel():
        raise ValueError(f"{method}: 'k' = {k} exceeds the tensor's {grad.numel()} elements")


@dataclass
class EF21Compressor:
    """EF21 (Richtárik, Sokolov, Fatkhullin 2021) for worker `rank`.

    compress: c_i = C(grad − g_i); g_i ← g_i + c_i; c_i is sent. With ``init="dense"`` the first
    call sends the whole gradient (g_i⁰ = ∇f_i(x⁰)); with ``init="zero"`` g_i⁰ = 0.
    decompress: g ← g + mean_i c_i (every rank holds the same g); returns a copy of g, and the
    caller applies x ← x − γ g."""

    k: int | None = None
    rank: int = 0
    workers: int | None = None
    compressor: CompressorName = "topk"
    init: Init = "dense"
    seed: int = 0
    g_i: torch.Tensor | None = field(default=None, init=False, repr=False)
    g: torch.Tensor | None = field(default=None, init=False, repr=False)

    _name = "ef21"

    def __post_init__(self) -> None:
        name = self._name
        self.compressor = _check_choice(name, "compressor", self.compressor, _COMPRESSORS)  # type: ignore[assignment]
        self.init = _check_choice(name, "init", self.init, _INITS)  # type: ignore[assignment]
        if self.compressor == "topk":
            self.k = _check_int(name, "k", self.k, 1)
        elif self.k is not None:
            raise ValueError(
                f"{name}: 'k' applies to compressor='topk' only; got k={self.k!r} with {self.compressor!r}"
            )
        _check_rank(name, self.rank, self.workers)
        _check_int(name, "seed", self.seed, 0)
        self._receiver = _Replicated(name, self.workers)
        self._generator: torch.Generator | None = None

    def _scale(self) -> float:
        """What the worker divides its gradient by before compressing (n w_i for EF21-W)."""
        return 1.0

    def compress(self, grad: torch.Tensor) -> Payload:
        name = self._name
        grad = _check_grad(name, grad)
        scale = self._scale()
        target = grad if scale == 1.0 else grad / scale
        if self.g_i is None:
            if self.compressor == "topk":
                _check_k_fits(name, self.k, grad)  # type: ignore[arg-type]
            self.g_i = torch.zeros_like(grad)
            if self.init == "dense":
                self.g_i.copy_(target)
                return Payload(
                    self.rank,
                    grad.shape,
                    None,
                    target.reshape(-1).clone(),
                    _dense_bits(grad.numel(), grad.dtype),
                )
        _check_state(name, "g_i", self.g_i, grad)
        if self.compressor == "topk":
            return _sent(ef21_step(target, self.g_i, self.k), self.rank, grad.shape)  # type: ignore[arg-type]
        if self._generator is None:
            self._generator = torch.Generator(device=grad.device).manual_seed(self.seed * 65537 + self.rank)
        c = natural_compression(target - self.g_i, self._generator) / (1.0 + NATURAL_OMEGA)
        self.g_i.add_(c)
        return Payload(self.rank, grad.shape, None, c.reshape(-1), _natural_bits(grad.numel(), grad.dtype))

    def _scales(self, n: int) -> list[float]:
        return [1.0 / n] * n

    def decompress(self, payloads: Sequence[Payload]) -> torch.Tensor:
        shape, dtype, device = self._receiver._check(payloads)
        if self.g is None:
            self.g = torch.zeros(shape, dtype=dtype, device=device)
        elif self.g.shape != shape or self.g.dtype != dtype:
            raise ValueError(
                f"{self._name}: payloads of shape {list(shape)} {dtype} do not match the state g "
                f"({list(self.g.shape)} {self.g.dtype}); use one compressor per tensor"
            )
        self._receiver.add(self.g, payloads, self._scales(len(payloads)))
        return self.g.clone()


@dataclass
class EF21WCompressor(EF21Compressor):
    """EF21-W ("Error Feedback Reloaded") for worker `rank` of n = len(weights).

    Weights w_i = L_i / Σ_j L_j (``smoothness=L``) or given (``weights=w``, positive, Σ w_i = 1).
    compress: c_i = C(grad/(n w_i) − g_i); g_i ← g_i + c_i; c_i is sent (``init="dense"``: the
    first call sends g_i⁰ = ∇f_i(x⁰)/(n w_i)). decompress: g ← g + Σ_i w_i c_i, so g = Σ_i w_i g_i;
    returns a copy of g."""

    weights: Sequence[float] | None = None
    smoothness: Sequence[float] | None = None

    _name = "ef21w"

    def __post_init__(self) -> None:
        self.w = _weights("ef21w", self.weights, self.smoothness)
        if self.workers is not None and self.workers != len(self.w):
            raise ValueError(f"ef21w: 'workers' = {self.workers} but {len(self.w)} weights were given")
        self.workers = len(self.w)
        super().__post_init__()

    def _scale(self) -> float:
        return len(self.w) * self.w[self.rank]

    def _scales(self, n: int) -> list[float]:
        return self.w


def ef14_compressor(*, k: int, lr: float, rank: int = 0, workers: int | None = None) -> EF14Compressor:
    """Classic error feedback with TopK: t = e_i + lr·∇f_i(x); v_i = TopK(t); e_i ← t − v_i;
    x ← x − mean_i v_i. Returns worker `rank`'s compressor."""
    return EF14Compressor(k=k, lr=lr, rank=rank, workers=workers)


def ef21_compressor(
    *,
    k: int | None = None,
    rank: int = 0,
    workers: int | None = None,
    compressor: CompressorName = "topk",
    init: Init = "dense",
    seed: int = 0,
) -> EF21Compressor:
    """EF21: c_i = C(∇f_i(x) − g_i); g_i ← g_i + c_i; g ← g + mean_i c_i; x ← x − γ g, with
    γ = 1/(L + L_QM ξ(α)) in the original analysis. C is TopK (``k``) or scaled natural
    compression (``compressor="natural"``, random with ``seed``). Returns worker `rank`'s compressor."""
    return EF21Compressor(k=k, rank=rank, workers=workers, compressor=compressor, init=init, seed=seed)


def ef21w_compressor(
    *,
    k: int | None = None,
    weights: Sequence[float] | None = None,
    smoothness: Sequence[float] | None = None,
    rank: int = 0,
    compressor: CompressorName = "topk",
    init: Init = "dense",
    seed: int = 0,
) -> EF21WCompressor:
    """EF21-W: w_i = L_i/Σ_j L_j; c_i = C(∇f_i(x)/(n w_i) − g_i); g_i ← g_i + c_i; g = Σ_i w_i g_i;
    x ← x − γ g with γ = 1/(L + L_AM ξ(α)). Pass ``smoothness`` (the L_i) or ``weights``.
    Returns worker `rank`'s compressor."""
    return EF21WCompressor(
        k=k, rank=rank, compressor=compressor, init=init, seed=seed, weights=weights, smoothness=smoothness
    )


# ---- single-process simulation ---------------------------------------------------------------


@dataclass
class Trajectory:
    """What :func:`simulate` records, for t = 0..T (T+1 entries)."""

    method: str
    stepsize: float
    grad_norm_sq: list[float]  #: ‖∇f(x_t)‖² with ∇f = mean_i ∇f_i; inf once it overflowed
    bits_per_worker: list[float]  #: mean over workers of the bits sent before x_t
    x: torch.Tensor  #: the last iterate
    iterates: list[torch.Tensor] | None = None  #: x_0..x_T when keep_iterates


_METHODS = ("gd", "ef14", "ef21", "ef21w")


def simulate(
    method: str,
    gradients: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    x0: torch.Tensor,
    *,
    stepsize: float,
    iterations: int,
    keep_iterates: bool = False,
    progress: Callable[[], None] | None = None,
    **options: Any,
) -> Trajectory:
    """Runs `method` ("gd", "ef14", "ef21" or "ef21w") with n workers in one process, minimising
    f = (1/n) Σ_i f_i where ``gradients(x)`` returns [∇f_1(x), …, ∇f_n(x)].

    Each iteration every worker compresses its gradient at x_t, the payloads are decompressed (by
    worker 0's compressor, standing for every rank: they all hold the same replicated state), and
    gd: x ← x − γ mean_i ∇f_i(x); ef14: x ← x − mean_i v_i (the workers' lr is γ);
    ef21 / ef21w: x ← x − γ g. `options` go to the compressors (k, compressor, init, seed, and
    weights or smoothness for ef21w). `progress` is called once per iteration. Stops early,
    padding with inf, when ‖∇f‖² stops being finite."""
    _check_choice("simulate", "method", method, _METHODS)
    gamma = _check_positive("simulate", "stepsize", stepsize)
    iterations = _check_int("simulate", "iterations", iterations, 0)
    x = x0.detach().clone()
    grads = list(gradients(x))
    n = len(grads)
    if n == 0:
        raise ValueError("simulate: gradients(x) returned no worker gradients")
    compressors: list[Any]
    if method == "gd":
        if options:
            raise ValueError(f"simulate: gd takes no compressor options; got {sorted(options)}")
        compressors = []
    elif method == "ef14":
        compressors = [ef14_compressor(lr=gamma, rank=i, workers=n, **options) for i in range(n)]
    elif method == "ef21":
        compressors = [ef21_compressor(rank=i, workers=n, **options) for i in range(n)]
    else:
        compressors = [ef21w_compressor(rank=i, **options) for i in range(n)]
        if compressors[0].workers != n:
            raise ValueError(
                f"simulate: ef21w has {compressors[0].workers} weights but there are {n} workers"
            )
    norms: list[float] = []
    bits: list[float] = [0.0]
    iterates = [x.clone()] if keep_iterates else None
    for t in range(iterations + 1):
        if t > 0:
            grads = list(gradients(x))
        norm = float(torch.stack(grads).mean(0).square().sum())
        if not math.isfinite(norm):
            norms.extend([math.inf] * (iterations + 1 - t))
            bits.extend([bits[-1]] * (iterations + 1 - len(bits)))
            break
        norms.append(norm)
        if t == iterations:
            break
        if method == "gd":
            x = x - gamma * torch.stack(grads).mean(0)
            sent = _dense_bits(x.numel(), x.dtype) * n
        else:
            payloads = [c.compress(grad) for c, grad in zip(compressors, grads, strict=True)]
            update = compressors[0].decompress(payloads)
            x = x - update if method == "ef14" else x - gamma * update
            sent = sum(p.bits for p in payloads)
        bits.append(bits[-1] + sent / n)
        if iterates is not None:
            iterates.append(x.clone())
        if progress is not None:
            progress()
    return Trajectory(method, gamma, norms, bits, x, iterates)


_EXTRAS: dict[str, Callable[..., Any]] = {"simulate": simulate, "natural_compression": natural_compression}

ef14 = Method(
    name="ef14",
    kind="compressor",
    paper=PAPER,
    summary="Classic error feedback with TopK: e_i + γ∇f_i compressed, the dropped part kept in e_i",
    fn=ef14_compressor,
    extras=_EXTRAS,
)

ef21 = Method(
    name="ef21",
    kind="compressor",
    paper=PAPER,
    summary="EF21: workers send C(∇f_i − g_i) and track g_i; the server keeps g = mean g_i",
    fn=ef21_compressor,
    extras=_EXTRAS,
)

ef21w = Method(
    name="ef21w",
    kind="compressor",
    paper=PAPER,
    summary="EF21-W: weights w_i ∝ L_i, stepsize from the arithmetic mean L_AM instead of L_QM",
    fn=ef21w_compressor,
    extras=_EXTRAS,
)
