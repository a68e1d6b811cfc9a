"""Lowerings of shape and layout ops: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze,
Transpose, Concat, Split, Slice, Expand, Tile.

Shape-like inputs known when lowering (initializers, Constant nodes) become static Python lists
in the generated code (``x.reshape([1, 3, 224, 224])``) so it reads like hand-written PyTorch;
otherwise ``int_list`` reads the shape tensor at run time. The runtime helpers here are written
in the TorchScript subset so the lowered module scripts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from neffkit.backends.torch.lowering import LoweringContext, to_torch
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node, Value
from neffkit.ir.tensor import np_dtype

_BIG = 2**62  # slice bounds beyond this are "to the end" (avoids Python's slice clipping)

# -- lowering-time utilities (shared with shape_more.py and index.py) ------------------------


def torch_dtype(elem_type: int) -> torch.dtype:
    """The torch dtype of an ONNX element type (``Unsupported`` for strings and the like)."""
    try:
        return to_torch(np.zeros(0, dtype=np_dtype(elem_type))).dtype
    except Unsupported:
        raise
    except Exception as e:  # noqa: BLE001 - unknown or unmappable element type
        raise Unsupported(f"element type {elem_type} has no torch dtype ({e})") from e


def const_ints(ctx: LoweringContext, i: int) -> list[int] | None:
    """Input ``i`` as a list of Python ints when it is known while lowering, else None."""
    c = ctx.input_constant(i)
    if c is None:
        return None
    return [int(v) for v in np.asarray(c).reshape(-1)]


def ints_arg(ctx: LoweringContext, i: int, args: list[Arg]) -> Any:
    """Input ``i`` as a static list when constant, else an emitted ``int_list(t)`` call."""
    c = const_ints(ctx, i)
    if c is not None:
        return c
    return ctx.call(int_list, args[i])


def has_input(node: Node, i: int) -> bool:
    """True when optional input ``i`` is present."""
    return i < len(node.inputs) and node.inputs[i] is not None


def static_shape(v: Value | None) -> tuple[int, ...] | None:
    """The fully known shape of a value, else None."""
    if v is None or v.shape is None:
        return None
    if all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v.shape):
        return tuple(int(d) for d in v.shape)
    return None


def rank_of(v: Value | None) -> int | None:
    """The rank of a value when known, else None."""
    if v is None or v.shape is None:
        return None
    return len(v.shape)


def device_of(ctx: LoweringContext, x: Arg) -> Any:
    """Emits ``x.device`` (new tensors go where the inputs are)."""
    return ctx.call(getattr, x, "device")


# -- runtime helpers (TorchScript subset) --------------------------------------------------


def int_list(t: Tensor) -> list[int]:
    """The values of a shape-like integer tensor as a list (for torch's List[int] args)."""
    return torch.jit.annotate(list[int], t.reshape(-1).to(torch.int64).tolist())


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


# -- lowerings -------------------------------------------------------------------------------


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
        return ctx.call(reshape_dynamic, x, ctx.call(int_list, args[1]), allowzero)
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


@lowers("Transpose")
def transpose(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Transpose(x, perm) -> x.permute(perm); no perm reverses the dims
    perm = node.attr("perm", None)
    if perm is None:
        r = rank_of(node.inputs[0])
        if r is None:
            return ctx.call(reverse_dims, args[0])
        perm = list(reversed(range(r)))
    return ctx.method("permute", args[0], list(perm))


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
        starts = ints_arg(ctx, 1, args)
        ends = ints_arg(ctx, 2, args)
        axes = ints_arg(ctx, 3, args) if has_input(node, 3) else None
        steps = ints_arg(ctx, 4, args) if has_input(node, 4) else None
    static = all(isinstance(v, list | tuple | type(None)) for v in (starts, ends, axes, steps))
    if not static:
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
    return [max(min(int(b), _BIG), -_BIG) for b in v]


def _positive_slice(s: int, e: int, st: int) -> slice:
    """A readable Python slice for ONNX bounds with a positive step."""
    return slice(
        None if s == 0 or s <= -_BIG else s,
        None if e >= _BIG else e,
        None if st == 1 else st,
    )


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
    return ctx.call(expand_to, x, dims if dims is not None else ctx.call(int_list, args[1]))


@lowers("Tile")
def tile(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Tile(x, repeats) -> x.repeat(repeats)
    if ctx.opset < 6:
        raise Unsupported("Tile-1 (tiles and axis inputs)")
    return ctx.method("repeat", args[0], ints_arg(ctx, 1, args))
