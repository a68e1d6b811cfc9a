"""Lowerings of elementwise ops: arithmetic, math functions, activations, Clip, variadic
Max/Min/Mean/Sum, comparisons and logic, IsNaN/IsInf and Where.

Most ops map 1:1 to a torch builtin. The exceptions follow ONNX where torch differs: integer
Div truncates toward zero, Pow keeps the base's dtype, and uint16/uint32/uint64 (which torch
stores but barely computes with) go through int64, with order-preserving keys for uint64.
Bitwise ops and casts live in ``elementwise_bits``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from onnx import TensorProto as TP
from torch import Tensor

from neffkit.backends.torch.lowering import LoweringContext, constant_attr_value
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node, Value

# -- dtypes -------------------------------------------------------------------------------------

TORCH_DTYPES: dict[int, torch.dtype] = {
    TP.FLOAT: torch.float32,
    TP.DOUBLE: torch.float64,
    TP.FLOAT16: torch.float16,
    TP.BFLOAT16: torch.bfloat16,
    TP.INT8: torch.int8,
    TP.INT16: torch.int16,
    TP.INT32: torch.int32,
    TP.INT64: torch.int64,
    TP.UINT8: torch.uint8,
    TP.UINT16: torch.uint16,
    TP.UINT32: torch.uint32,
    TP.UINT64: torch.uint64,
    TP.BOOL: torch.bool,
    TP.COMPLEX64: torch.complex64,
    TP.COMPLEX128: torch.complex128,
    TP.FLOAT8E4M3FN: torch.float8_e4m3fn,
    TP.FLOAT8E4M3FNUZ: torch.float8_e4m3fnuz,
    TP.FLOAT8E5M2: torch.float8_e5m2,
    TP.FLOAT8E5M2FNUZ: torch.float8_e5m2fnuz,
}
FLOAT_TYPES = {TP.FLOAT, TP.DOUBLE, TP.FLOAT16, TP.BFLOAT16}
INT_TYPES = {TP.INT8, TP.INT16, TP.INT32, TP.INT64, TP.UINT8, TP.UINT16, TP.UINT32, TP.UINT64}
# Unsigned types torch stores but has few kernels for: computed through int64.
WIDE_UNSIGNED = {TP.UINT16, TP.UINT32, TP.UINT64}


def torch_dtype(elem_type: int) -> torch.dtype:
    """The torch dtype of an ONNX element type; ``Unsupported`` when torch has none."""
    dt = TORCH_DTYPES.get(elem_type)
    if dt is None:
        from neffkit.ir.tensor import dtype_name

        raise Unsupported(f"torch has no dtype for ONNX {dtype_name(elem_type)}")
    return dt


# Ops whose output has the element type of the input at that index.
_SAME_AS_INPUT = dict.fromkeys(
    "Abs Acos Acosh Add Asin Asinh Atan Atanh BitShift BitwiseAnd BitwiseNot BitwiseOr "
    "BitwiseXor Ceil Celu Clip Compress Concat Cos Cosh CumProd CumSum DepthToSpace Det Div "
    "Dropout Elu Erf Exp Expand Flatten Floor Gather GatherElements GatherND Gelu Gemm "
    "HardSigmoid HardSwish Hardmax Identity LeakyRelu Log LogSoftmax MatMul Max Mean Min Mish "
    "Mod Mul Neg Pad PRelu Pow Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp "
    "ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Round "
    "Selu Shrink Sigmoid Sign Sin Sinh Slice Softmax Softplus Softsign SpaceToDepth Sqrt "
    "Squeeze Sub Sum Swish Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unique "
    "Unsqueeze".split(),
    0,
) | {"Where": 1, "Range": 0}
_BOOL_OUT = set("Equal Less LessOrEqual Greater GreaterOrEqual Not And Or Xor IsNaN IsInf".split())
_INT64_OUT = set("Shape Size ArgMax ArgMin NonZero".split())


def value_dtype(value: Value | None, depth: int = 32) -> int | None:
    """The ONNX element type of a value: declared, or followed through its producer when the
    model does not record it (most intermediate values), else None."""
    if value is None:
        return None
    if value.dtype:
        return value.dtype
    node = value.producer
    if node is None or node.domain != "" or depth <= 0:
        return None
    op = node.op_type
    if value.index == 0 and op in _BOOL_OUT:
        return TP.BOOL
    if (value.index == 0 and op in _INT64_OUT) or (op == "TopK" and value.index == 1):
        return TP.INT64
    if op == "Cast":
        return node.attr("to")
    if op == "CastLike":
        return value_dtype(node.inputs[1], depth - 1)
    if op == "Constant":
        try:
            return onnx_dtype_of(constant_attr_value(node))
        except Unsupported:
            return None
    i = _SAME_AS_INPUT.get(op)
    if i is not None and value.index == 0 and i < len(node.inputs):
        return value_dtype(node.inputs[i], depth - 1)
    return None


def onnx_dtype_of(arr: np.ndarray) -> int:
    """The ONNX element type of a numpy array."""
    from neffkit.ir.tensor import onnx_dtype

    return onnx_dtype(arr.dtype)


def in_dtype(node: Node, i: int = 0) -> int | None:
    """The element type of input ``i`` of ``node`` (None when unknown or absent)."""
    return value_dtype(node.inputs[i]) if i < len(node.inputs) else None


def attr_float(node: Node, name: str, default: float) -> float:
    """A float attribute, printed as its shortest float32 spelling (0.2, not 0.2000000029...)."""
    return float(str(np.float32(node.attr(name, default))))


# -- runtime helpers (TorchScript-compatible) --------------------------------------------------


def uint64_key(x: Tensor) -> Tensor:
    """uint64 bits as int64 keys that order like the unsigned values (sign bit flipped)."""
    return torch.bitwise_xor(x.to(torch.int64), -9223372036854775807 - 1)


def uint64_from_key(key: Tensor) -> Tensor:
    """The inverse of :func:`uint64_key`."""
    return torch.bitwise_xor(key, -9223372036854775807 - 1).to(torch.uint64)


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


def shrink(x: Tensor, lambd: float, bias: float) -> Tensor:
    """ONNX Shrink: x+bias below -lambd, x-bias above lambd, else 0."""
    zero = torch.zeros_like(x)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero))


# -- arithmetic -------------------------------------------------------------------------------


def _widened(
    ctx: LoweringContext, dt: int | None, args: list[Arg], fn: Callable[..., Any], **kw: Any
) -> Any:
    """``fn(*args)``, through int64 for uint16/32/64 (same bits modulo 2**n), cast back."""
    if dt not in WIDE_UNSIGNED:
        return ctx.call(fn, *args, **kw)
    wide = [ctx.method("to", a, torch.int64) for a in args]
    return ctx.method("to", ctx.call(fn, *wide, **kw), torch_dtype(dt))


@lowers("Add", "Sub", "Mul")
def add_sub_mul(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Add(a, b) -> torch.add(a, b); uint16/32/64 through int64
    fn = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul}[node.op_type]
    return _widened(ctx, in_dtype(node), args[:2], fn)


@lowers("Div")
def div(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Div(a, b) -> torch.div(a, b); integers truncate toward zero (C-style)
    dt = in_dtype(node)
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


def _unary(fn: Callable[..., Any]) -> Callable[[LoweringContext, Node, list[Arg]], Lowered]:
    def lower(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
        return ctx.call(fn, args[0])

    return lower


# Op(x) -> torch.fn(x), exact ONNX semantics (Round is half-to-even in both).
_UNARY = {
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
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Softsign": F.softsign,
    "Softplus": F.softplus,
    "Mish": F.mish,
    "HardSwish": F.hardswish,
    "IsNaN": torch.isnan,
    "Not": torch.logical_not,
    "Det": torch.linalg.det,
}
for _op, _fn in _UNARY.items():
    lowers(_op)(_unary(_fn))


@lowers("Abs")
def abs_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Abs(x) -> torch.abs(x); unsigned values are their own absolute value
    if in_dtype(node) in WIDE_UNSIGNED:
        return args[0]
    return ctx.call(torch.abs, args[0])


# -- activations with attributes --------------------------------------------------------------


@lowers("LeakyRelu")
def leaky_relu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # LeakyRelu(x, alpha) -> F.leaky_relu(x, alpha)
    return ctx.call(F.leaky_relu, args[0], attr_float(node, "alpha", 0.01))


@lowers("PRelu")
def prelu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # PRelu(x, slope) -> torch.where(x < 0, x * slope, x) (slope broadcasts to x)
    x, slope = args[0], args[1]
    return ctx.call(torch.where, ctx.call(torch.lt, x, 0), ctx.call(torch.mul, x, slope), x)


@lowers("Elu")
def elu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Elu(x, alpha) -> F.elu(x, alpha)
    return ctx.call(F.elu, args[0], attr_float(node, "alpha", 1.0))


@lowers("Selu")
def selu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Selu(x, alpha, gamma) -> gamma * F.elu(x, alpha)
    alpha = attr_float(node, "alpha", 1.67326319217681884765625)
    gamma = attr_float(node, "gamma", 1.05070102214813232421875)
    return ctx.call(torch.mul, ctx.call(F.elu, args[0], alpha), gamma)


@lowers("Celu")
def celu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Celu(x, alpha) -> F.celu(x, alpha)
    return ctx.call(F.celu, args[0], attr_float(node, "alpha", 1.0))


@lowers("Gelu")
def gelu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Gelu(x, approximate) -> F.gelu(x, approximate="none" | "tanh")
    approximate = node.attr("approximate", "none")
    if approximate == "none":
        return ctx.call(F.gelu, args[0])
    return ctx.call(F.gelu, args[0], approximate=approximate)


@lowers("HardSigmoid")
def hard_sigmoid(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # HardSigmoid(x, alpha, beta) -> torch.clamp(x * alpha + beta, 0, 1)
    alpha = attr_float(node, "alpha", 0.2)
    beta = attr_float(node, "beta", 0.5)
    y = ctx.call(torch.add, ctx.call(torch.mul, args[0], alpha), beta)
    return ctx.call(torch.clamp, y, 0.0, 1.0)


@lowers("Swish")
def swish(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Swish(x, alpha) -> x * torch.sigmoid(alpha * x); alpha=1 -> F.silu(x)
    alpha = attr_float(node, "alpha", 1.0)
    if alpha == 1.0:
        return ctx.call(F.silu, args[0])
    gate = ctx.call(torch.sigmoid, ctx.call(torch.mul, args[0], alpha))
    return ctx.call(torch.mul, args[0], gate)


@lowers("ThresholdedRelu")
def thresholded_relu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ThresholdedRelu(x, alpha) -> F.threshold(x, alpha, 0.0) (x where x > alpha, else 0)
    return ctx.call(F.threshold, args[0], attr_float(node, "alpha", 1.0), 0.0)


@lowers("Shrink")
def shrink_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Shrink(x, lambd, bias) -> F.hardshrink when bias=0, F.softshrink when bias=lambd
    lambd = attr_float(node, "lambd", 0.5)
    bias = attr_float(node, "bias", 0.0)
    if in_dtype(node) in FLOAT_TYPES and lambd >= 0:
        if bias == 0.0:
            return ctx.call(F.hardshrink, args[0], lambd)
        if bias == lambd:
            return ctx.call(F.softshrink, args[0], lambd)
    return ctx.call(shrink, args[0], lambd, bias)


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


# -- variadic ---------------------------------------------------------------------------------


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


# -- comparisons and logic --------------------------------------------------------------------

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
