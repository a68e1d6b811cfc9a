"""Lowerings of bit-level elementwise ops and casts: BitShift, Bitwise*, Cast, CastLike and
BitCast.

ONNX BitShift defines shifts outside ``[0, bit width)`` (0, or -1 for a negative value
shifted right); torch leaves them to the hardware, so such shifts go through a helper.
uint16/uint32/uint64 compute through int64 (torch has few kernels for them); integer
conversions between equal widths keep the bits, so ``x.to(torch.int64)`` reinterprets uint64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from onnx import TensorProto as TP
from torch import Tensor

from neffkit.backends.torch.lowering import LoweringContext
from neffkit.backends.torch.ops.elementwise import (
    FLOAT_TYPES,
    INT_TYPES,
    WIDE_UNSIGNED,
    in_dtype,
    torch_dtype,
)
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node

_BITS = {
    TP.INT8: 8,
    TP.UINT8: 8,
    TP.INT16: 16,
    TP.UINT16: 16,
    TP.INT32: 32,
    TP.UINT32: 32,
    TP.INT64: 64,
    TP.UINT64: 64,
}

# -- runtime helpers (TorchScript-compatible, except bit_view) ---------------------------------


def bit_shift(x: Tensor, s: Tensor, left: bool, bits: int, logical: bool) -> Tensor:
    """ONNX BitShift: shifts outside ``[0, bits)`` give 0 (-1 for negative ``x`` shifted right);
    ``logical`` makes the right shift of an int64-held uint64 fill with zeros."""
    x, s = torch.broadcast_tensors(x, s)
    out_of_range = (s < 0) | (s >= bits)
    s = torch.where(out_of_range, torch.zeros_like(s), s)
    if left:
        y = torch.bitwise_left_shift(x, s)
        return torch.where(out_of_range, torch.zeros_like(y), y)
    y = torch.bitwise_right_shift(x, s)
    if logical:
        keep = torch.bitwise_left_shift(torch.ones_like(s), 64 - s) - 1  # the low 64-s bits
        y = torch.where(s == 0, y, torch.bitwise_and(y, keep))
        return torch.where(out_of_range, torch.zeros_like(y), y)
    fill = torch.where(x < 0, torch.full_like(x, -1), torch.zeros_like(x))
    return torch.where(out_of_range, fill, y)


def nan_where(overflow: Tensor, y: Tensor) -> Tensor:
    """``y`` with NaN where ``overflow`` is set (an unsaturated float8 cast out of range)."""
    return torch.where(overflow, torch.full_like(y, float("nan")), y)


@torch.jit.ignore
def bit_view(x: Tensor, dtype: str) -> Tensor:
    """Reinterprets the bits of ``x`` as ``torch.<dtype>`` (same element size). TorchScript has
    no ``view(dtype)`` (it would read the dtype as a shape), so scripted modules call back into
    Python here."""
    return x.view(getattr(torch, dtype))


# TorchScript reads an ignored function's signature from real annotations, not strings.
bit_view.__annotations__ = {"x": torch.Tensor, "dtype": str, "return": torch.Tensor}


# -- bitwise ----------------------------------------------------------------------------------


@lowers("BitShift")
def bitshift(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # BitShift(x, s, direction) -> torch.bitwise_left_shift / bitwise_right_shift(x, s)
    dt = in_dtype(node)
    left = node.attr("direction") == "LEFT"
    fn = torch.bitwise_left_shift if left else torch.bitwise_right_shift
    x, s = args[0], args[1]
    if dt not in _BITS:
        raise Unsupported("BitShift needs a known integer input type")
    bits = _BITS[dt]
    c = ctx.input_constant(1)
    if c is not None and dt not in WIDE_UNSIGNED and bool(np.all((c >= 0) & (c < bits))):
        return ctx.call(fn, x, s)  # in-range constant shifts: torch's shift is exact
    if dt in WIDE_UNSIGNED:
        x, s = ctx.method("to", x, torch.int64), ctx.method("to", s, torch.int64)
        out = ctx.call(bit_shift, x, s, left, bits, dt == TP.UINT64)
        return ctx.method("to", out, torch_dtype(dt))
    return ctx.call(bit_shift, x, s, left, bits, False)


@lowers("BitwiseAnd", "BitwiseOr", "BitwiseXor")
def bitwise(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # BitwiseAnd(a, b) -> torch.bitwise_and(a, b); uint16/32/64 (no CUDA kernels) via int64
    fn = {
        "BitwiseAnd": torch.bitwise_and,
        "BitwiseOr": torch.bitwise_or,
        "BitwiseXor": torch.bitwise_xor,
    }[node.op_type]
    dt = in_dtype(node)
    if dt in WIDE_UNSIGNED:
        a, b = ctx.method("to", args[0], torch.int64), ctx.method("to", args[1], torch.int64)
        return ctx.method("to", ctx.call(fn, a, b), torch_dtype(dt))
    return ctx.call(fn, args[0], args[1])


@lowers("BitwiseNot")
def bitwise_not(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # BitwiseNot(x) -> torch.bitwise_not(x); uint16/32/64 through int64 (same low bits)
    dt = in_dtype(node)
    if dt in WIDE_UNSIGNED:
        wide = ctx.call(torch.bitwise_not, ctx.method("to", args[0], torch.int64))
        return ctx.method("to", wide, torch_dtype(dt))
    return ctx.call(torch.bitwise_not, args[0])


# -- casts ------------------------------------------------------------------------------------

# Largest finite value of each float8 type, and (E4M3FN only) the magnitude above which an
# unsaturated cast overflows: torch saturates E4M3FN where ONNX (saturate=0) gives NaN.
_FLOAT8_MAX = {
    TP.FLOAT8E4M3FN: 448.0,
    TP.FLOAT8E4M3FNUZ: 240.0,
    TP.FLOAT8E5M2: 57344.0,
    TP.FLOAT8E5M2FNUZ: 57344.0,
}
_E4M3FN_OVERFLOW = 464.0


def cast_to(ctx: LoweringContext, x: Arg, src: int | None, to: int, saturate: bool) -> Any:
    """Emits the ONNX cast of ``x`` (element type ``src``, None if unknown) to ``to``."""
    if to == TP.STRING or src == TP.STRING:
        raise Unsupported("casts from or to string tensors")
    if to == TP.FLOAT8E8M0 or src == TP.FLOAT8E8M0:
        raise Unsupported("FLOAT8E8M0 casts (rounding modes are not implemented)")
    dt = torch_dtype(to)
    if src == to:
        return x
    from_float8 = src in _FLOAT8_MAX
    if to in _FLOAT8_MAX and not from_float8:
        limit = _FLOAT8_MAX[to]
        if saturate:
            # ONNX clips to the finite range (infinities included) before rounding
            return ctx.method("to", ctx.call(torch.clamp, x, -limit, limit), dt)
        if to == TP.FLOAT8E4M3FN:
            y = ctx.method("to", x, dt)
            over = ctx.call(torch.gt, ctx.call(torch.abs, x), _E4M3FN_OVERFLOW)
            return ctx.call(nan_where, over, y)
    return ctx.method("to", x, dt)


@lowers("Cast")
def cast(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Cast(x, to) -> x.to(dtype); float8 targets clamp first when saturate=1
    return cast_to(ctx, args[0], in_dtype(node), node.attr("to"), bool(node.attr("saturate", 1)))


@lowers("CastLike")
def cast_like(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # CastLike(x, like) -> x.to(like's dtype), or x.type_as(like) when it is known at run time
    to = in_dtype(node, 1)
    if to is None:
        return ctx.method("type_as", args[0], args[1])
    return cast_to(ctx, args[0], in_dtype(node), to, bool(node.attr("saturate", 1)))


@lowers("BitCast")
def bitcast(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # BitCast(x, to) -> x.to(dtype) between integers of one width, else a bit view
    src, to = in_dtype(node), node.attr("to")
    if src is None:
        raise Unsupported("BitCast needs a known input type")
    if src == to:
        return args[0]
    dt = torch_dtype(to)
    src_dt = torch_dtype(src)
    if src_dt.itemsize != dt.itemsize:
        raise Unsupported("BitCast between types of different widths")
    ints = INT_TYPES | {TP.BOOL}
    if src in ints and to in ints and (to != TP.BOOL):
        return ctx.method("to", args[0], dt)  # equal-width integer conversion keeps the bits
    if src in FLOAT_TYPES | ints | set(_FLOAT8_MAX) and dt.itemsize in (1, 2, 4, 8):
        return ctx.call(bit_view, args[0], str(dt).removeprefix("torch."))
    raise Unsupported(f"BitCast from {src_dt} to {dt}")
