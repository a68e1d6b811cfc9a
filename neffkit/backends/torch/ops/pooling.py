"""Lowerings of pooling ops: MaxPool, AveragePool, LpPool, their Global forms, MaxUnpool.

Plain cases (symmetric pads torch accepts, no dilation for averages) lower to one
``F.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], False)``-style call. Everything else
(asymmetric pads, ``auto_pad`` on run-time shapes, dilated averages, ``Indices`` in
column-major order, ...) goes through ``pool_nd``, an exact window-by-window implementation
built on ``Tensor.unfold`` that follows the ONNX reference (ceil-mode windows that start in
the right padding are dropped; the region added by ceil mode is never counted).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from onnx import TensorProto

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import FLOAT_TYPES, ConvGeometry, arg, int_list, same_pads
from neffkit.backends.torch.helpers.shapes import rank_of
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node

MAX = "max"
AVG = "avg"
LP = "lp"
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _windows(
    t: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int]
) -> torch.Tensor:
    """``[N, C, *out, prod(kernel)]``: every (dilated) pooling window of a padded tensor."""
    nd = len(kernel)
    for i in range(nd):
        eff = (kernel[i] - 1) * dilations[i] + 1
        t = t.unfold(2 + i, eff, strides[i])
        if dilations[i] != 1:
            pick = torch.arange(0, eff, dilations[i], device=t.device)
            t = t.index_select(t.dim() - 1, pick)
    return t.flatten(2 + nd)


def pool_nd(
    x: torch.Tensor,
    kind: str,
    kernel: list[int],
    strides: list[int],
    pads: list[int],
    dilations: list[int],
    ceil_mode: bool,
    count_include_pad: bool,
    p: float,
    same: int,
    fill: float,
    storage_order: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX MaxPool / AveragePool / LpPool (``kind`` max / avg / lp) on ``x``: ``(y, indices)``.

    ``same`` is 0 (use ``pads``), 1 (SAME_UPPER) or 2 (SAME_LOWER); ``fill`` pads max pooling
    (the dtype's lowest value). ``indices`` (MaxPool only, else empty) are flattened over the
    whole input, in row-major (``storage_order=0``) or column-major order.
    """
    nd = len(kernel)
    sizes: list[int] = [int(s) for s in x.shape[2:]]
    if same != 0:
        pads = same_pads(sizes, kernel, strides, dilations, same == 2)
    pad: list[int] = []
    extra: list[int] = []
    for j in range(nd):
        i = nd - 1 - j
        eff = (kernel[i] - 1) * dilations[i] + 1
        span = sizes[i] + pads[i] + pads[nd + i] - eff
        if ceil_mode:
            out = -(-span // strides[i]) + 1
            if (out - 1) * strides[i] >= sizes[i] + pads[i]:
                out -= 1
        else:
            out = span // strides[i] + 1
        need = (out - 1) * strides[i] + eff
        pad += [pads[i], pads[nd + i]]
        extra += [0, max(0, need - sizes[i] - pads[i] - pads[nd + i])]
    empty = torch.zeros([0], dtype=torch.int64, device=x.device)
    if kind == "max":
        xp = F.pad(F.pad(x, pad, value=fill), extra, value=fill)
        win = _windows(xp, kernel, strides, dilations)
        if storage_order < 0:
            return win.amax(-1), empty
        y, arg = win.max(-1)
        n_in = 1
        for s in sizes:
            n_in *= s
        plane = torch.arange(n_in, device=x.device)
        if storage_order == 1:
            rev: list[int] = []
            for s in sizes:
                rev.insert(0, s)
            plane = plane.reshape(rev).permute(list(range(nd - 1, -1, -1)))
        plane = plane.reshape([1, 1] + sizes)
        plane = F.pad(F.pad(plane, pad, value=-1.0), extra, value=-1.0)
        idx_win = _windows(plane, kernel, strides, dilations)
        idx = idx_win.expand(win.shape).gather(-1, arg.unsqueeze(-1)).squeeze(-1)
        nc = torch.arange(x.shape[0] * x.shape[1], device=x.device) * n_in
        idx = idx + nc.reshape([x.shape[0], x.shape[1]] + [1] * nd)
        return y, idx
    if kind == "lp":
        x = x.abs().pow(p)
    xp = F.pad(F.pad(x, pad), extra)
    total = _windows(xp, kernel, strides, dilations).sum(-1)
    if kind == "lp":
        return total.pow(1.0 / p), empty
    ones = torch.ones([1, 1] + sizes, dtype=x.dtype, device=x.device)
    counted = F.pad(F.pad(ones, pad, value=1.0 if count_include_pad else 0.0), extra)
    count = _windows(counted, kernel, strides, dilations).sum(-1)
    return total / count, empty


def _lowest(dtype: int | None) -> float:
    """The fill for max pooling padding: -inf, or the integer type's minimum."""
    if dtype is None or dtype in (
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
    ):
        return float("-inf")
    from neffkit.ir.tensor import np_dtype

    return float(np.iinfo(np_dtype(dtype)).min)


def _pool_attrs(node: Node) -> tuple[int, list[int], ConvGeometry]:
    kernel = node.attr("kernel_shape")
    if not kernel:
        raise Unsupported(f"{node.op_type} without kernel_shape")
    kernel = list(kernel)
    nd = len(kernel)
    return nd, kernel, ConvGeometry(node, nd, kernel)


def _torch_ok(geo: ConvGeometry, kernel: list[int], dilated_ok: bool) -> bool:
    """True when torch's own pooling matches ONNX: pads symmetric and at most half a window."""
    if not geo.symmetric or geo.nd > 3:
        return False
    assert geo.pads is not None
    if not dilated_ok and any(d != 1 for d in geo.dilations):
        return False
    return all(
        2 * p <= (k - 1) * d + 1 if dilated_ok else 2 * p <= k
        for p, k, d in zip(geo.pads, kernel, geo.dilations)
    )


def _generic(
    ctx: LoweringContext,
    node: Node,
    x: Arg,
    kind: int,
    kernel: list[int],
    geo: ConvGeometry,
    p: float = 2.0,
    storage_order: int = -1,
) -> Arg:
    same = 0 if geo.pads is not None else (2 if geo.same_lower else 1)
    pads = geo.pads if geo.pads is not None else [0] * (2 * geo.nd)
    return ctx.call(
        pool_nd,
        x,
        kind,
        kernel,
        geo.strides,
        pads,
        geo.dilations,
        bool(node.attr("ceil_mode", 0)),
        bool(node.attr("count_include_pad", 0)),
        p,
        same,
        _lowest(node.inputs[0].dtype),
        storage_order,
    )


def _uses(node: Node, i: int) -> bool:
    return i < len(node.outputs) and bool(
        node.outputs[i].num_uses or node.outputs[i].is_graph_output
    )


@lowers("MaxPool")
def max_pool(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # MaxPool -> F.max_poolNd(x, kernel, strides, pads, dilations, ceil_mode); Indices are
    # ONNX's flat indices over the whole input (torch's are per plane).
    x = args[0]
    nd, kernel, geo = _pool_attrs(node)
    ceil = bool(node.attr("ceil_mode", 0))
    order = int(node.attr("storage_order", 0))
    want_idx = _uses(node, 1)
    is_float = node.inputs[0].dtype in FLOAT_TYPES or node.inputs[0].dtype is None
    # torch's CUDA max pooling has no integer kernels: integer inputs take pool_nd
    if is_float and _torch_ok(geo, kernel, dilated_ok=True) and not (want_idx and order == 1):
        assert geo.pads is not None
        fn = _MAX_POOL[nd]
        pads = geo.pads[:nd]
        if not want_idx:
            return ctx.call(fn, x, kernel, geo.strides, pads, geo.dilations, ceil)
        r = ctx.call(fn, x, kernel, geo.strides, pads, geo.dilations, ceil, True)
        return [ctx.getitem(r, 0), ctx.call(plane_to_flat, ctx.getitem(r, 1), x)]
    r = _generic(ctx, node, x, MAX, kernel, geo, storage_order=order if want_idx else -1)
    y = ctx.getitem(r, 0)
    return [y, ctx.getitem(r, 1)] if want_idx else y


def plane_to_flat(idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """torch's per-plane pooling indices -> ONNX indices over the whole ``[N, C, ...]`` input."""
    n_in = 1
    for s in x.shape[2:]:
        n_in *= s
    nc = torch.arange(x.shape[0] * x.shape[1], device=x.device) * n_in
    return idx + nc.reshape([x.shape[0], x.shape[1]] + [1] * (x.dim() - 2))


@lowers("AveragePool")
def average_pool(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # AveragePool -> F.avg_poolNd(x, kernel, strides, pads, ceil_mode, count_include_pad)
    x = args[0]
    nd, kernel, geo = _pool_attrs(node)
    if _torch_ok(geo, kernel, dilated_ok=False):
        assert geo.pads is not None
        ceil = bool(node.attr("ceil_mode", 0))
        cip = bool(node.attr("count_include_pad", 0))
        return ctx.call(_AVG_POOL[nd], x, kernel, geo.strides, geo.pads[:nd], ceil, cip)
    return ctx.getitem(_generic(ctx, node, x, AVG, kernel, geo), 0)


@lowers("LpPool")
def lp_pool(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # LpPool -> (sum of |x|^p over the window's input elements)^(1/p), computed by pool_nd
    _, kernel, geo = _pool_attrs(node)
    p = float(node.attr("p", 2))
    return ctx.getitem(_generic(ctx, node, args[0], LP, kernel, geo, p=p), 0)


def _spatial_axes(ctx: LoweringContext, node: Node, x: Arg) -> Arg:
    r = rank_of(node.inputs[0])
    if r is None:
        return ctx.call(spatial_axes, x)
    return list(range(2, r))


def spatial_axes(x: torch.Tensor) -> list[int]:
    """``[2, ..., rank - 1]`` for a tensor whose rank is known only at run time."""
    return list(range(2, x.dim()))


@lowers("GlobalAveragePool")
def global_average_pool(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # GlobalAveragePool(x) -> x.mean([2, 3, ...], keepdim=True)
    return ctx.method("mean", args[0], _spatial_axes(ctx, node, args[0]), keepdim=True)


@lowers("GlobalMaxPool")
def global_max_pool(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # GlobalMaxPool(x) -> x.amax([2, 3, ...], keepdim=True)
    return ctx.method("amax", args[0], _spatial_axes(ctx, node, args[0]), keepdim=True)


@lowers("GlobalLpPool")
def global_lp_pool(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # GlobalLpPool(x) -> ||x||_p over the spatial axes
    p = float(node.attr("p", 2))
    axes = _spatial_axes(ctx, node, args[0])
    return ctx.call(torch.linalg.vector_norm, args[0], p, axes, True)


def max_unpool(
    x: torch.Tensor,
    idx: torch.Tensor,
    kernel: list[int],
    strides: list[int],
    pads: list[int],
    out_shape: list[int],
) -> torch.Tensor:
    """ONNX MaxUnpool: scatters ``x`` at its flat ``idx`` into zeros of the inferred shape,
    which is then placed at the origin of ``out_shape`` when that is given."""
    nd = len(kernel)
    inferred: list[int] = [x.shape[0], x.shape[1]]
    for i in range(nd):
        inferred.append((x.shape[2 + i] - 1) * strides[i] - pads[i] - pads[nd + i] + kernel[i])
    n = 1
    for s in inferred:
        n *= s
    y = torch.zeros([n], dtype=x.dtype, device=x.device)
    y = y.scatter(0, idx.reshape(-1), x.reshape(-1)).reshape(inferred)
    if len(out_shape) == 0:
        return y
    pad: list[int] = []
    for i in range(nd - 1, -1, -1):
        pad += [0, out_shape[2 + i] - inferred[2 + i]]
    return F.pad(y, pad)


@lowers("MaxUnpool")
def max_unpool_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # MaxUnpool(x, indices[, output_shape]) -> max_unpool(...) (a scatter into zeros)
    kernel = list(node.attr("kernel_shape"))
    nd = len(kernel)
    strides = list(node.attr("strides", None) or [1] * nd)
    pads = list(node.attr("pads", None) or [0] * (2 * nd))
    out_shape: Arg = []
    if arg(args, 2) is not None:
        c = ctx.input_constant(2)
        if c is not None:
            out_shape = [int(v) for v in np.asarray(c).reshape(-1)]
        else:
            out_shape = ctx.call(int_list, args[2])
    return ctx.call(max_unpool, args[0], args[1], kernel, strides, pads, out_shape)
