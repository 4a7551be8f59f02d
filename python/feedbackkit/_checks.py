"""Argument checks shared by every op. Messages name the op, the argument, what was expected
and what was given."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ._errors import ArgumentError

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
MASK_DTYPES = (torch.bool, torch.uint8, torch.int32, torch.int64)
INDEX_DTYPES = (torch.int32, torch.int64)


def _names(dtypes: Iterable[torch.dtype]) -> str:
    return ", ".join(str(d).replace("torch.", "") for d in dtypes)


def check_tensor(
    op: str,
    name: str,
    value: object,
    *,
    dtypes: tuple[torch.dtype, ...],
    ndim: int | None = None,
    shape: str = "",
) -> torch.Tensor:
    """Checks type, dtype and rank; `shape` documents the expected shape, e.g. "[B, T]"."""
    if not isinstance(value, torch.Tensor):
        raise ArgumentError(f"{op}: '{name}' must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in dtypes:
        raise ArgumentError(f"{op}: '{name}' must have dtype {_names(dtypes)}; got {str(value.dtype)[6:]}")
    if ndim is not None and value.dim() != ndim:
        raise ArgumentError(
            f"{op}: '{name}' must be {ndim}-D {shape}".rstrip() + f"; got shape {list(value.shape)}"
        )
    return value


def check_same_device(op: str, reference: str, tensors: dict[str, torch.Tensor | None]) -> None:
    """Every non-None tensor must live on the device of tensors[reference]."""
    device = tensors[reference].device  # type: ignore[union-attr]
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ArgumentError(f"{op}: '{name}' is on {t.device} but '{reference}' is on {device}")


def check_choice(op: str, name: str, value: object, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ArgumentError(f"{op}: '{name}' must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
