"""Lowering-time helpers of the shape, layout and indexing lowerings: constant shape-like inputs
as Python lists (``x.reshape([1, 3, 224, 224])``), optional inputs, static shapes and ranks, and
``int_list``, which reads a shape tensor at run time (TorchScript subset).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.convert import to_torch
from neffkit.backends.torch.registry import Arg, Unsupported
from neffkit.ir.core import Node, Value
from neffkit.ir.tensor import np_dtype


def torch_dtype(elem_type: int) -> torch.dtype:
    """The torch dtype of an ONNX element type (``Unsupported`` for strings and the like)."""
    try:
        return to_torch(np.zeros(0, dtype=np_dtype(elem_type))).dtype
    except Unsupported:
        raise
    except Exception as e:  # noqa: BLE001 - unknown or unmappable element type
        raise Unsupported(f"element type {elem_type} has no torch dtype ({e})") from e


def const_ints(ctx: LoweringContext, i: int) -> list[int] | None:
    """Input ``i`` as a list of Python ints when it is known while lowering (a constant, or a
    shape computation over static dims), else None."""
    c = ctx.input_constant(i)
    if c is not None:
        return [int(v) for v in np.asarray(c).reshape(-1)]
    known = sym_ints(ctx, i)
    if known is None or not all(isinstance(e, int) for e in known):
        return None
    return known


def sym_ints(ctx: LoweringContext, i: int) -> list[Any] | None:
    """Input ``i`` as a list of Python ints and fx nodes of run-time sizes (``x.size(1)``) when
    it is a shape computation the lowering followed, else None."""
    assert ctx.node is not None
    ins = ctx.node.inputs
    known = ctx.known_ints(ins[i]) if i < len(ins) else None
    return None if known is None else list(known[0])


def ints_arg(ctx: LoweringContext, i: int, args: list[Arg], *, symbolic: bool = False) -> Any:
    """Input ``i`` as a static list when known, else an emitted ``int_list(t)`` call.

    With ``symbolic`` the list may hold fx nodes of run-time sizes (for torch calls that take
    ``List[int]``: under torch.compile and export they are SymInts, not tensor reads).
    """
    c = const_ints(ctx, i)
    if c is not None:
        return c
    if symbolic:
        known = sym_ints(ctx, i)
        if known is not None:
            return known
    return ctx.call(int_list, args[i])


def has_input(node: Node, i: int) -> bool:
    """True when optional input ``i`` is present."""
    return i < len(node.inputs) and node.inputs[i] is not None


def static_shape(v: Value | None) -> tuple[int, ...] | None:
    """The fully known shape of a value, else None."""
    if v is None or v.shape is None:
        return None
    if all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v.shape):
        return tuple(int(d) for d in v.shape)
    return None


def rank_of(v: Value | None) -> int | None:
    """The rank of a value when known, else None."""
    if v is None or v.shape is None:
        return None
    return len(v.shape)


def device_of(ctx: LoweringContext, x: Arg) -> Any:
    """Emits ``x.device`` (new tensors go where the inputs are)."""
    return ctx.call(getattr, x, "device")


def int_list(t: Tensor) -> list[int]:
    """The values of a shape-like integer tensor as a list (for torch's List[int] args)."""
    return torch.jit.annotate(list[int], t.reshape(-1).to(torch.int64).tolist())
