"""Lowerings of tensor-building and rearranging ops: Pad, ConstantOfShape, Range, EyeLike, Trilu,
CenterCropPad, ReverseSequence, Compress.

Like ``shape.py``, constant shape-like inputs become static Python arguments; the runtime
helpers are written in the TorchScript subset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from neffkit.backends.torch.lowering import LoweringContext
from neffkit.backends.torch.ops.shape import (
    const_ints,
    device_of,
    has_input,
    ints_arg,
    rank_of,
    torch_dtype,
)
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node
from neffkit.ir.tensor import onnx_dtype

# -- runtime helpers (TorchScript subset) --------------------------------------------------


def _pad_pairs(rank: int, pads: list[int], axes: list[int] | None) -> list[list[int]]:
    """ONNX pads ([begins..., ends...] over ``axes``) as per-dim [begin, end] for every dim."""
    n = len(pads) // 2
    out = [[0, 0] for _ in range(rank)]
    for i in range(n):
        a = axes[i] if axes is not None else i
        if a < 0:
            a += rank
        out[a] = [pads[i], pads[i + n]]
    return out


def pad_dynamic(
    x: Tensor,
    pads: list[int],
    axes: list[int] | None,
    mode: str,
    value: float,
    value_t: Tensor | None,
) -> Tensor:
    """ONNX Pad (any mode, negative pads crop) for any rank; ``value_t`` overrides ``value``."""
    pairs = _pad_pairs(x.dim(), pads, axes)
    if mode == "constant":
        flat: list[int] = []
        for d in range(x.dim() - 1, -1, -1):
            flat.append(pairs[d][0])
            flat.append(pairs[d][1])
        if value_t is not None and value_t.numel() > 0:
            return torch.constant_pad_nd(x, flat, value_t.reshape(-1)[0].item())
        return torch.constant_pad_nd(x, flat, value)
    for d in range(x.dim()):
        b = pairs[d][0]
        e = pairs[d][1]
        if b == 0 and e == 0:
            continue
        n = x.size(d)
        idx = torch.arange(-b, n + e, device=x.device)
        if mode == "edge":
            idx = idx.clamp(0, n - 1)
        elif mode == "wrap":
            idx = torch.remainder(idx, n)
        elif mode == "reflect":
            if n == 1:
                idx = torch.zeros_like(idx)
            else:
                period = 2 * (n - 1)
                idx = torch.remainder(idx, period)
                idx = torch.where(idx >= n, period - idx, idx)
        else:
            raise RuntimeError("unknown Pad mode " + mode)
        x = x.index_select(d, idx)
    return x


def range_dynamic(start: Tensor, limit: Tensor, delta: Tensor) -> Tensor:
    """ONNX Range: max(ceil((limit - start) / delta), 0) values, computed like numpy.arange."""
    if start.is_floating_point():
        s = float(start.item())
        e = float(limit.item())
        d = float(delta.item())
        if (e - s) * d <= 0:
            return torch.zeros([0], dtype=start.dtype, device=start.device)
        r = torch.arange(s, e, d, dtype=torch.float64, device=start.device)
    else:
        si = int(start.item())
        ei = int(limit.item())
        di = int(delta.item())
        if (ei - si) * di <= 0:
            return torch.zeros([0], dtype=start.dtype, device=start.device)
        r = torch.arange(si, ei, di, dtype=torch.int64, device=start.device)
    return r.to(start.dtype)


def eye_like(x: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """ONNX EyeLike: ones on the k-th diagonal of a tensor shaped like 2-D ``x``."""
    n = x.size(0)
    m = x.size(1) if x.dim() > 1 else n
    rows = torch.arange(n, device=x.device).unsqueeze(1)
    cols = torch.arange(m, device=x.device).unsqueeze(0)
    return (cols - rows == k).to(dtype)


def trilu_dynamic(x: Tensor, k: Tensor, upper: bool) -> Tensor:
    """ONNX Trilu with a run-time diagonal offset."""
    kk = int(k.item())
    return torch.triu(x, kk) if upper else torch.tril(x, kk)


def center_crop_pad(x: Tensor, shape: list[int], axes: list[int] | None) -> Tensor:
    """ONNX CenterCropPad: crops or zero-pads each axis around its center."""
    r = x.dim()
    for i in range(len(shape)):
        a = axes[i] if axes is not None else i
        if a < 0:
            a += r
        d = x.size(a)
        s = shape[i]
        if s < d:
            x = x.narrow(a, (d - s) // 2, s)
        elif s > d:
            p = [0] * (2 * (r - a))
            p[2 * (r - 1 - a)] = (s - d) // 2
            p[2 * (r - 1 - a) + 1] = s - d - (s - d) // 2
            x = torch.constant_pad_nd(x, p, 0)
    return x


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


# -- lowerings -------------------------------------------------------------------------------

_TORCH_PAD_MODES = {"reflect": "reflect", "edge": "replicate"}


@lowers("Pad")
def pad(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Pad(x, pads, value, axes) -> F.pad(x, pads reordered last-dim-first, mode, value)
    x = args[0]
    mode = node.attr("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise Unsupported(f"Pad mode {mode!r}")
    value_t = None
    if ctx.opset < 11:
        pads: Any = list(node.attr("pads", None) or node.attr("paddings", []))
        value = float(node.attr("value", 0.0))
        axes: Any = None
    else:
        pads = ints_arg(ctx, 1, args)
        value = 0.0
        if has_input(node, 2):
            c = ctx.input_constant(2)
            if c is None:
                value_t = args[2]
            elif c.size:
                value = c.reshape(-1)[0].item()
        axes = ints_arg(ctx, 3, args) if has_input(node, 3) else None
    r = rank_of(node.inputs[0])
    static = isinstance(pads, list) and (axes is None or isinstance(axes, list))
    if static and r is None and axes is None:
        r = len(pads) // 2
    if not static or r is None or value_t is not None:
        return ctx.call(pad_dynamic, x, pads, axes, mode, float(value), value_t)
    pairs = _pad_pairs(r, pads, axes)
    last = next((d for d in range(r) if pairs[d] != [0, 0]), r)
    if last == r:
        return x
    flat = [p for d in range(r - 1, last - 1, -1) for p in pairs[d]]
    if mode == "constant":
        dt = node.inputs[0].dtype
        if dt is not None and not torch_dtype(dt).is_floating_point:
            # F.pad's value is a float in TorchScript; an int tensor gets an exact int scalar
            v = int(value) if float(value).is_integer() else value
            return ctx.call(torch.constant_pad_nd, x, flat, v)
        return ctx.call(F.pad, x, flat, mode="constant", value=float(value))
    k = r - last
    if mode in _TORCH_PAD_MODES and k <= 3 and r - k in (1, 2) and min(flat) >= 0:
        return ctx.call(F.pad, x, flat, mode=_TORCH_PAD_MODES[mode])
    return ctx.call(pad_dynamic, x, pads, axes, mode, 0.0, None)


@lowers("ConstantOfShape")
def constant_of_shape(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ConstantOfShape(shape, value) -> torch.full(shape, value, dtype=value's dtype)
    t = node.attr("value", None)
    arr = np.zeros(1, np.float32) if t is None else np.asarray(t.numpy()).reshape(-1)
    dtype = torch_dtype(onnx_dtype(arr.dtype))
    v: Any = arr[0]
    if dtype == torch.bool:
        v = bool(v)
    elif dtype.is_floating_point:
        v = float(v)
    elif dtype.is_complex:
        raise Unsupported("complex ConstantOfShape")
    else:
        v = int(v)
    dims = ints_arg(ctx, 0, args)
    return ctx.call(torch.full, dims, v, dtype=dtype, device=device_of(ctx, args[0]))


@lowers("Range")
def range_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Range(start, limit, delta) -> torch.arange(start, limit, delta) in the inputs' dtype
    consts = [ctx.input_constant(i) for i in range(3)]
    dt = node.inputs[0].dtype
    if any(c is None for c in consts) or dt is None:
        return ctx.call(range_dynamic, *args[:3])
    dtype = torch_dtype(dt)
    s, e, d = (np.asarray(c).reshape(-1)[0].item() for c in consts)
    if d == 0:
        raise Unsupported("Range with a zero delta")
    dev = device_of(ctx, args[0])
    count = max(int(np.ceil((float(e) - float(s)) / float(d))), 0)
    if count == 0:
        return ctx.call(torch.zeros, [0], dtype=dtype, device=dev)
    wide = torch.float64 if dtype.is_floating_point else torch.int64
    y = ctx.call(torch.arange, s, e, d, dtype=wide, device=dev)
    return y if wide == dtype else ctx.method("to", y, dtype)


@lowers("EyeLike")
def eyelike(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # EyeLike(x, k, dtype) -> ones where col - row == k
    dt = node.attr("dtype", None) or node.inputs[0].dtype
    if dt is None:
        raise Unsupported("EyeLike of an input of unknown dtype")
    return ctx.call(eye_like, args[0], int(node.attr("k", 0)), torch_dtype(dt))


@lowers("Trilu")
def trilu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Trilu(x, k, upper) -> torch.triu(x, k) / torch.tril(x, k)
    upper = bool(node.attr("upper", 1))
    k = 0
    if has_input(node, 1):
        ks = const_ints(ctx, 1)
        if ks is None:
            return ctx.call(trilu_dynamic, args[0], args[1], upper)
        k = ks[0]
    return ctx.call(torch.triu if upper else torch.tril, args[0], k)


@lowers("CenterCropPad")
def center_crop_pad_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # CenterCropPad(x, shape, axes) -> center crop / zero pad along each axis
    axes = node.attr("axes", None)
    dims = ints_arg(ctx, 1, args)
    return ctx.call(center_crop_pad, args[0], dims, list(axes) if axes is not None else None)


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
