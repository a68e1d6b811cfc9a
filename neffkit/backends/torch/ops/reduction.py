"""Lowerings of reductions along axes: Reduce*, ArgMax/ArgMin and the scans CumSum/CumProd.

Reduce* axes are an attribute before opset 18 (ReduceSum: 13) and an optional input after;
constant axes become static Python lists (``torch.sum(x, [1], True)``), axes known only at run
time go through a helper. Integer sums and products keep the input dtype (torch widens them to
int64 by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from onnx import TensorProto as TP
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.dtypes import FLOAT_TYPES, INT_TYPES, in_dtype, torch_dtype
from neffkit.backends.torch.registry import Arg, Lowered, lowers
from neffkit.ir.core import Node
from neffkit.ir.tensor import np_dtype


def all_dims(x: Tensor) -> list[int]:
    """Every dimension of ``x``: the axes of a reduction over all of them."""
    return list(range(x.dim()))


def scalar_int(t: Tensor) -> int:
    """The value of a one-element integer tensor (an axis or a count given as an input)."""
    return int(t.reshape([-1])[0])


def reduce_runtime(x: Tensor, axes: Tensor, keepdim: bool, noop: bool, op: str) -> Tensor:
    """ONNX Reduce* with axes known only at run time (empty: all axes, or none if ``noop``)."""
    dims: list[int] = axes.reshape([-1]).tolist()
    if len(dims) == 0:
        if noop:
            return x
        dims = all_dims(x)
    if op == "sum":
        return torch.sum(x, dims, keepdim, dtype=x.dtype)
    if op == "mean":
        return torch.mean(x, dims, keepdim)
    if op == "max" or op == "min":
        return reduce_extreme(x, dims, keepdim, op == "max")
    if op == "prod":
        return prod_dims(x, dims, keepdim)
    if op == "l1":
        return torch.sum(torch.abs(x), dims, keepdim, dtype=x.dtype)
    if op == "l2":
        return torch.sqrt(torch.sum(torch.square(x), dims, keepdim)).to(x.dtype)
    if op == "log_sum":
        return torch.log(torch.sum(x, dims, keepdim))
    if op == "log_sum_exp":
        return torch.logsumexp(x, dims, keepdim)
    return torch.sum(torch.square(x), dims, keepdim, dtype=x.dtype)  # sum_square


def reduce_extreme(x: Tensor, dims: list[int], keepdim: bool, is_max: bool) -> Tensor:
    """``torch.amax``/``amin``, and ONNX's value (the dtype's lowest/highest) over empty sets."""
    if _has_empty_dim(x, dims):
        return _empty_extreme(x, _reduced_shape(x, dims, keepdim), is_max)
    return torch.amax(x, dims, keepdim) if is_max else torch.amin(x, dims, keepdim)


def prod_dims(x: Tensor, dims: list[int], keepdim: bool) -> Tensor:
    """``torch.prod`` over several dimensions (torch reduces one at a time), keeping dtype."""
    norm = _normalized(dims, x.dim())
    norm.sort(reverse=True)
    for d in norm:
        x = torch.prod(x, d, keepdim, dtype=x.dtype)
    return x


def _normalized(dims: list[int], rank: int) -> list[int]:
    out: list[int] = []
    for d in dims:
        out.append(d % rank if rank > 0 else d)
    return out


def _has_empty_dim(x: Tensor, dims: list[int]) -> bool:
    for d in _normalized(dims, x.dim()):
        if x.shape[d] == 0:
            return True
    return False


def _reduced_shape(x: Tensor, dims: list[int], keepdim: bool) -> list[int]:
    norm = _normalized(dims, x.dim())
    shape: list[int] = []
    for i in range(x.dim()):
        if i not in norm:
            shape.append(x.shape[i])
        elif keepdim:
            shape.append(1)
    return shape


def _empty_extreme(x: Tensor, shape: list[int], is_max: bool) -> Tensor:
    """ONNX's Max (Min) of an empty set: the lowest (highest) value of the dtype."""
    if x.is_floating_point():
        fill = float("-inf") if is_max else float("inf")
        return torch.full(shape, fill, dtype=x.dtype, device=x.device)
    bits = x.element_size() * 8
    if x.dtype == torch.bool:
        v = 0 if is_max else 1
    elif x.is_signed():
        high = (1 << (bits - 2)) - 1 + (1 << (bits - 2))  # 2**(bits-1) - 1 without overflow
        v = -high - 1 if is_max else high
    else:
        v = 0 if is_max else (1 << bits) - 1
    return torch.full(shape, v, dtype=x.dtype, device=x.device)


def cumulate(x: Tensor, axis: int, exclusive: bool, reverse: bool, product: bool) -> Tensor:
    """ONNX CumSum/CumProd with the ``exclusive`` and ``reverse`` attributes."""
    if reverse:
        x = torch.flip(x, [axis])
    if exclusive and x.shape[axis] > 0:
        first = torch.ones_like(x.narrow(axis, 0, 1))
        if not product:
            first = torch.zeros_like(first)
        x = torch.cat([first, x.narrow(axis, 0, x.shape[axis] - 1)], axis)
    y = torch.cumprod(x, axis, dtype=x.dtype) if product else torch.cumsum(x, axis, dtype=x.dtype)
    if reverse:
        y = torch.flip(y, [axis])
    return y


def arg_last(x: Tensor, axis: int, keepdim: bool, largest: bool) -> Tensor:
    """ArgMax/ArgMin with select_last_index=1: the last index among equal extremes."""
    flipped = torch.flip(x, [axis])
    i = torch.argmax(flipped, axis, keepdim) if largest else torch.argmin(flipped, axis, keepdim)
    return x.shape[axis] - 1 - i


_RUNTIME = object()  # axes given by an input known only at run time

_RUNTIME_OPS = {
    "ReduceSum": "sum",
    "ReduceMean": "mean",
    "ReduceMax": "max",
    "ReduceMin": "min",
    "ReduceProd": "prod",
    "ReduceL1": "l1",
    "ReduceL2": "l2",
    "ReduceLogSum": "log_sum",
    "ReduceLogSumExp": "log_sum_exp",
    "ReduceSumSquare": "sum_square",
}


def _axes(ctx: LoweringContext, node: Node, args: list[Arg]) -> Any:
    """The reduction axes: a static list, an fx node (all dims of a tensor of unknown rank),
    ``_RUNTIME`` (an axes input known only at run time), or None for a no-op."""
    since = 13 if node.op_type == "ReduceSum" else 18
    noop = bool(node.attr("noop_with_empty_axes", 0))
    x = args[0]
    if ctx.opset >= since:
        if len(args) > 1 and args[1] is not None:
            c = ctx.input_constant(1)
            if c is None:
                return _RUNTIME
            axes = [int(a) for a in c.reshape(-1)]
        else:
            axes = []
    else:
        axes = list(node.attr("axes", []) or [])
    if axes:
        return axes
    if noop:
        return None
    shape = node.inputs[0].shape
    if shape is not None:
        return list(range(len(shape)))
    return ctx.call(all_dims, x)


def _reduces_empty_dim(node: Node, dims: Any) -> bool:
    """True when the static shape shows a reduced dimension of size 0."""
    shape = node.inputs[0].shape
    if not isinstance(dims, list) or not shape:
        return False
    return any(shape[d % len(shape)] == 0 for d in dims)


def _empty_fill(node: Node, dims: list[int], keepdim: bool, is_max: bool) -> np.ndarray | None:
    """The constant result of a Max/Min over an empty set when the shape and dtype are static:
    the lowest (highest) value of the dtype, as ONNX defines it."""
    shape = node.inputs[0].shape
    dt = in_dtype(node)
    if dt is None or shape is None or not all(isinstance(s, int) for s in shape):
        return None
    norm = {d % len(shape) for d in dims}
    out = [1 if i in norm else s for i, s in enumerate(shape) if keepdim or i not in norm]
    npdt = np_dtype(dt)
    if npdt.kind in "iu":
        info = np.iinfo(npdt)
        fill: Any = info.min if is_max else info.max
    elif npdt.kind == "b":
        fill = not is_max
    else:
        fill = -np.inf if is_max else np.inf
    return np.full(out, fill, dtype=npdt)


@lowers(
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
)
def reduce(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ReduceSum(x, axes=[1], keepdims=1) -> torch.sum(x, [1], True); ReduceMax -> torch.amax ...
    x = args[0]
    op = node.op_type
    dims = _axes(ctx, node, args)
    keep = bool(node.attr("keepdims", 1))
    if dims is None:
        return x  # noop_with_empty_axes and no axes
    if dims is _RUNTIME:
        noop = bool(node.attr("noop_with_empty_axes", 0))
        return ctx.call(reduce_runtime, x, args[1], keep, noop, _RUNTIME_OPS[op])
    dt = in_dtype(node)
    # Keep integer dtypes (torch sums ints into int64); unknown dtypes are read at run time.
    int_kw: dict[str, Any] = {}
    if dt in INT_TYPES and dt != TP.INT64:
        int_kw = {"dtype": torch_dtype(dt)}
    elif dt is None:
        int_kw = {"dtype": ctx.call(getattr, x, "dtype")}

    if op in ("ReduceMax", "ReduceMin"):
        is_max = op == "ReduceMax"
        if _reduces_empty_dim(node, dims):  # torch refuses; ONNX gives the dtype's extreme
            fill = _empty_fill(node, dims, keep, is_max)
            if fill is not None:
                return ctx.tensor(fill, node.outputs[0].name or "empty_reduce")
            return ctx.call(reduce_extreme, x, dims, keep, is_max)
        return ctx.call(torch.amax if is_max else torch.amin, x, dims, keep)
    if op == "ReduceSum":
        return ctx.call(torch.sum, x, dims, keep, **int_kw)
    if op == "ReduceMean":
        if dt in INT_TYPES:
            mean = ctx.call(torch.mean, ctx.method("to", x, torch.float64), dims, keep)
            return ctx.method("to", mean, torch_dtype(dt))
        return ctx.call(torch.mean, x, dims, keep)
    if op == "ReduceProd":
        if isinstance(dims, list) and len(dims) == 1:
            return ctx.call(torch.prod, x, dims[0], keep, **int_kw)
        return ctx.call(prod_dims, x, dims, keep)
    if op == "ReduceL1":
        return ctx.call(torch.sum, ctx.call(torch.abs, x), dims, keep, **int_kw)
    if op == "ReduceSumSquare":
        return ctx.call(torch.sum, ctx.call(torch.square, x), dims, keep, **int_kw)
    if op == "ReduceL2":
        if dt in FLOAT_TYPES:
            return ctx.call(torch.linalg.vector_norm, x, 2, dims, keep)
        total = ctx.call(torch.sum, ctx.call(torch.square, x), dims, keep, **int_kw)
        return ctx.method("type_as", ctx.call(torch.sqrt, total), x)
    if op == "ReduceLogSum":
        return ctx.call(torch.log, ctx.call(torch.sum, x, dims, keep))
    return ctx.call(torch.logsumexp, x, dims, keep)  # ReduceLogSumExp


@lowers("ArgMax", "ArgMin")
def arg_max_min(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ArgMax(x, axis, keepdims) -> torch.argmax(x, axis, keepdims) (first index among ties)
    axis = node.attr("axis", 0)
    keep = bool(node.attr("keepdims", 1))
    largest = node.op_type == "ArgMax"
    if node.attr("select_last_index", 0):
        return ctx.call(arg_last, args[0], axis, keep, largest)
    return ctx.call(torch.argmax if largest else torch.argmin, args[0], axis, keep)


@lowers("CumSum", "CumProd")
def cumulative(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # CumSum(x, axis) -> torch.cumsum(x, axis); exclusive/reverse through a helper
    c = ctx.input_constant(1)
    axis = ctx.call(scalar_int, args[1]) if c is None else int(c.reshape(-1)[0])
    product = node.op_type == "CumProd"
    exclusive, reverse = bool(node.attr("exclusive", 0)), bool(node.attr("reverse", 0))
    if exclusive or reverse:
        return ctx.call(cumulate, args[0], axis, exclusive, reverse, product)
    dt = in_dtype(node)
    kw: dict[str, Any] = {}
    if dt in INT_TYPES and dt != TP.INT64:
        kw = {"dtype": torch_dtype(dt)}
    elif dt is None:
        kw = {"dtype": ctx.call(getattr, args[0], "dtype")}
    return ctx.call(torch.cumprod if product else torch.cumsum, args[0], axis, **kw)
