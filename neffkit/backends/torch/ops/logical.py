"""Lowerings of comparisons, logic and bitwise ops: Equal, Less, LessOrEqual, Greater,
GreaterOrEqual, Not, And, Or, Xor, IsNaN, IsInf, Where, BitShift and Bitwise*.

ONNX BitShift defines shifts outside ``[0, bit width)`` (0, or -1 for a negative value
shifted right); torch leaves them to the hardware, so such shifts go through a helper.
uint16/uint32/uint64 compare and compute through int64 (order-preserving keys for uint64).
"""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto as TP
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.dtypes import WIDE_UNSIGNED, in_dtype, torch_dtype, uint64_key
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers, lowers_call
from neffkit.ir.core import Node

_COMPARE = {
    "Equal": torch.eq,
    "Less": torch.lt,
    "LessOrEqual": torch.le,
    "Greater": torch.gt,
    "GreaterOrEqual": torch.ge,
}


@lowers(*_COMPARE)
def compare(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Less(a, b) -> torch.lt(a, b); uint64 compares order-preserving int64 keys
    fn = _COMPARE[node.op_type]
    dt = in_dtype(node)
    a, b = args[0], args[1]
    if dt == TP.UINT64 and node.op_type != "Equal":
        return ctx.call(fn, ctx.call(uint64_key, a), ctx.call(uint64_key, b))
    if dt in (TP.UINT16, TP.UINT32) and node.op_type != "Equal":
        a, b = ctx.method("to", a, torch.int64), ctx.method("to", b, torch.int64)
    return ctx.call(fn, a, b)


@lowers("And", "Or", "Xor")
def logic(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # And(a, b) -> torch.logical_and(a, b)
    fn = {"And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor}
    return ctx.call(fn[node.op_type], args[0], args[1])


@lowers("IsInf")
def isinf(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # IsInf(x) -> torch.isinf / torch.isposinf / torch.isneginf per detect_* attributes
    pos = node.attr("detect_positive", 1)
    neg = node.attr("detect_negative", 1)
    if pos and neg:
        return ctx.call(torch.isinf, args[0])
    if pos:
        return ctx.call(torch.isposinf, args[0])
    if neg:
        return ctx.call(torch.isneginf, args[0])
    return ctx.call(torch.zeros_like, args[0], dtype=torch.bool)


@lowers("Where")
def where(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Where(cond, x, y) -> torch.where(cond, x, y); uint16/32/64 (no CUDA kernel) via int64
    dt = in_dtype(node, 1)
    if dt in WIDE_UNSIGNED:
        x, y = ctx.method("to", args[1], torch.int64), ctx.method("to", args[2], torch.int64)
        return ctx.method("to", ctx.call(torch.where, args[0], x, y), torch_dtype(dt))
    return ctx.call(torch.where, args[0], args[1], args[2])


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


# Op(x) -> torch.fn(x), exact ONNX semantics.
_ONE_CALL = {
    "IsNaN": torch.isnan,
    "Not": torch.logical_not,
}
for _op, _fn in _ONE_CALL.items():
    lowers_call(_op, _fn)
