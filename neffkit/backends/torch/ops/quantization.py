"""Lowerings of quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
QLinearMatMul, MatMulInteger, ConvInteger and QLinearConv.

int4 / uint4 / int2 / uint2 / float4e2m1 values are held in carrier dtypes (int8, uint8, float32:
see ``convert.CARRIERS``): QuantizeLinear clamps to their ranges (float4 rounds and saturates
as a Cast does) and DequantizeLinear reads the carrier as it would the type itself.

Integer convolutions run in float64 (exact for any realistic size; torch has no integer
convolution), then round back to int32 before requantizing as the ONNX reference does.
"""

from __future__ import annotations

import torch
from onnx import TensorProto

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.convert import carrier_dtype
from neffkit.backends.torch.helpers.nn import (
    arg,
    emit_conv,
    in_value,
    int_matmul,
    static_shape,
    torch_dtype,
)
from neffkit.backends.torch.helpers.shapes import rank_of
from neffkit.backends.torch.ops.cast import round_fp4
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node

_INT_RANGES = {
    TensorProto.UINT8: (0, 255),
    TensorProto.INT8: (-128, 127),
    TensorProto.UINT16: (0, 65535),
    TensorProto.INT16: (-32768, 32767),
}

# Sub-byte integer types (held in int8 / uint8): QuantizeLinear only.
_SUBBYTE_RANGES = {
    TensorProto.UINT4: (0, 15),
    TensorProto.INT4: (-8, 7),
    TensorProto.UINT2: (0, 3),
    TensorProto.INT2: (-2, 1),
}

_FLOAT8 = (
    TensorProto.FLOAT8E4M3FN,
    TensorProto.FLOAT8E4M3FNUZ,
    TensorProto.FLOAT8E5M2,
    TensorProto.FLOAT8E5M2FNUZ,
)


def quant_param(v: torch.Tensor, x: torch.Tensor, axis: int, block: int) -> torch.Tensor:
    """A scale / zero point made broadcastable to ``x`` (scalar, per-axis or blocked)."""
    if v.numel() == 1:
        return v.reshape([])
    if axis < 0:
        axis += x.dim()
    if block <= 0:
        shape = [1] * x.dim()
        shape[axis] = v.numel()
        return v.reshape(shape)
    return v.repeat_interleave(block, axis).narrow(axis, 0, x.shape[axis])


def quantize_linear(
    x: torch.Tensor,
    scale: torch.Tensor,
    zp: torch.Tensor | None,
    axis: int,
    block: int,
    out_dtype: torch.dtype,
    lo: float,
    hi: float,
    is_int: bool,
    saturate: bool,
    precision: torch.dtype | None,
) -> torch.Tensor:
    """ONNX QuantizeLinear: ``saturate(round_half_even(x / scale) + zero_point)``."""
    s = quant_param(scale, x, axis, block)
    if precision is not None:
        q = x.to(precision) / s.to(precision)
    else:
        q = x / s
    if is_int:
        q = torch.round(q)
        if zp is not None:
            q = q + quant_param(zp, x, axis, block).to(q.dtype)
        return q.clamp(lo, hi).to(out_dtype)
    if saturate:
        q = torch.where(torch.isnan(q), q, q.clamp(lo, hi))
    return q.to(out_dtype)


def quantize_fp4(
    x: torch.Tensor,
    scale: torch.Tensor,
    zp: torch.Tensor | None,
    axis: int,
    block: int,
    precision: torch.dtype | None,
) -> torch.Tensor:
    """ONNX QuantizeLinear to FLOAT4E2M1 (as float32): ``x / scale + zero_point`` cast to float4
    (round to nearest even, saturating at +-6), as the reference does."""
    s = quant_param(scale, x, axis, block)
    if precision is not None:
        q = x.to(precision) / s.to(precision)
    else:
        q = x / s
    if zp is not None:
        q = q + quant_param(zp, x, axis, block).to(q.dtype)
    return round_fp4(q)


def _out_type(ctx: LoweringContext, node: Node) -> int:
    zp = in_value(node, 2)
    if zp is not None and zp.dtype is not None:
        return zp.dtype
    out = node.attr("output_dtype", 0)
    return int(out) if out else TensorProto.UINT8


@lowers("QuantizeLinear")
def quantize_linear_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # QuantizeLinear(x, scale, zero_point) -> quantize_linear(...)
    out = _out_type(ctx, node)
    precision = node.attr("precision", 0)
    prec_dt = torch_dtype(int(precision)) if precision else None
    axis, block = int(node.attr("axis", 1)), int(node.attr("block_size", 0))
    if out == TensorProto.FLOAT4E2M1:
        return ctx.call(quantize_fp4, args[0], args[1], arg(args, 2), axis, block, prec_dt)
    dt = carrier_dtype(out) or torch_dtype(out)
    if out in _INT_RANGES or out in _SUBBYTE_RANGES:
        lo, hi = _INT_RANGES.get(out) or _SUBBYTE_RANGES[out]
        is_int = True
    elif out in _FLOAT8:
        fi = torch.finfo(dt)
        lo, hi = float(fi.min), float(fi.max)
        is_int = False
    else:
        raise Unsupported(f"QuantizeLinear to element type {out}")
    return ctx.call(
        quantize_linear,
        args[0],
        args[1],
        arg(args, 2),
        axis,
        block,
        dt,
        float(lo),
        float(hi),
        is_int,
        bool(node.attr("saturate", 1)),
        prec_dt,
    )


def dequantize_linear(
    x: torch.Tensor,
    scale: torch.Tensor,
    zp: torch.Tensor | None,
    axis: int,
    block: int,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """ONNX DequantizeLinear: ``(x - zero_point) * scale`` computed in float32."""
    d = x.to(torch.float32)
    if zp is not None and not x.is_floating_point():
        d = d - quant_param(zp, x, axis, block).to(torch.float32)
    return (d * quant_param(scale, x, axis, block)).to(out_dtype)


@lowers("DequantizeLinear")
def dequantize_linear_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # DequantizeLinear(x, scale, zero_point) -> dequantize_linear(...)
    out = node.attr("output_dtype", 0) or in_value(node, 1).dtype or TensorProto.FLOAT
    return ctx.call(
        dequantize_linear,
        args[0],
        args[1],
        arg(args, 2),
        int(node.attr("axis", 1)),
        int(node.attr("block_size", 0)),
        torch_dtype(int(out)),
    )


@lowers("DynamicQuantizeLinear")
def dynamic_quantize_linear(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # DynamicQuantizeLinear(x) -> (uint8 y, scale, zero point) from x's range (with 0)
    r = ctx.call(dynamic_quantize, args[0])
    return [ctx.getitem(r, i) for i in range(3)]


def dynamic_quantize(x: torch.Tensor) -> list[torch.Tensor]:
    """ONNX DynamicQuantizeLinear to uint8: ``[y, y_scale, y_zero_point]``."""
    xf = x.float()
    hi = xf.max().clamp(min=0.0)
    lo = xf.min().clamp(max=0.0)
    scale = torch.where(hi == lo, torch.ones_like(hi), hi - lo) / 255.0
    zp = torch.round((0.0 - lo / scale).clamp(0.0, 255.0))
    y = (torch.round(xf / scale) + zp).clamp(0.0, 255.0).to(torch.uint8)
    return [y, scale.to(x.dtype), zp.to(torch.uint8)]


def requantize(
    acc: torch.Tensor,
    factor: torch.Tensor,
    zp: torch.Tensor | None,
    lo: float,
    hi: float,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """``saturate(round(acc * factor + zero_point))`` in float64, as the reference does."""
    d = acc.double() * factor.double()
    if zp is not None:
        d = d + zp.double()
    return torch.round(d).clamp(lo, hi).to(out_dtype)


def _zp_int(ctx: LoweringContext, x: Arg, zp: Arg) -> Arg:
    x = ctx.method("to", x, torch.int32)
    if zp is None:
        return x
    return ctx.call(torch.sub, x, ctx.method("to", zp, torch.int32))


def _range_of(node: Node, zp_index: int, fallback_index: int) -> tuple[float, float, torch.dtype]:
    zp = in_value(node, zp_index)
    dt = zp.dtype if zp is not None and zp.dtype else in_value(node, fallback_index).dtype
    if dt not in _INT_RANGES:
        raise Unsupported(f"{node.op_type} with element type {dt}")
    lo, hi = _INT_RANGES[dt]
    return float(lo), float(hi), torch_dtype(dt)


@lowers("QLinearMatMul")
def qlinear_matmul(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # QLinearMatMul -> requantize((a - a_zp) @ (b - b_zp), a_scale * b_scale / y_scale, y_zp)
    a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp = (arg(args, i) for i in range(8))
    acc = ctx.call(int_matmul, _zp_int(ctx, a, a_zp), _zp_int(ctx, b, b_zp))
    factor = ctx.call(torch.div, ctx.call(torch.mul, a_s, b_s), y_s)
    lo, hi, dt = _range_of(node, 7, 0)
    return ctx.call(requantize, acc, factor, y_zp, lo, hi, dt)


def _as_double(ctx: LoweringContext, x: Arg, zp: Arg, per_channel: bool) -> Arg:
    """``x - zp`` in float64; a per-output-channel weight zero point is reshaped to broadcast."""
    d = ctx.method("double", x)
    if zp is None:
        return d
    z = ctx.method("double", zp)
    if per_channel:
        z = ctx.call(channel_param, z, d)
    return ctx.call(torch.sub, d, z)


def channel_param(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A scalar, or a per-output-channel vector reshaped to broadcast over ``w`` ``[M, ...]``."""
    if v.numel() == 1:
        return v.reshape([])
    return v.reshape([-1] + [1] * (w.dim() - 1))


def output_channel_param(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A scalar, or a per-channel vector reshaped to broadcast over ``y`` ``[N, M, ...]``."""
    if v.numel() == 1:
        return v.reshape([])
    return v.reshape([1, -1] + [1] * (y.dim() - 2))


@lowers("ConvInteger")
def conv_integer(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ConvInteger(x, w, x_zp, w_zp) -> conv of (x - x_zp) and (w - w_zp), exact, as int32
    x = _as_double(ctx, args[0], arg(args, 2), False)
    w = _as_double(ctx, args[1], arg(args, 3), True)
    y = emit_conv(ctx, node, x, w, None)
    return ctx.method("to", ctx.call(torch.round, y), torch.int32)


@lowers("QLinearConv")
def qlinear_conv(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # QLinearConv -> requantize(conv(x - x_zp, w - w_zp) + B, x_scale * w_scale / y_scale, y_zp)
    x_, x_s, x_zp, w_, w_s, w_zp, y_s, y_zp, b = (arg(args, i) for i in range(9))
    x = _as_double(ctx, x_, x_zp, False)
    w = _as_double(ctx, w_, w_zp, True)
    bias = None if b is None else ctx.method("double", b)
    acc = emit_conv(ctx, node, x, w, bias, x_index=0, w_index=3)
    ws = ctx.call(output_channel_param, w_s, acc)
    factor = ctx.call(torch.div, ctx.call(torch.mul, x_s, ws), y_s)
    lo, hi, dt = _range_of(node, 7, 0)
    return ctx.call(requantize, ctx.call(torch.round, acc), factor, y_zp, lo, hi, dt)


def _zero_point(ctx: LoweringContext, zp: Arg, idx: int, as_row: bool) -> Arg:
    """A MatMulInteger zero point as int32, a per-row vector reshaped to ``[-1, 1]``."""
    v = in_value(ctx.node, idx)
    z = ctx.method("to", zp, torch.int32)
    r = rank_of(v)
    if as_row and r == 1:
        shape = static_shape(v)
        if shape is None or shape[0] != 1:
            z = ctx.method("reshape", z, [-1, 1])
    return z


@lowers("MatMulInteger")
def matmul_integer(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # MatMulInteger(a, b, a_zp, b_zp) -> (a - a_zp) @ (b - b_zp) in int32
    a = ctx.method("to", args[0], torch.int32)
    b = ctx.method("to", args[1], torch.int32)
    if arg(args, 2) is not None:
        a = ctx.call(torch.sub, a, _zero_point(ctx, args[2], 2, as_row=True))
    if arg(args, 3) is not None:
        b = ctx.call(torch.sub, b, _zero_point(ctx, args[3], 3, as_row=False))
    return ctx.call(int_matmul, a, b)
