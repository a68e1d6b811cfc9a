"""Lowerings of ops that move data between positions: Transpose, Concat, Split, Slice, Tile, Pad,
CenterCropPad, DepthToSpace and SpaceToDepth.

Like ``shape``, constant shape-like inputs become static Python arguments; the runtime helpers
are written in the TorchScript subset.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import str_attr
from neffkit.backends.torch.helpers.shapes import (
    has_input,
    ints_arg,
    rank_of,
    static_shape,
    torch_dtype,
)
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node

_BIG = 2**62  # slice bounds beyond this are "to the end" (avoids Python's slice clipping)


def reverse_dims(x: Tensor) -> Tensor:
    """Transpose with the default permutation: the dims reversed."""
    perm = list(range(x.dim()))
    perm.reverse()
    return x.permute(perm)


def split_even(x: Tensor, n: int, axis: int) -> list[Tensor]:
    """ONNX Split into ``n`` parts: equal, or ceil-sized with a smaller last chunk."""
    d = x.size(axis)
    if d % n == 0:
        sizes = [d // n] * n
    else:
        sizes = [d // n + 1] * n
        sizes[n - 1] = d - (d // n + 1) * (n - 1)
    return list(torch.split(x, sizes, axis))


def slice_dynamic(
    x: Tensor,
    starts: list[int],
    ends: list[int],
    axes: list[int] | None,
    steps: list[int] | None,
) -> Tensor:
    """ONNX Slice for bounds or dims known only at run time (numpy slicing semantics)."""
    for i in range(len(starts)):
        axis = axes[i] if axes is not None else i
        if axis < 0:
            axis += x.dim()
        step = steps[i] if steps is not None else 1
        d = x.size(axis)
        start = starts[i]
        end = ends[i]
        if start < 0:
            start += d
        if end < 0:
            end += d
        if step > 0:
            start = min(max(start, 0), d)
            end = min(max(end, start), d)
            x = torch.ops.aten.slice(x, axis, start, end, step)
        else:
            start = min(max(start, -1), d - 1)
            end = min(max(end, -1), d - 1)
            n = (start - end - step - 1) // -step if start > end else 0
            if n == 0:
                x = x.narrow(axis, 0, 0)
            else:
                last = start + (n - 1) * step
                x = torch.ops.aten.slice(x, axis, last, start + 1, -step).flip([axis])
    return x


@lowers("Transpose")
def transpose(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Transpose(x, perm) -> x.permute(perm); no perm reverses the dims
    perm = node.attr("perm", None)
    if perm is None:
        r = rank_of(node.inputs[0])
        if r is None:
            return ctx.call(reverse_dims, args[0])
        perm = list(reversed(range(r)))
    perm = [int(p) for p in perm]
    n = len(perm)
    out = node.outputs[0]
    if (
        n >= 3
        and perm[-2:] != [n - 2, n - 1]
        and all(u[0].op_type == "MatMul" and u[1] == 1 for u in out.uses)
    ):
        # A key transposed for q @ k^T: permute, then swap the last two dims, so the swap
        # reads as one (inductor's attention fusion takes any permute before a MatMul for
        # k.transpose(-2, -1) and would read the wrong key).
        head = perm[:-2] + [perm[-1], perm[-2]]
        x = args[0] if head == list(range(n)) else ctx.method("permute", args[0], head)
        return ctx.method("transpose", x, -2, -1)
    return ctx.method("permute", args[0], perm)


@lowers("Concat")
def concat(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Concat(xs, axis) -> torch.cat(xs, dim=axis)
    axis = node.attr("axis", 1 if ctx.opset < 4 else None)
    if axis is None:
        raise Unsupported("Concat without an axis attribute")
    return ctx.call(torch.cat, [a for a in args if a is not None], dim=axis)


@lowers("Split")
def split(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Split(x, split, axis) -> torch.split(x, sizes, dim=axis), one output per part
    x = args[0]
    axis = node.attr("axis", 0)
    n = node.attr("num_outputs", None) or len(node.outputs)
    sizes: Any = None
    if ctx.opset >= 13 or (ctx.opset < 2 and has_input(node, 1)):
        if has_input(node, 1):
            sizes = ints_arg(ctx, 1, args)
    if sizes is None:
        sizes = node.attr("split", None)
    if sizes is None:
        known = static_shape(node.inputs[0])
        if known is None or not -len(known) <= axis < len(known):
            parts = ctx.call(split_even, x, n, axis)
            return [ctx.getitem(parts, i) for i in range(n)]
        d = known[axis]
        if d % n == 0:
            sizes = [d // n] * n
        else:
            sizes = [d // n + 1] * (n - 1) + [d - (d // n + 1) * (n - 1)]
    parts = ctx.method("split", x, list(sizes) if isinstance(sizes, tuple) else sizes, axis)
    return [ctx.getitem(parts, i) for i in range(len(node.outputs))]


@lowers("Slice")
def slice_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Slice(x, starts, ends, axes, steps) -> x[s0:e0:st0, ...] (negative steps: slice, then flip)
    x = args[0]
    if ctx.opset < 10:
        starts = list(node.attr("starts", []))
        ends = list(node.attr("ends", []))
        axes: Any = node.attr("axes", None)
        steps: Any = None
    else:
        # bounds from shapes may hold run-time sizes (x.size(1)): Python ints, never tensors
        starts = ints_arg(ctx, 1, args, symbolic=True)
        ends = ints_arg(ctx, 2, args, symbolic=True)
        axes = ints_arg(ctx, 3, args) if has_input(node, 3) else None
        steps = ints_arg(ctx, 4, args) if has_input(node, 4) else None
    static = all(isinstance(v, list | tuple | type(None)) for v in (starts, ends, axes, steps))
    sizes = any(not isinstance(b, int) for v in (starts, ends) if static for b in v)
    if not static or sizes:
        return ctx.call(slice_dynamic, x, _clamp(starts), _clamp(ends), axes, steps)
    n = len(starts)
    axes = list(axes) if axes is not None else list(range(n))
    steps = list(steps) if steps is not None else [1] * n
    starts, ends = _clamp(starts), _clamp(ends)
    r = rank_of(node.inputs[0])
    known = static_shape(node.inputs[0])
    from_end = False  # index from the last dim (x[..., a:b]) when only negative axes are known
    if any(a < 0 for a in axes):
        if r is not None:
            axes = [a + r if a < 0 else a for a in axes]
        elif all(a < 0 for a in axes):
            from_end = True
        else:
            return ctx.call(slice_dynamic, x, starts, ends, axes, steps)
    if any(st < 0 for st in steps) and known is None:
        return ctx.call(slice_dynamic, x, starts, ends, axes, steps)
    width = -min(axes) if from_end else (max(axes) + 1 if axes else 0)
    index: list[Any] = [slice(None)] * width
    flips = []
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise Unsupported("Slice with a zero step")
        pos = width + a if from_end else a
        if st > 0:
            index[pos] = _positive_slice(s, e, st)
            continue
        assert known is not None
        first, stop, _ = slice(s, e, st).indices(known[a])
        count = len(range(first, stop, st))
        if count == 0:
            index[pos] = slice(0, 0)
            continue
        last = first + (count - 1) * st
        index[pos] = slice(last or None, first + 1, -st if st != -1 else None)
        flips.append(a)
    if not any(i != slice(None) for i in index):
        y = x
    else:
        y = ctx.getitem(x, tuple([Ellipsis, *index] if from_end else index))
    return ctx.method("flip", y, flips) if flips else y


def _clamp(v: Any) -> Any:
    """Slice bounds clamped to +-2**62 (same meaning; TorchScript cannot parse INT64_MIN)."""
    if not isinstance(v, list | tuple):
        return v
    return [max(min(int(b), _BIG), -_BIG) if isinstance(b, int) else b for b in v]


def _positive_slice(s: int, e: int, st: int) -> slice:
    """A readable Python slice for ONNX bounds with a positive step."""
    return slice(
        None if s == 0 or s <= -_BIG else s,
        None if e >= _BIG else e,
        None if st == 1 else st,
    )


@lowers("Tile")
def tile(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Tile(x, repeats) -> x.repeat(repeats)
    if ctx.opset < 6:
        raise Unsupported("Tile-1 (tiles and axis inputs)")
    return ctx.method("repeat", args[0], ints_arg(ctx, 1, args, symbolic=True))


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
        # torch.constant_pad_nd, what F.pad's constant mode runs: a trace records it by that
        # name, which accelerator op lists know (F.pad traces as the composite aten::pad)
        dt = node.inputs[0].dtype
        if dt is not None and not torch_dtype(dt).is_floating_point:
            # an int tensor gets an exact int scalar
            v = int(value) if float(value).is_integer() else value
            return ctx.call(torch.constant_pad_nd, x, flat, v)
        return ctx.call(torch.constant_pad_nd, x, flat, float(value))
    k = r - last
    if mode in _TORCH_PAD_MODES and k <= 3 and r - k in (1, 2) and min(flat) >= 0:
        return ctx.call(F.pad, x, flat, mode=_TORCH_PAD_MODES[mode])
    return ctx.call(pad_dynamic, x, pads, axes, mode, 0.0, None)


@lowers("CenterCropPad")
def center_crop_pad_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # CenterCropPad(x, shape, axes) -> center crop / zero pad along each axis
    axes = node.attr("axes", None)
    dims = ints_arg(ctx, 1, args)
    return ctx.call(center_crop_pad, args[0], dims, list(axes) if axes is not None else None)


def depth_to_space_dcr(x: torch.Tensor, b: int) -> torch.Tensor:
    """DepthToSpace in DCR order: channels hold (block row, block column, depth)."""
    n, c, h, w = x.shape
    y = x.reshape([n, b, b, c // (b * b), h, w]).permute([0, 3, 4, 1, 5, 2])
    return y.reshape([n, c // (b * b), h * b, w * b])


def space_to_depth_dcr(x: torch.Tensor, b: int) -> torch.Tensor:
    """SpaceToDepth in DCR order (the inverse of ``depth_to_space_dcr``)."""
    n, c, h, w = x.shape
    y = x.reshape([n, c, h // b, b, w // b, b]).permute([0, 3, 5, 1, 2, 4])
    return y.reshape([n, c * b * b, h // b, w // b])


@lowers("DepthToSpace")
def depth_to_space(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # DepthToSpace: CRD -> F.pixel_shuffle(x, b); DCR -> depth_to_space_dcr(x, b)
    b = int(node.attr("blocksize"))
    if str_attr(node, "mode", "DCR") == "CRD":
        return ctx.call(F.pixel_shuffle, args[0], b)
    return ctx.call(depth_to_space_dcr, args[0], b)


@lowers("SpaceToDepth")
def space_to_depth(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SpaceToDepth: CRD -> F.pixel_unshuffle(x, b); DCR (default) -> space_to_depth_dcr(x, b)
    b = int(node.attr("blocksize"))
    if str_attr(node, "mode", "DCR") == "CRD":
        return ctx.call(F.pixel_unshuffle, args[0], b)
    return ctx.call(space_to_depth_dcr, args[0], b)
