"""Lowerings of normalization ops: BatchNormalization, InstanceNormalization,
LayerNormalization, GroupNormalization, RMSNormalization, LpNormalization,
MeanVarianceNormalization and LRN.

The torch functional form is used where it matches ONNX exactly
(``F.batch_norm(x, mean, var, scale, bias, False, 0.0, 1e-05)``,
``F.layer_norm(x, [768], w, b, 1e-05)``); otherwise the statistics are spelled out in
``stash_type`` precision, as the ONNX function bodies do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from onnx import TensorProto

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import arg, in_value, static_shape, torch_dtype
from neffkit.backends.torch.helpers.shapes import rank_of
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node, Value


def _used(node: Node, i: int) -> bool:
    return i < len(node.outputs) and bool(
        node.outputs[i].num_uses or node.outputs[i].is_graph_output
    )


def axes_from(x: torch.Tensor, axis: int) -> list[int]:
    """``[axis, ..., rank - 1]`` (normalized) for a tensor whose rank is only known at run time."""
    if axis < 0:
        axis += x.dim()
    return list(range(axis, x.dim()))


def _trailing_axes(ctx: LoweringContext, x: Arg, axis: int, rank: int | None) -> Arg:
    """The axes ``[axis, rank)`` as a static list when possible."""
    if rank is not None:
        a = axis + rank if axis < 0 else axis
        return list(range(a, rank))
    if axis < 0:
        return list(range(axis, 0))
    return ctx.call(axes_from, x, axis)


def _stash(ctx: LoweringContext, node: Node, x: Arg) -> tuple[Arg, torch.dtype | None]:
    """``x`` in the ``stash_type`` precision, and the dtype to cast results back to."""
    x_dt = node.inputs[0].dtype
    stash = int(node.attr("stash_type", 1))
    if x_dt is None or x_dt == stash:
        return x, None
    return ctx.method("to", x, torch_dtype(stash)), torch_dtype(x_dt)


def batch_norm_train(
    x: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    momentum: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BatchNormalization in training mode: ``(y, running_mean, running_var)``, with the
    batch's population statistics."""
    dims = [0] + list(range(2, x.dim()))
    cur_mean = x.mean(dims)
    cur_var = x.var(dims, unbiased=False)
    y = F.batch_norm(x, cur_mean, cur_var, scale, bias, False, 0.0, eps)
    run_mean = mean * momentum + cur_mean * (1.0 - momentum)
    run_var = var * momentum + cur_var * (1.0 - momentum)
    return y, run_mean, run_var


@lowers("BatchNormalization")
def batch_normalization(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # BatchNormalization (inference) -> F.batch_norm(x, mean, var, scale, bias, False, 0, eps)
    x, scale, bias, mean, var = args[:5]
    eps = float(node.attr("epsilon", 1e-5))
    training = bool(node.attr("training_mode", 0)) if ctx.opset >= 14 else False
    if ctx.opset < 14 and any(_used(node, i) for i in range(1, len(node.outputs))):
        raise Unsupported("BatchNormalization (opset < 14) training outputs")
    if ctx.opset < 7 and not node.attr("is_test", 0):
        raise Unsupported("BatchNormalization (opset < 7) in training mode")
    if not training:
        return ctx.call(F.batch_norm, x, mean, var, scale, bias, False, 0.0, eps)
    momentum = float(node.attr("momentum", 0.9))
    r = ctx.call(batch_norm_train, x, scale, bias, mean, var, momentum, eps)
    return [ctx.getitem(r, 0), ctx.getitem(r, 1), ctx.getitem(r, 2)]


@lowers("InstanceNormalization")
def instance_normalization(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # InstanceNormalization(x, scale, b) -> F.instance_norm(x, None, None, scale, b, eps=eps)
    eps = float(node.attr("epsilon", 1e-5))
    return ctx.call(F.instance_norm, args[0], None, None, args[1], args[2], True, 0.0, eps)


def layer_norm_stats(
    x: torch.Tensor, dims: list[int], eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(normalized x, mean, 1 / sqrt(var + eps))`` over ``dims`` (kept as size-1 axes)."""
    mean = x.mean(dims, keepdim=True)
    d = x - mean
    inv_std = torch.rsqrt((d * d).mean(dims, keepdim=True) + eps)
    return d * inv_std, mean, inv_std


def _static_trailing(v: Value, axis: int) -> list[int] | None:
    """The dims ``v.shape[axis:]`` when they are known ints (the leading dims may be symbolic:
    ``F.layer_norm`` needs only the normalized shape), else None."""
    if v.shape is None:
        return None
    a = axis + len(v.shape) if axis < 0 else axis
    if not 0 <= a < len(v.shape):
        return None
    tail = v.shape[a:]
    if not all(isinstance(d, int) and d >= 0 for d in tail):
        return None
    return [int(d) for d in tail]


@lowers("LayerNormalization")
def layer_normalization(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # LayerNormalization(x, scale, b) -> F.layer_norm(x, x.shape[axis:], scale, b, eps) when the
    # normalized shape is static; else the statistics in stash_type precision.
    x, scale, bias = args[0], args[1], arg(args, 2)
    axis = int(node.attr("axis", -1))
    eps = float(node.attr("epsilon", 1e-5))
    xv = node.inputs[0]
    rank = rank_of(xv)
    norm_shape = _static_trailing(xv, axis)
    if norm_shape is not None and not _used(node, 1) and not _used(node, 2):
        if (
            static_shape(in_value(node, 1)) == norm_shape
            and (arg(args, 2) is None or static_shape(in_value(node, 2)) == norm_shape)
            and xv.dtype in (TensorProto.FLOAT, TensorProto.DOUBLE)
        ):
            return ctx.call(F.layer_norm, x, norm_shape, scale, bias, eps)
    dims = _trailing_axes(ctx, x, axis, rank)
    xs, back = _stash(ctx, node, x)
    r = ctx.call(layer_norm_stats, xs, dims, eps)
    y, mean, inv_std = ctx.getitem(r, 0), ctx.getitem(r, 1), ctx.getitem(r, 2)
    if back is not None:
        y = ctx.method("to", y, back)
        mean = ctx.method("to", mean, back)
        inv_std = ctx.method("to", inv_std, back)
    y = ctx.call(torch.mul, y, scale)
    if bias is not None:
        y = ctx.call(torch.add, y, bias)
    return [y, mean, inv_std]


def group_norm_per_group(
    x: torch.Tensor, groups: int, scale: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """GroupNormalization-18: ``scale`` and ``bias`` hold one value per group."""
    g = x.reshape([x.shape[0], groups, -1])
    mean = g.mean(-1, keepdim=True)
    var = g.var(-1, unbiased=False, keepdim=True)
    y = (g - mean) / torch.sqrt(var + eps) * scale.reshape(1, -1, 1) + bias.reshape(1, -1, 1)
    return y.reshape(x.shape)


@lowers("GroupNormalization")
def group_normalization(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # GroupNormalization(x, scale, b) -> F.group_norm(x, num_groups, scale, b, eps)
    x, scale, bias = args[:3]
    groups = int(node.attr("num_groups"))
    eps = float(node.attr("epsilon", 1e-5))
    if ctx.opset < 21:
        return ctx.call(group_norm_per_group, x, groups, scale, bias, eps)
    xs, back = _stash(ctx, node, x)
    if back is None:
        return ctx.call(F.group_norm, x, groups, scale, bias, eps)
    y = ctx.method("to", ctx.call(F.group_norm, xs, groups, None, None, eps), back)
    rank = rank_of(node.inputs[0])
    shape = [-1] + [1] * (rank - 2) if rank is not None else None
    if shape is None:
        raise Unsupported("GroupNormalization with stash_type on an input of unknown rank")
    y = ctx.call(torch.mul, y, ctx.method("reshape", scale, shape))
    return ctx.call(torch.add, y, ctx.method("reshape", bias, shape))


@lowers("RMSNormalization")
def rms_normalization(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # RMSNormalization(x, scale) -> x * rsqrt(mean(x^2, axes) + eps) * scale
    x, scale = args[0], args[1]
    axis = int(node.attr("axis", -1))
    eps = float(node.attr("epsilon", 1e-5))
    dims = _trailing_axes(ctx, x, axis, rank_of(node.inputs[0]))
    xs, back = _stash(ctx, node, x)
    ms = ctx.method("mean", ctx.call(torch.mul, xs, xs), dims, keepdim=True)
    y = ctx.call(torch.mul, xs, ctx.call(torch.rsqrt, ctx.call(torch.add, ms, eps)))
    if back is not None:
        y = ctx.method("to", y, back)
    return ctx.call(torch.mul, y, scale)


@lowers("LpNormalization")
def lp_normalization(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # LpNormalization(x) -> x / ||x||_p along axis (0 where the norm is 0)
    x = args[0]
    p = int(node.attr("p", 2))
    axis = int(node.attr("axis", -1))
    n = ctx.call(torch.linalg.vector_norm, x, float(p), [axis], True)
    y = ctx.call(torch.div, x, n)
    return ctx.call(torch.where, ctx.call(torch.eq, n, 0), 0.0, y)


@lowers("MeanVarianceNormalization")
def mean_variance_normalization(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # MeanVarianceNormalization(x) -> (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9)
    x = args[0]
    axes = list(node.attr("axes", None) or [0, 2, 3])
    mean = ctx.method("mean", x, axes, keepdim=True)
    mean_sq = ctx.method("mean", ctx.call(torch.mul, x, x), axes, keepdim=True)
    var = ctx.call(torch.sub, mean_sq, ctx.call(torch.mul, mean, mean))
    std = ctx.call(torch.add, ctx.call(torch.sqrt, var), 1e-9)
    return ctx.call(torch.div, ctx.call(torch.sub, x, mean), std)


def lrn(x: torch.Tensor, size: int, alpha: float, beta: float, bias: float) -> torch.Tensor:
    """ONNX LRN: ``x / (bias + alpha / size * sum of x^2 over nearby channels) ^ beta``; the
    window is ``[c - floor((size-1)/2), c + ceil((size-1)/2)]`` (torch centres even sizes
    the other way)."""
    sq = (x * x).reshape([x.shape[0], 1, x.shape[1], -1])
    front = (size - 1) // 2
    sq = F.pad(sq, [0, 0, front, size - 1 - front])
    total = sq.unfold(2, size, 1).sum(-1).reshape(x.shape)
    return x / (bias + alpha / size * total).pow(beta)


@lowers("LRN")
def lrn_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # LRN(x) -> lrn(x, size, alpha, beta, bias)
    size = int(node.attr("size"))
    alpha = float(node.attr("alpha", 1e-4))
    beta = float(node.attr("beta", 0.75))
    bias = float(node.attr("bias", 1.0))
    return ctx.call(lrn, args[0], size, alpha, beta, bias)
