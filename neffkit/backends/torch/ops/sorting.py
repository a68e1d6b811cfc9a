"""Lowerings of sorting ops: TopK and Unique.

TopK uses a stable sort so that ties keep the lower index first, as ONNX requires
(``torch.topk`` does not promise an order for ties).
"""

from __future__ import annotations

import torch
from onnx import TensorProto as TP
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.dtypes import (
    WIDE_UNSIGNED,
    in_dtype,
    torch_dtype,
    uint64_from_key,
    uint64_key,
)
from neffkit.backends.torch.registry import Arg, Lowered, lowers
from neffkit.ir.core import Node


def top_k(x: Tensor, k: Tensor, axis: int, largest: bool) -> tuple[Tensor, Tensor]:
    """ONNX TopK with ``k`` known at run time: ties keep the lower index first."""
    values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
    n = int(k.reshape([-1])[0])
    return values.narrow(axis, 0, n), indices.narrow(axis, 0, n)


def unique(x: Tensor, axis: int | None, sort: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """ONNX Unique: values, first-occurrence indices, inverse indices and counts; with
    ``sort`` false the values come in order of first occurrence."""
    if axis is None:
        x = x.reshape([-1])
        dim = 0
    else:
        dim = axis % x.dim()
    y, inverse, counts = torch.unique(
        x, sorted=True, return_inverse=True, return_counts=True, dim=dim
    )
    n = x.shape[dim]
    m = y.shape[dim]
    positions = torch.arange(n, device=x.device)
    first = torch.full([m], n, dtype=torch.int64, device=x.device)
    first = first.scatter_reduce(0, inverse, positions, "amin")
    if not sort:
        order = torch.argsort(first)
        y = y.index_select(dim, order)
        first = first[order]
        counts = counts[order]
        inverse = torch.argsort(order)[inverse]
    return y, first, inverse, counts


@lowers("TopK")
def topk(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # TopK(x, k) -> torch.sort(x, dim, descending, stable=True) narrowed to k (ties: low index)
    axis = node.attr("axis", -1)
    largest = bool(node.attr("largest", 1))
    if ctx.opset < 10:
        k: int | None = node.attr("k")
    else:
        c = ctx.input_constant(1)
        k = None if c is None else int(c.reshape(-1)[0])
    dt = in_dtype(node)
    x = args[0]
    # torch (CUDA) cannot sort uint16/32/64: sort int64 values, or order-preserving uint64 keys
    if dt == TP.UINT64:
        x = ctx.call(uint64_key, x)
    elif dt in WIDE_UNSIGNED:
        x = ctx.method("to", x, torch.int64)
    if k is None:
        out = ctx.call(top_k, x, args[1], axis, largest)
        values, indices = ctx.getitem(out, 0), ctx.getitem(out, 1)
    else:
        s = ctx.call(torch.sort, x, dim=axis, descending=largest, stable=True)
        values = ctx.method("narrow", ctx.getitem(s, 0), axis, 0, k)
        indices = ctx.method("narrow", ctx.getitem(s, 1), axis, 0, k)
    if dt == TP.UINT64:
        values = ctx.call(uint64_from_key, values)
    elif dt in WIDE_UNSIGNED:
        values = ctx.method("to", values, torch_dtype(dt))
    return [values, indices]


@lowers("Unique")
def unique_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Unique(x, axis, sorted) -> values, first indices, inverse indices, counts
    out = ctx.call(unique, args[0], node.attr("axis"), bool(node.attr("sorted", 1)))
    return [ctx.getitem(out, i) for i in range(len(node.outputs))]
