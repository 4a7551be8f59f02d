"""torch.library ops of the `compress` family: topk, ef21_step, ef14_step, decompress_add.

A message is one uint8 tensor ``[k indices | k values | padding to 8 bytes]``: every rank sends
the same number of bytes, so one ``all_gather_into_tensor`` moves all of them. Indices are int32
when the tensor has fewer than 2^31 elements and its values are at most 4 bytes wide, else int64.
"""

from __future__ import annotations

import torch

from .. import _native
from .._checks import FLOAT_DTYPES, INDEX_DTYPES, ArgumentError, check_tensor
from ._library import LIB, launch, register, view

TOPK_BY = {"abs": 0, "value": 1}

LIB.define(
    "topk(Tensor x, int k, str by, bool allow_nan, ScalarType index_dtype) -> (Tensor, Tensor, Tensor)"
)
LIB.define("ef21_step(Tensor grad, Tensor(a!) g_i, int k, bool allow_nan) -> (Tensor, Tensor)")
LIB.define("ef14_step(Tensor grad, Tensor(a!) error, int k, float lr, bool allow_nan) -> (Tensor, Tensor)")
LIB.define("decompress_add(Tensor(a!) out, Tensor indices, Tensor values, float scale) -> ()")


# ---- message layout --------------------------------------------------------------------------


def message_index_dtype(numel: int, dtype: torch.dtype) -> torch.dtype:
    """Index dtype of a message selecting from `numel` elements of `dtype`."""
    narrow = numel < 2**31 and torch.empty((), dtype=dtype).element_size() <= 4
    return torch.int32 if narrow else torch.int64


def message_nbytes(numel: int, k: int, dtype: torch.dtype) -> int:
    """Bytes of one message: k indices, k values, padded to a multiple of 8."""
    index_size = torch.empty((), dtype=message_index_dtype(numel, dtype)).element_size()
    value_size = torch.empty((), dtype=dtype).element_size()
    return -(-k * (index_size + value_size) // 8) * 8


def unpack(packed: torch.Tensor, k: int, numel: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, values) views of messages ``packed[..., nbytes]`` (no copy)."""
    index_dtype = message_index_dtype(numel, dtype)
    index_bytes = k * torch.empty((), dtype=index_dtype).element_size()
    value_bytes = k * torch.empty((), dtype=dtype).element_size()
    indices = packed[..., :index_bytes].view(index_dtype)
    values = packed[..., index_bytes : index_bytes + value_bytes].view(dtype)
    return indices, values


# ---- argument checks -------------------------------------------------------------------------


def _check_k(op: str, k: object, numel: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ArgumentError(f"{op}: 'k' must be an int; got {type(k).__name__}")
    if not 1 <= k <= numel:
        raise ArgumentError(f"{op}: 'k' must satisfy 1 <= k <= {numel} (the number of elements); got {k}")
    return k


def _check_state(op: str, name: str, state: object, grad: torch.Tensor) -> None:
    state = check_tensor(op, name, state, dtypes=(grad.dtype,))
    if state.shape != grad.shape:
        raise ArgumentError(
            f"{op}: '{name}' must have the shape of 'grad', {list(grad.shape)}; got {list(state.shape)}"
        )
    if state.device != grad.device:
        raise ArgumentError(f"{op}: '{name}' is on {state.device} but 'grad' is on {grad.device}")
    if not state.is_contiguous():
        raise ArgumentError(f"{op}: '{name}' is updated in place and must be contiguous")


def check_not_aliased(op: str, name: str, state: torch.Tensor, grad: torch.Tensor) -> None:
    """The state is written while grad is read: their (contiguous) memory must not overlap."""
    state_start, grad_start = state.data_ptr(), grad.data_ptr()
    if state_start < grad_start + grad.nbytes and grad_start < state_start + state.nbytes:
        raise ArgumentError(f"{op}: '{name}' must not share memory with 'grad'")


def _check_grad(op: str, grad: object) -> torch.Tensor:
    return check_tensor(op, "grad", grad, dtypes=FLOAT_DTYPES)


def _workspace(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The selecting kernels' scratch buffer: CUDA only (the CPU kernels allocate their own)."""
    if not x.is_cuda:
        return ()
    size = _native.cuda().compress_workspace_bytes(x.numel())
    return (torch.empty(size, dtype=torch.uint8, device=x.device),)


def _message(grad: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A new packed message for `grad`, its (indices, values) views, and a status scalar."""
    packed = grad.new_zeros(message_nbytes(grad.numel(), k, grad.dtype), dtype=torch.uint8)
    indices, values = unpack(packed, k, grad.numel(), grad.dtype)
    return packed, indices, values, grad.new_zeros((1,), dtype=torch.int64)


# ---- topk ------------------------------------------------------------------------------------


def validate_topk(x, k, by, index_dtype) -> None:
    op = "topk"
    x = check_tensor(op, "x", x, dtypes=FLOAT_DTYPES)
    _check_k(op, k, x.numel())
    if by not in TOPK_BY:
        raise ArgumentError(f"{op}: 'by' must be 'abs' or 'value'; got {by!r}")
    if index_dtype not in INDEX_DTYPES:
        raise ArgumentError(f"{op}: 'index_dtype' must be torch.int32 or torch.int64; got {index_dtype}")
    if index_dtype == torch.int32 and x.numel() > 2**31 - 1:
        raise ArgumentError(f"{op}: int32 indices cannot address {x.numel()} elements; use torch.int64")


def _topk_fake(x, k, by, allow_nan, index_dtype):
    validate_topk(x, k, by, index_dtype)
    return x.new_empty(k), x.new_empty(k, dtype=index_dtype), x.new_empty((1,), dtype=torch.int64)


def _topk_impl(x, k, by, allow_nan, index_dtype):
    validate_topk(x, k, by, index_dtype)
    flat = x.reshape(-1).contiguous()
    values, indices, status = (
        x.new_empty(k),
        x.new_empty(k, dtype=index_dtype),
        x.new_zeros(1, dtype=torch.int64),
    )
    launch(
        "topk",
        flat,
        view(flat),
        k,
        TOPK_BY[by],
        allow_nan,
        view(values),
        view(indices),
        view(status),
        *map(view, _workspace(flat)),
    )
    return values, indices, status


register("topk", _topk_impl, _topk_fake)


# ---- ef21_step and ef14_step -----------------------------------------------------------------


def validate_step(op: str, grad, state_name: str, state, k) -> None:
    grad = _check_grad(op, grad)
    _check_state(op, state_name, state, grad)
    if not grad.is_contiguous():
        raise ArgumentError(f"{op}: 'grad' must be contiguous (a flat gradient bucket)")
    _check_k(op, k, grad.numel())


def _step_fake(grad, state, k, *_):
    return grad.new_empty(message_nbytes(grad.numel(), k, grad.dtype), dtype=torch.uint8), grad.new_empty(
        (1,), dtype=torch.int64
    )


def _ef21_fake(grad, g_i, k, allow_nan):
    validate_step("ef21_step", grad, "g_i", g_i, k)
    return _step_fake(grad, g_i, k)


def _ef21_impl(grad, g_i, k, allow_nan):
    validate_step("ef21_step", grad, "g_i", g_i, k)
    packed, indices, values, status = _message(grad, k)
    launch(
        "ef21_step",
        grad,
        view(grad),
        view(g_i),
        k,
        allow_nan,
        view(values),
        view(indices),
        view(status),
        *map(view, _workspace(grad)),
    )
    return packed, status


def _ef14_fake(grad, error, k, lr, allow_nan):
    validate_step("ef14_step", grad, "error", error, k)
    return _step_fake(grad, error, k)


def _ef14_impl(grad, error, k, lr, allow_nan):
    validate_step("ef14_step", grad, "error", error, k)
    packed, indices, values, status = _message(grad, k)
    launch(
        "ef14_step",
        grad,
        view(grad),
        view(error),
        k,
        lr,
        allow_nan,
        view(values),
        view(indices),
        view(status),
        *map(view, _workspace(grad)),
    )
    return packed, status


register("ef21_step", _ef21_impl, _ef21_fake)
register("ef14_step", _ef14_impl, _ef14_fake)


# ---- decompress_add --------------------------------------------------------------------------


def validate_decompress(out, indices, values) -> None:
    op = "decompress_add"
    out = check_tensor(op, "out", out, dtypes=FLOAT_DTYPES)
    indices = check_tensor(op, "indices", indices, dtypes=INDEX_DTYPES, ndim=2, shape="[W, k]")
    values = check_tensor(op, "values", values, dtypes=(out.dtype,), ndim=2, shape="[W, k]")
    if indices.shape != values.shape:
        raise ArgumentError(
            f"{op}: 'indices' and 'values' must have the same [W, k] shape; got {list(indices.shape)} "
            f"and {list(values.shape)}"
        )
    if not out.is_contiguous():
        raise ArgumentError(f"{op}: 'out' is updated in place and must be contiguous")
    for name, t in (("indices", indices), ("values", values)):
        if t.device != out.device:
            raise ArgumentError(f"{op}: '{name}' is on {t.device} but 'out' is on {out.device}")


def _decompress_fake(out, indices, values, scale):
    validate_decompress(out, indices, values)


def _decompress_impl(out, indices, values, scale):
    validate_decompress(out, indices, values)
    launch("decompress_add", out, view(out), view(indices), view(values), scale)


register("decompress_add", _decompress_impl, _decompress_fake)
