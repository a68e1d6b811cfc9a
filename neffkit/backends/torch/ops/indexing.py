"""Lowerings of gather / scatter and indexing ops: Gather, GatherElements, GatherND, Scatter,
ScatterElements, ScatterND, TensorScatter, OneHot, Compress, ReverseSequence and NonZero.

ONNX indices may be negative (counted from the end of the indexed dim); the helpers wrap them
before calling torch, whose gather/scatter kernels reject negative indices. Helpers are written
in the TorchScript subset.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node


def _wrap(indices: Tensor, dim: int) -> Tensor:
    """int64 indices with negative ones counted from the end of a dim of size ``dim``."""
    idx = indices.to(torch.int64)
    return torch.where(idx < 0, idx + dim, idx)


def _prod(dims: list[int]) -> int:
    p = 1
    for d in dims:
        p *= d
    return p


def gather(x: Tensor, indices: Tensor, axis: int) -> Tensor:
    """ONNX Gather: x.shape[:axis] + indices.shape + x.shape[axis+1:]."""
    if axis < 0:
        axis += x.dim()
    idx = _wrap(indices, x.size(axis))
    out = x.index_select(axis, idx.reshape(-1))
    dims = list(x.shape)
    return out.reshape(dims[:axis] + list(indices.shape) + dims[axis + 1 :])


def gather_elements(x: Tensor, indices: Tensor, axis: int) -> Tensor:
    """ONNX GatherElements: torch.gather with negative indices wrapped."""
    if axis < 0:
        axis += x.dim()
    return torch.gather(x, axis, _wrap(indices, x.size(axis)))


def _linear_index(idx: Tensor, dims: list[int]) -> Tensor:
    """Row-major linear index of the last-axis index tuples of ``idx`` into ``dims``."""
    lin = torch.zeros(idx.shape[:-1], dtype=torch.int64, device=idx.device)
    for j in range(len(dims)):
        lin = lin * dims[j] + _wrap(idx.select(-1, j), dims[j])
    return lin


def gather_nd(x: Tensor, indices: Tensor, batch_dims: int) -> Tensor:
    """ONNX GatherND: index tuples (last axis of ``indices``) into x, per batch entry."""
    dims = list(x.shape)
    k = indices.size(-1)
    bshape = dims[:batch_dims]
    inner = dims[batch_dims : batch_dims + k]
    rest = dims[batch_dims + k :]
    ishape = list(indices.shape)[batch_dims:-1]
    b = _prod(bshape)
    xf = x.reshape([b, _prod(inner)] + rest)
    idx = indices.to(torch.int64).reshape([b, _prod(ishape), k])
    lin = _linear_index(idx, inner)
    rows = torch.arange(b, device=x.device).unsqueeze(1).expand(lin.shape)
    return xf[rows, lin].reshape(bshape + ishape + rest)


def _scatter(x: Tensor, axis: int, idx: Tensor, updates: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return x.scatter(axis, idx, updates)
    if reduction == "add":
        return x.scatter_add(axis, idx, updates)
    red = "prod" if reduction == "mul" else "a" + reduction
    return x.scatter_reduce(axis, idx, updates, red, include_self=True)


def scatter_elements(
    x: Tensor, indices: Tensor, updates: Tensor, axis: int, reduction: str
) -> Tensor:
    """ONNX ScatterElements (and Scatter): torch.scatter / scatter_reduce, indices wrapped."""
    if axis < 0:
        axis += x.dim()
    return _scatter(x, axis, _wrap(indices, x.size(axis)), updates, reduction)


def scatter_nd(x: Tensor, indices: Tensor, updates: Tensor, reduction: str) -> Tensor:
    """ONNX ScatterND: writes (or reduces) update slices at the index tuples of ``indices``."""
    dims = list(x.shape)
    k = indices.size(-1)
    rest = dims[k:]
    xf = x.reshape([_prod(dims[:k])] + rest)
    lin = _linear_index(indices.to(torch.int64).reshape([-1, k]), dims[:k])
    n = lin.size(0)
    uf = updates.reshape([n] + rest)
    idx = lin.reshape([n] + [1] * len(rest)).expand(uf.shape)
    return _scatter(xf, 0, idx, uf, reduction).reshape(dims)


def one_hot(indices: Tensor, depth: Tensor, values: Tensor, axis: int) -> Tensor:
    """ONNX OneHot: values[1] where the (wrapped) index equals the position, else values[0]."""
    d = int(depth.reshape(-1)[0].item())
    r = indices.dim()
    if axis < 0:
        axis += r + 1
    idx = _wrap(indices, d).unsqueeze(axis)
    view = [1] * (r + 1)
    view[axis] = d
    hit = idx == torch.arange(d, device=indices.device).reshape(view)
    return torch.where(hit, values[1], values[0])


def tensor_scatter(
    cache: Tensor, update: Tensor, write_indices: Tensor | None, axis: int, circular: bool
) -> Tensor:
    """ONNX TensorScatter: writes ``update`` into ``cache`` along ``axis`` from each batch's
    write index (modulo the cache length in circular mode)."""
    if axis < 0:
        axis += cache.dim()
    b = cache.size(0)
    s = update.size(axis)
    if write_indices is None:
        start = torch.zeros([b, 1], dtype=torch.int64, device=cache.device)
    else:
        start = write_indices.to(torch.int64).reshape([b, 1])
    pos = start + torch.arange(s, device=cache.device).unsqueeze(0)  # [batch, s]
    if circular:
        pos = torch.remainder(pos, cache.size(axis))
    view = [1] * cache.dim()
    view[0] = b
    view[axis] = s
    return cache.scatter(axis, pos.reshape(view).expand(update.shape), update)


@lowers("Gather")
def gather_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Gather(x, i, axis) -> x.select(axis, i) / x.index_select(axis, i) for constant i
    axis = int(node.attr("axis", 0))
    c = ctx.input_constant(1)
    if c is not None and np.ndim(c) == 0:
        return ctx.method("select", args[0], axis, int(c))
    if c is not None and np.ndim(c) == 1 and c.dtype == np.int64 and (c >= 0).all():
        return ctx.method("index_select", args[0], axis, args[1])
    return ctx.call(gather, args[0], args[1], axis)


@lowers("GatherElements")
def gather_elements_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # GatherElements(x, i, axis) -> torch.gather(x, axis, i)
    return ctx.call(gather_elements, args[0], args[1], int(node.attr("axis", 0)))


@lowers("GatherND")
def gather_nd_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # GatherND(x, i, batch_dims) -> advanced indexing with linearized index tuples
    return ctx.call(gather_nd, args[0], args[1], int(node.attr("batch_dims", 0)))


@lowers("Scatter", "ScatterElements")
def scatter_elements_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ScatterElements(x, i, u, axis, reduction) -> x.scatter(axis, i, u) / scatter_reduce
    reduction = node.attr("reduction", "none")
    if reduction not in ("none", "add", "mul", "max", "min"):
        raise Unsupported(f"reduction {reduction!r}")
    axis = int(node.attr("axis", 0))
    return ctx.call(scatter_elements, args[0], args[1], args[2], axis, reduction)


@lowers("ScatterND")
def scatter_nd_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ScatterND(x, i, u, reduction) -> scatter / scatter_reduce over linearized index tuples
    reduction = node.attr("reduction", "none")
    if reduction not in ("none", "add", "mul", "max", "min"):
        raise Unsupported(f"reduction {reduction!r}")
    return ctx.call(scatter_nd, args[0], args[1], args[2], reduction)


@lowers("OneHot")
def one_hot_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # OneHot(i, depth, values, axis) -> torch.where(i == arange(depth), on, off)
    return ctx.call(one_hot, args[0], args[1], args[2], int(node.attr("axis", -1)))


@lowers("TensorScatter")
def tensor_scatter_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # TensorScatter(cache, update, write_indices, axis, mode) -> cache.scatter along axis
    mode = node.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        raise Unsupported(f"TensorScatter mode {mode!r}")
    axis = int(node.attr("axis", -2))
    if axis == 0:
        raise Unsupported("TensorScatter along the batch axis")
    wi = args[2] if len(args) > 2 else None
    return ctx.call(tensor_scatter, args[0], args[1], wi, axis, mode == "circular")


def reverse_sequence(x: Tensor, lens: Tensor, batch_axis: int, time_axis: int) -> Tensor:
    """ONNX ReverseSequence: reverses the first lens[b] steps of each batch entry."""
    t = torch.arange(x.size(time_axis), device=x.device).unsqueeze(1)
    n = lens.to(torch.int64).unsqueeze(0)
    idx = torch.where(t < n, n - 1 - t, t)  # [time, batch]
    if time_axis > batch_axis:
        idx = idx.t()
    view = [1] * x.dim()
    view[time_axis] = x.size(time_axis)
    view[batch_axis] = x.size(batch_axis)
    return torch.gather(x, time_axis, idx.reshape(view).expand(x.shape))


def compress(x: Tensor, condition: Tensor, axis: int | None) -> Tensor:
    """ONNX Compress: the slices along ``axis`` (of the flattened x without one) kept by cond."""
    idx = torch.nonzero(condition.reshape(-1)).reshape(-1)
    if axis is None:
        return x.reshape(-1).index_select(0, idx)
    return x.index_select(axis, idx)


@lowers("ReverseSequence")
def reverse_sequence_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ReverseSequence(x, lens) -> a gather along the time axis
    batch_axis = int(node.attr("batch_axis", 1))
    time_axis = int(node.attr("time_axis", 0))
    return ctx.call(reverse_sequence, args[0], args[1], batch_axis, time_axis)


@lowers("Compress")
def compress_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Compress(x, condition, axis) -> x.index_select(axis, condition.nonzero())
    axis = node.attr("axis", None)
    return ctx.call(compress, args[0], args[1], None if axis is None else int(axis))


@lowers("NonZero")
def nonzero(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # NonZero(x) -> torch.nonzero(x).t(): one row of indices per dimension
    return ctx.method("t", ctx.call(torch.nonzero, args[0]))
