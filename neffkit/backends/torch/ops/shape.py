"""Lowerings of shape ops: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze, Expand and Identity.

Shape-like inputs known when lowering (initializers, Constant nodes) become static Python lists
in the generated code (``x.reshape([1, 3, 224, 224])``) so it reads like hand-written PyTorch;
otherwise ``int_list`` reads the shape tensor at run time. The runtime helpers here are written
in the TorchScript subset so the lowered module scripts.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.shapes import (
    const_ints,
    device_of,
    has_input,
    int_list,
    ints_arg,
    rank_of,
    static_shape,
    sym_ints,
)
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node


@lowers("Identity")
def identity(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Identity(x) -> x
    return args[0]


def reshape_dynamic(x: Tensor, shape: list[int], allowzero: bool) -> Tensor:
    """ONNX Reshape with a run-time shape: 0 copies the input dim unless ``allowzero``."""
    dims = list(shape)
    if not allowzero:
        for i in range(len(dims)):
            if dims[i] == 0:
                dims[i] = x.size(i)
    return x.reshape(dims)


def flatten_2d(x: Tensor, axis: int) -> Tensor:
    """ONNX Flatten: a 2-D view (prod(dims[:axis]), prod(dims[axis:]))."""
    if axis < 0:
        axis += x.dim()
    outer = 1
    for i in range(axis):
        outer *= x.size(i)
    inner = 1
    for i in range(axis, x.dim()):
        inner *= x.size(i)
    return x.reshape([outer, inner])


def unsqueeze_dynamic(x: Tensor, axes: list[int]) -> Tensor:
    """ONNX Unsqueeze: axes index the output, negative ones counted from its end."""
    out_rank = x.dim() + len(axes)
    norm = [a + out_rank if a < 0 else a for a in axes]
    norm.sort()
    for a in norm:
        x = x.unsqueeze(a)
    return x


def expand_to(x: Tensor, shape: list[int]) -> Tensor:
    """ONNX Expand: broadcasts ``x`` and ``shape`` both ways (a 1 in ``shape`` keeps x's dim)."""
    r = max(x.dim(), len(shape))
    out: list[int] = []
    for i in range(r):
        j = i - r + x.dim()
        k = i - r + len(shape)
        a = x.size(j) if j >= 0 else 1
        b = shape[k] if k >= 0 else 1
        out.append(a if b == 1 else b)
    return x.expand(out)


@lowers("Shape")
def shape(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Shape(x, start, end) -> torch.tensor(x.shape[start:end]); Python slicing clamps like ONNX
    x = args[0]
    dims = ctx.call(getattr, x, "shape")
    start = node.attr("start", 0)
    end = node.attr("end", None)
    if start != 0 or end is not None:
        dims = ctx.getitem(dims, slice(start or None, end))
    return ctx.call(torch.tensor, dims, dtype=torch.int64, device=device_of(ctx, x))


@lowers("Size")
def size(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Size(x) -> torch.tensor(x.numel()) as int64
    x = args[0]
    n = ctx.method("numel", x)
    return ctx.call(torch.tensor, n, dtype=torch.int64, device=device_of(ctx, x))


@lowers("Reshape")
def reshape(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Reshape(x, shape) -> x.reshape([...]); 0 copies the input dim unless allowzero
    x = args[0]
    allowzero = bool(node.attr("allowzero", 0))
    dims = list(node.attr("shape", [])) if ctx.opset < 5 else const_ints(ctx, 1)
    if dims is None:
        # [1, x.size(1), 4, 8]: sizes as Python ints (a run-time size of 0 still copies)
        known_dims = sym_ints(ctx, 1)
        shape_arg = known_dims if known_dims is not None else ctx.call(int_list, args[1])
        return ctx.call(reshape_dynamic, x, shape_arg, allowzero)
    if not allowzero and 0 in dims:
        known = static_shape(node.inputs[0])
        dims = [
            d if d != 0 else (known[i] if known is not None else ctx.method("size", x, i))
            for i, d in enumerate(dims)
        ]
    return ctx.method("reshape", x, dims)


@lowers("Flatten")
def flatten(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Flatten(x, axis) -> 2-D (prod(dims[:axis]), prod(dims[axis:])), via torch.flatten
    x = args[0]
    axis = node.attr("axis", 1)
    r = rank_of(node.inputs[0])
    if r is None:
        return ctx.call(flatten_2d, x, axis)
    if axis < 0:
        axis += r
    if axis == 0:
        return ctx.method("unsqueeze", ctx.method("flatten", x), 0)
    if axis == r:
        return ctx.method("unsqueeze", ctx.method("flatten", x), 1)
    y = x if axis == 1 else ctx.method("flatten", x, 0, axis - 1)
    return y if axis == r - 1 else ctx.method("flatten", y, 1)


@lowers("Squeeze")
def squeeze(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Squeeze(x, axes) -> x.squeeze([axes]); no axes -> every size-1 dim
    x = args[0]
    if ctx.opset < 13:
        axes = node.attr("axes", None)
    elif has_input(node, 1):
        axes = ints_arg(ctx, 1, args)
    else:
        axes = None
    if axes is None:
        return ctx.method("squeeze", x)
    return ctx.method("squeeze", x, list(axes) if isinstance(axes, list | tuple) else axes)


@lowers("Unsqueeze")
def unsqueeze(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Unsqueeze(x, axes) -> x.unsqueeze(a) for each output axis, in an order that keeps them right
    x = args[0]
    axes = node.attr("axes", []) if ctx.opset < 13 else ints_arg(ctx, 1, args)
    if not isinstance(axes, list | tuple):
        return ctx.call(unsqueeze_dynamic, x, axes)
    axes = [int(a) for a in axes]
    r = rank_of(node.inputs[0])
    if r is not None:
        order = sorted(a + r + len(axes) if a < 0 else a for a in axes)
    elif all(a >= 0 for a in axes):
        order = sorted(axes)
    elif all(a < 0 for a in axes):
        order = sorted(axes, reverse=True)  # -1 first: each insert lands at its final place
    else:
        return ctx.call(unsqueeze_dynamic, x, axes)
    for a in order:
        x = ctx.method("unsqueeze", x, a)
    return x


@lowers("Expand")
def expand(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Expand(x, shape) -> x.expand(broadcast(x.shape, shape)) (broadcasting goes both ways)
    x = args[0]
    dims = const_ints(ctx, 1)
    known = static_shape(node.inputs[0])
    if dims is not None and known is not None:
        try:
            out = list(np.broadcast_shapes(known, tuple(dims)))
        except ValueError as e:
            raise Unsupported(f"Expand of {list(known)} to {dims}: {e}") from e
        return ctx.method("expand", x, out)
    if dims is None:
        dims = sym_ints(ctx, 1)  # sizes as Python ints (SymInts under torch.compile)
    return ctx.call(expand_to, x, dims if dims is not None else ctx.call(int_list, args[1]))
