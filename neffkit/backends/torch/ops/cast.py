"""Lowerings of type conversions: Cast, CastLike and BitCast.

uint16/uint32/uint64 compute through int64 (torch has few kernels for them); integer
conversions between equal widths keep the bits, so ``x.to(torch.int64)`` reinterprets uint64.

int4 / uint4 / int2 / uint2 / float4e2m1 / float8e8m0 values live in carrier dtypes (int8, uint8,
float32: see ``convert.CARRIERS``); casts to them follow neffkit's own rules, stated in numpy
in ``neffkit.ir.casts`` (which constant folding uses) and held equal to these helpers by the
tests, whatever the installed ml_dtypes does where the spec leaves a cast undefined.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from onnx import TensorProto as TP
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.convert import CARRIERS, SUBBYTE_INTS, carrier_dtype
from neffkit.backends.torch.helpers.dtypes import FLOAT_TYPES, INT_TYPES, in_dtype, torch_dtype
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node


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


def wrap_int_bits(x: Tensor, bits: int, signed: bool, carrier: torch.dtype) -> Tensor:
    """Cast to a ``bits``-wide integer (int4, uint2, ...) held in ``carrier``, by
    ``neffkit.ir.casts``' rules: floats truncate toward zero, then every value keeps its low
    ``bits`` bits (two's complement), like the ONNX integer-to-integer cast. Floats outside the
    int32 range, NaN and infinities give 0 (the spec leaves out-of-range float casts
    undefined)."""
    if x.is_floating_point():
        xf = x if x.dtype == torch.float64 else x.float()
        t = torch.trunc(xf)
        ok = (t >= -2147483648.0) & (t <= 2147483647.0)  # false for NaN
        v = torch.where(ok, t, torch.zeros_like(t)).to(torch.int64)
    else:
        v = x.to(torch.int64)
    v = torch.bitwise_and(v, (1 << bits) - 1)
    if signed:
        v = torch.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v.to(carrier)


def round_fp4(x: Tensor) -> Tensor:
    """Cast to FLOAT4E2M1 (values 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives) as float32:
    round to nearest even, saturate at +-6 (infinities included), NaN to 0 with NaN's sign
    (``neffkit.ir.casts.to_fp4``); the type has no Inf or NaN."""
    xf = x if x.dtype == torch.float64 else x.float()
    a = torch.clamp(torch.abs(xf), max=6.0)
    # the spacing of representable values: 0.5 below 2, 1 in [2, 4), 2 in [4, 6]
    step = torch.where(
        a < 2.0,
        torch.full_like(a, 0.5),
        torch.where(a < 4.0, torch.ones_like(a), torch.full_like(a, 2.0)),
    )
    q = torch.round(a / step) * step  # torch.round rounds half to even
    q = torch.where(torch.isnan(q), torch.zeros_like(q), q)
    return torch.copysign(q, xf).float()


def round_e8m0(x: Tensor, saturate: bool, round_mode: str) -> Tensor:
    """Cast to FLOAT8E8M0 (powers of two 2^-127 .. 2^127, and NaN) as float32.

    Finite values follow the reference ``onnx.numpy_helper.to_float8e8m0`` bit for bit: the
    input is read as float32, its sign is ignored, its exponent is kept and moved up by one when
    ``round_mode`` is "up" and any mantissa bit is set, or "nearest" and the mantissa is >= 1.5
    (ties up); saturation stops at 2^127, else the step past it gives NaN. Subnormal float32
    inputs: 2^-127 ("down", or "nearest" up to 2^-127 included), else 2^-126.

    Where the reference disagrees with the spec's table we follow the table: with saturate, Inf
    gives E8M0_MAX (the reference gives NaN) and values below E8M0_MIN give E8M0_MIN (the
    reference rounds nonzero subnormals "up" to 2^-126); without saturate and "nearest", values
    below E8M0_MIN (0 included) and above E8M0_MAX give NaN (the reference gives 2^-127, and
    E8M0_MAX for values under 1.5 * 2^127).
    """
    e8m0_min = 5.877471754111438e-39  # 2^-127 (TorchScript reads no module-level floats)
    e8m0_max = 1.7014118346046923e38  # 2^127
    f32_min_normal = 1.1754943508222875e-38  # 2^-126
    xf = x.float()
    a = torch.abs(xf)
    m, _ = torch.frexp(a)  # a = m * 2^e, m in [0.5, 1)
    p = a / (m * 2.0)  # 2^floor(log2(a)), exact for normal a
    if round_mode == "up":
        inc = m != 0.5
    elif round_mode == "nearest":
        inc = m >= 0.75
    else:
        inc = torch.zeros_like(a, dtype=torch.bool)
    if saturate:
        inc = inc & (p != e8m0_max)
    y = torch.where(inc, p * 2.0, p)  # 2^127 * 2 overflows to Inf, turned into NaN below
    nan = torch.full_like(a, float("nan"))
    # zero and subnormal inputs (exponent field 0)
    tiny_up = a > 0.0 if round_mode == "up" else a > e8m0_min
    if round_mode == "down":
        tiny_up = torch.zeros_like(tiny_up)
    tiny = torch.where(tiny_up, torch.full_like(a, f32_min_normal), torch.full_like(a, e8m0_min))
    y = torch.where(a < f32_min_normal, tiny, y)
    y = torch.where(torch.isinf(y), nan, y)
    if saturate:
        y = torch.where(a < e8m0_min, torch.full_like(a, e8m0_min), y)
        y = torch.where(torch.isinf(a), torch.full_like(a, e8m0_max), y)
    else:
        y = torch.where(torch.isinf(a), nan, y)
        if round_mode == "nearest":
            y = torch.where((a < e8m0_min) | (a > e8m0_max), nan, y)
    return torch.where(torch.isnan(a), nan, y)


def fp4_bits(x: Tensor) -> Tensor:
    """The 4-bit codes (int64, 0..15) of FLOAT4E2M1 values held in float32."""
    a = torch.abs(x)
    code = torch.where(a < 2.0, a * 2.0, torch.where(a < 4.0, a + 2.0, a * 0.5 + 4.0))
    return code.to(torch.int64) + torch.signbit(x).to(torch.int64) * 8


def e8m0_bits(x: Tensor) -> Tensor:
    """The 8-bit codes (int64, 0..255) of FLOAT8E8M0 values (powers of two) held in float32."""
    _, e = torch.frexp(x)
    bits = e.to(torch.int64) + 126
    return torch.where(torch.isnan(x), torch.full_like(bits, 255), bits)


# Largest finite value of each float8 type, and (E4M3FN only) the magnitude above which an
# unsaturated cast overflows: torch saturates E4M3FN where ONNX (saturate=0) gives NaN.
_FLOAT8_MAX = {
    TP.FLOAT8E4M3FN: 448.0,
    TP.FLOAT8E4M3FNUZ: 240.0,
    TP.FLOAT8E5M2: 57344.0,
    TP.FLOAT8E5M2FNUZ: 57344.0,
}

_E4M3FN_OVERFLOW = 464.0

# Value ranges of the integer types, to cast without wrapping when every value fits.
_INT_RANGES = {
    TP.BOOL: (0, 1),
    TP.INT2: (-2, 1),
    TP.UINT2: (0, 3),
    TP.INT4: (-8, 7),
    TP.UINT4: (0, 15),
    TP.INT8: (-128, 127),
    TP.UINT8: (0, 255),
}


def _dtype(elem_type: int) -> torch.dtype:
    """The torch dtype holding ONNX ``elem_type``: its own, or its carrier (int4 -> int8 ...)."""
    return carrier_dtype(elem_type) or torch_dtype(elem_type)


def _fits(src: int | None, to: int) -> bool:
    """True when every value of integer type ``src`` is a value of integer type ``to``."""
    if src not in _INT_RANGES or to not in _INT_RANGES:
        return False
    (lo, hi), (tlo, thi) = _INT_RANGES[src], _INT_RANGES[to]
    return tlo <= lo and hi <= thi


def cast_to(
    ctx: LoweringContext,
    x: Arg,
    src: int | None,
    to: int,
    saturate: bool,
    round_mode: str = "up",
) -> Any:
    """Emits the ONNX cast of ``x`` (element type ``src``, None if unknown) to ``to``."""
    if to == TP.STRING or src == TP.STRING:
        raise Unsupported("casts from or to string tensors")
    if src == to:
        return x
    if to in SUBBYTE_INTS:
        if _fits(src, to):
            return ctx.method("to", x, CARRIERS[to])
        bits, signed = SUBBYTE_INTS[to]
        return ctx.call(wrap_int_bits, x, bits, signed, CARRIERS[to])
    if to == TP.FLOAT4E2M1:
        return ctx.call(round_fp4, x)  # the saturate attribute is for float8 types only
    if to == TP.FLOAT8E8M0:
        if round_mode not in ("up", "down", "nearest"):
            raise Unsupported(f"Cast to FLOAT8E8M0 with round_mode '{round_mode}'")
        return ctx.call(round_e8m0, x, saturate, round_mode)
    dt = _dtype(to)
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


def _round_mode(node: Node) -> str:
    r = node.attr("round_mode", "up")
    return r.decode() if isinstance(r, bytes) else str(r)


@lowers("Cast")
def cast(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Cast(x, to) -> x.to(dtype); float8 targets clamp first when saturate=1; int4 / float4 /
    # e8m0 ... targets round into their carrier dtype through a helper
    saturate = bool(node.attr("saturate", 1))
    return cast_to(ctx, args[0], in_dtype(node), node.attr("to"), saturate, _round_mode(node))


@lowers("CastLike")
def cast_like(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # CastLike(x, like) -> x.to(like's dtype), or x.type_as(like) when it is known at run time
    to = in_dtype(node, 1)
    if to is None:
        return ctx.method("type_as", args[0], args[1])
    saturate = bool(node.attr("saturate", 1))
    return cast_to(ctx, args[0], in_dtype(node), to, saturate, _round_mode(node))


@lowers("BitCast")
def bitcast(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # BitCast(x, to) -> x.to(dtype) between integers of one width, else a bit view
    src, to = in_dtype(node), node.attr("to")
    if src is None:
        raise Unsupported("BitCast needs a known input type")
    if src == to:
        return args[0]
    if src in CARRIERS or to in CARRIERS:
        return _bitcast_carrier(ctx, args[0], src, to)
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


# Bit widths of the carried types; other types have their torch dtype's width.
_CARRIED_BITS = {
    TP.INT4: 4,
    TP.UINT4: 4,
    TP.FLOAT4E2M1: 4,
    TP.INT2: 2,
    TP.UINT2: 2,
    TP.FLOAT8E8M0: 8,
}


def _code_table(elem_type: int) -> np.ndarray:
    """The float32 value of every code of FLOAT4E2M1 or FLOAT8E8M0, indexed by the code."""
    import ml_dtypes

    if elem_type == TP.FLOAT4E2M1:
        codes = np.arange(16, dtype=np.uint8).view(ml_dtypes.float4_e2m1fn)
    else:
        codes = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu)
    return codes.astype(np.float32)


def _bitcast_carrier(ctx: LoweringContext, x: Arg, src: int, to: int) -> Any:
    """BitCast where either side is held in a carrier: the bits as an int64 code, then the
    value of ``to`` with that code."""
    bits = _CARRIED_BITS.get(src) or torch_dtype(src).itemsize * 8
    if bits != (_CARRIED_BITS.get(to) or torch_dtype(to).itemsize * 8):
        raise Unsupported("BitCast between types of different widths")
    mask = (1 << bits) - 1
    # x -> its code
    if src == TP.FLOAT4E2M1:
        code = ctx.call(fp4_bits, x)
    elif src == TP.FLOAT8E8M0:
        code = ctx.call(e8m0_bits, x)
    elif src in _FLOAT8_MAX:
        code = ctx.method("to", ctx.call(bit_view, x, "uint8"), torch.int64)
    else:  # (sub-byte) integers and bool
        code = ctx.call(torch.bitwise_and, ctx.method("to", x, torch.int64), mask)
    # code -> value of `to`
    if to in SUBBYTE_INTS:
        return ctx.call(wrap_int_bits, code, bits, SUBBYTE_INTS[to][1], CARRIERS[to])
    if to in (TP.FLOAT4E2M1, TP.FLOAT8E8M0):
        return ctx.getitem(ctx.tensor(_code_table(to), "code_values"), code)
    if to in _FLOAT8_MAX:
        as_bytes = ctx.method("to", code, torch.uint8)
        return ctx.call(bit_view, as_bytes, str(torch_dtype(to)).removeprefix("torch."))
    return ctx.method("to", code, torch_dtype(to))  # int8 / uint8 / bool
