"""Lowerings of elementwise math: Add, Sub, Mul, Div, Mod, Pow, Abs, the variadic Max, Min, Sum and
Mean, Clip, and the one-input math functions (Neg, Reciprocal, Sqrt, Exp, Log, Erf, rounding,
trigonometric and hyperbolic functions).

Most ops map 1:1 to a torch builtin. The exceptions follow ONNX where torch differs: integer
Div truncates toward zero, Pow keeps the base's dtype, and uint16/uint32/uint64 (which torch
stores but barely computes with) go through int64, with order-preserving keys for uint64.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from onnx import TensorProto as TP
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.dtypes import (
    FLOAT_TYPES,
    INT_TYPES,
    WIDE_UNSIGNED,
    in_dtype,
    torch_dtype,
    uint64_from_key,
    uint64_key,
)
from neffkit.backends.torch.helpers.shapes import rank_of
from neffkit.backends.torch.registry import Arg, Lowered, lowers, lowers_call
from neffkit.ir.core import Node


def uint64_divmod(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Unsigned 64-bit quotient and remainder, computed on int64 bit patterns."""
    a, b = torch.broadcast_tensors(a.to(torch.int64), b.to(torch.int64))
    big_b = b < 0  # b >= 2**63: the quotient is 0 or 1
    b_safe = torch.where(big_b, torch.ones_like(b), b)
    half = torch.bitwise_and(torch.bitwise_right_shift(a, 1), 9223372036854775807)
    q = torch.bitwise_left_shift(torch.div(half, b_safe, rounding_mode="floor"), 1)
    r = a - q * b_safe
    q = q + (uint64_key(r) >= uint64_key(b_safe)).to(torch.int64)
    q = torch.where(big_b, (uint64_key(a) >= uint64_key(b)).to(torch.int64), q)
    r = a - q * b
    return q.to(torch.uint64), r.to(torch.uint64)


def div_like_onnx(a: Tensor, b: Tensor) -> Tensor:
    """ONNX Div when the dtype is known only at run time: integers truncate toward zero."""
    if a.is_floating_point() or a.is_complex():
        return torch.div(a, b)
    return torch.div(a, b, rounding_mode="trunc")


def _widened(
    ctx: LoweringContext, dt: int | None, args: list[Arg], fn: Callable[..., Any], **kw: Any
) -> Any:
    """``fn(*args)``, through int64 for uint16/32/64 (same bits modulo 2**n), cast back."""
    if dt not in WIDE_UNSIGNED:
        return ctx.call(fn, *args, **kw)
    wide = [ctx.method("to", a, torch.int64) for a in args]
    return ctx.method("to", ctx.call(fn, *wide, **kw), torch_dtype(dt))


# Element types whose one-element constants become Python numbers of the same value (a float32
# scale is the float of its float32 value): the result keeps the tensor operand's dtype.
_SCALAR_TYPES = {TP.FLOAT, TP.DOUBLE, TP.FLOAT16, TP.BFLOAT16, TP.INT32, TP.INT64}
_OPERATORS = {
    "Add": operator.add,
    "Sub": operator.sub,
    "Mul": operator.mul,
    "Div": operator.truediv,
}


def _with_scalar(ctx: LoweringContext, node: Node, args: list[Arg]) -> Any:
    """``x * 0.125`` for a binary op with one one-element constant operand, else None.

    Torch's compilers see the constant as a Python number, not a 0-d tensor (inductor's
    attention fusion needs a float ``scale``); it is used only where it cannot change the
    result's shape: 0-d, or of a rank the other operand's known rank covers.
    """
    dt = in_dtype(node)
    if dt not in _SCALAR_TYPES or in_dtype(node, 1) != dt or len(args) < 2:
        return None
    if node.op_type == "Div" and dt not in FLOAT_TYPES:
        return None  # integer Div truncates toward zero; Python's / and // do not
    consts = [ctx.input_constant(0), ctx.input_constant(1)]
    for i in (1, 0):
        c, other = consts[i], node.inputs[1 - i]
        if c is None or c.size != 1 or consts[1 - i] is not None:
            continue
        rank = rank_of(other)
        if c.ndim and (rank is None or rank < c.ndim):
            continue
        # float() / int(): a bfloat16 element's .item() is no Python number
        x = float(c.reshape(-1)[0]) if dt in FLOAT_TYPES else int(c.reshape(-1)[0])
        operands = (args[0], x) if i == 1 else (x, args[1])
        return ctx.call(_OPERATORS[node.op_type], *operands)
    return None


@lowers("Add", "Sub", "Mul")
def add_sub_mul(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Add(a, b) -> torch.add(a, b); Mul(x, c) -> x * 0.5 for a one-element constant c;
    # uint16/32/64 through int64
    scalar = _with_scalar(ctx, node, args)
    if scalar is not None:
        return scalar
    fn = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul}[node.op_type]
    return _widened(ctx, in_dtype(node), args[:2], fn)


@lowers("Div")
def div(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Div(a, b) -> torch.div(a, b); Div(x, c) -> x / 8.0 for a one-element float constant c;
    # integers truncate toward zero (C-style)
    dt = in_dtype(node)
    scalar = _with_scalar(ctx, node, args)
    if scalar is not None:
        return scalar
    if dt in FLOAT_TYPES:
        return ctx.call(torch.div, args[0], args[1])
    if dt == TP.UINT64:
        return ctx.getitem(ctx.call(uint64_divmod, args[0], args[1]), 0)
    if dt in INT_TYPES:
        return _widened(ctx, dt, args[:2], torch.div, rounding_mode="trunc")
    return ctx.call(div_like_onnx, args[0], args[1])


@lowers("Mod")
def mod(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Mod(a, b, fmod=0) -> torch.remainder (sign of b); fmod=1 -> torch.fmod (sign of a)
    dt = in_dtype(node)
    if dt == TP.UINT64:
        return ctx.getitem(ctx.call(uint64_divmod, args[0], args[1]), 1)
    fn = torch.fmod if node.attr("fmod", 0) else torch.remainder
    return _widened(ctx, dt, args[:2], fn)


@lowers("Pow")
def pow_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Pow(a, b) -> torch.pow(a, b), cast back to a's dtype when b's dtype differs
    a_dt, b_dt = in_dtype(node, 0), in_dtype(node, 1)
    base, exponent = args[0], args[1]
    if b_dt in WIDE_UNSIGNED:
        exponent = ctx.method("to", exponent, torch.int64)
    if a_dt in WIDE_UNSIGNED:
        base = ctx.method("to", base, torch.int64)
    c = ctx.input_constant(1)
    if c is not None and c.size == 1 and c.ndim == 0 and a_dt in FLOAT_TYPES:
        # only a 0-d exponent: a one-element [1] exponent still broadcasts a scalar base up
        exponent = c.item()  # x ** 2.0 -> torch.pow(x, 2.0)
        if exponent == 2:
            return ctx.call(torch.square, base)
        b_dt = a_dt
    out = ctx.call(torch.pow, base, exponent)
    if a_dt is not None and b_dt is not None:
        if a_dt != b_dt or a_dt in WIDE_UNSIGNED:
            out = ctx.method("to", out, torch_dtype(a_dt))
        return out
    return ctx.method("type_as", out, args[0])


@lowers("Abs")
def abs_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Abs(x) -> torch.abs(x); unsigned values are their own absolute value
    if in_dtype(node) in WIDE_UNSIGNED:
        return args[0]
    return ctx.call(torch.abs, args[0])


@lowers("Clip")
def clip(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Clip(x, min, max) -> torch.clamp(x, min, max); constant bounds become Python numbers
    x = args[0]
    dt = in_dtype(node)
    if ctx.opset < 11:
        lo, hi = node.attr("min"), node.attr("max")
        bounds: list[Any] = [lo, hi]
    else:
        bounds = []
        for i in (1, 2):
            if i >= len(args) or args[i] is None:
                bounds.append(None)
                continue
            c = ctx.input_constant(i)
            bounds.append(args[i] if c is None else c.reshape(-1)[0].item())
    if bounds[0] is None and bounds[1] is None:
        return x
    tensors = [b for b in bounds if isinstance(b, torch.fx.Node)]
    if tensors and len(tensors) < len([b for b in bounds if b is not None]):
        # torch.clamp takes numbers or tensors, not a mix: use the tensor inputs for both
        bounds = [args[i] if bounds[i - 1] is not None else None for i in (1, 2)]
    if dt in WIDE_UNSIGNED:
        wide = [
            ctx.method("to", b, torch.int64) if isinstance(b, torch.fx.Node) else b
            for b in [x, *bounds]
        ]
        return ctx.method("to", ctx.call(torch.clamp, *wide), torch_dtype(dt))
    return ctx.call(torch.clamp, x, *bounds)


def _fold(ctx: LoweringContext, args: list[Arg], fn: Callable[..., Any]) -> Any:
    out = args[0]
    for a in args[1:]:
        out = fn(out, a)
    return out


@lowers("Max", "Min")
def max_min(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Max(a, b, c) -> torch.maximum(torch.maximum(a, b), c); NaN propagates as in ONNX
    dt = in_dtype(node)
    is_max = node.op_type == "Max"
    ins = [a for a in args if a is not None]
    if dt == TP.UINT64:
        # compare order-preserving int64 keys, keep the larger (smaller) key, map it back
        cmp = torch.gt if is_max else torch.lt
        keys = [ctx.call(uint64_key, a) for a in ins]

        def pick(a: Any, b: Any) -> Any:
            return ctx.call(torch.where, ctx.call(cmp, a, b), a, b)

        return ctx.call(uint64_from_key, _fold(ctx, keys, pick))
    fn = torch.maximum if is_max else torch.minimum
    if dt in WIDE_UNSIGNED:
        ins = [ctx.method("to", a, torch.int64) for a in ins]
        out = _fold(ctx, ins, lambda a, b: ctx.call(fn, a, b))
        return ctx.method("to", out, torch_dtype(dt))
    return _fold(ctx, ins, lambda a, b: ctx.call(fn, a, b))


@lowers("Sum", "Mean")
def sum_mean(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Sum(a, b, c) -> a + b + c; Mean -> (a + b + c) / 3
    ins = [a for a in args if a is not None]
    out = _widened_fold(ctx, in_dtype(node), ins)
    if node.op_type == "Mean" and len(ins) > 1:
        out = ctx.call(torch.div, out, len(ins))
    return out


def _widened_fold(ctx: LoweringContext, dt: int | None, ins: list[Arg]) -> Any:
    if dt in WIDE_UNSIGNED:
        wide = [ctx.method("to", a, torch.int64) for a in ins]
        out = _fold(ctx, wide, lambda a, b: ctx.call(torch.add, a, b))
        return ctx.method("to", out, torch_dtype(dt))
    return _fold(ctx, ins, lambda a, b: ctx.call(torch.add, a, b))


# Op(x) -> torch.fn(x), exact ONNX semantics (Round is half-to-even in both).
_ONE_CALL = {
    "Neg": torch.neg,
    "Reciprocal": torch.reciprocal,
    "Sqrt": torch.sqrt,
    "Exp": torch.exp,
    "Log": torch.log,
    "Erf": torch.erf,
    "Ceil": torch.ceil,
    "Floor": torch.floor,
    "Round": torch.round,
    "Sign": torch.sign,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Tan": torch.tan,
    "Asin": torch.asin,
    "Acos": torch.acos,
    "Atan": torch.atan,
    "Sinh": torch.sinh,
    "Cosh": torch.cosh,
    "Asinh": torch.asinh,
    "Acosh": torch.acosh,
    "Atanh": torch.atanh,
}
for _op, _fn in _ONE_CALL.items():
    lowers_call(_op, _fn)
