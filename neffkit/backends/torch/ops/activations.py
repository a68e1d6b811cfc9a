"""Lowerings of activation functions: Relu, LeakyRelu, PRelu, Elu, Selu, Celu, Gelu, HardSigmoid,
HardSwish, Sigmoid, Tanh, Softplus, Softsign, Mish, Swish, ThresholdedRelu, Shrink, SwiGLU, and
the normalizing activations Softmax, LogSoftmax and Hardmax.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.dtypes import FLOAT_TYPES, attr_float, in_dtype
from neffkit.backends.torch.registry import Arg, Lowered, lowers, lowers_call
from neffkit.ir.core import Node


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


def shrink(x: Tensor, lambd: float, bias: float) -> Tensor:
    """ONNX Shrink: x+bias below -lambd, x-bias above lambd, else 0."""
    zero = torch.zeros_like(x)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero))


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


def _coerced(
    ctx: LoweringContext, node: Node, args: list[Arg], default_axis: int
) -> tuple[Any, int, bool]:
    """The input and axis of a Softmax-like op: before opset 13, the input is coerced to 2-D
    at ``axis`` (flattened from it), which returns ``reshape`` true."""
    x = args[0]
    if ctx.opset >= 13:
        return x, node.attr("axis", -1), False
    axis = node.attr("axis", default_axis)
    shape = node.inputs[0].shape
    if shape is not None and axis in (len(shape) - 1, -1):
        return x, -1, False
    return ctx.method("flatten", x, axis), -1, True


@lowers("Softmax", "LogSoftmax")
def softmax(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Softmax(x, axis) -> torch.softmax(x, axis); before opset 13 over x flattened from axis
    fn = torch.softmax if node.op_type == "Softmax" else torch.log_softmax
    y, axis, reshaped = _coerced(ctx, node, args, 1)
    out = ctx.call(fn, y, axis)
    return ctx.method("reshape_as", out, args[0]) if reshaped else out


@lowers("Hardmax")
def hardmax(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Hardmax(x, axis) -> zeros_like(x).scatter(axis, argmax(x, axis, keepdim=True), 1)
    y, axis, reshaped = _coerced(ctx, node, args, 1)
    idx = ctx.call(torch.argmax, y, axis, True)
    out = ctx.method("scatter", ctx.call(torch.zeros_like, y), axis, idx, 1.0)
    return ctx.method("reshape_as", out, args[0]) if reshaped else out


@lowers("SwiGLU")
def swiglu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SwiGLU(a, b) -> a * sigmoid(alpha * a) * b
    alpha = float(node.attr("alpha", 1.0))
    a = args[0]
    z = a if alpha == 1.0 else ctx.call(torch.mul, a, alpha)
    gate = ctx.call(torch.mul, a, ctx.call(torch.sigmoid, z))
    return ctx.call(torch.mul, gate, args[1])


# Op(x) -> torch.fn(x), exact ONNX semantics.
_ONE_CALL = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Softsign": F.softsign,
    "Softplus": F.softplus,
    "Mish": F.mish,
    "HardSwish": F.hardswish,
}
for _op, _fn in _ONE_CALL.items():
    lowers_call(_op, _fn)
