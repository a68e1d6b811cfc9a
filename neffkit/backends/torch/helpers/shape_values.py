"""Shape computations followed while lowering: what Shape, Gather, Concat, Unsqueeze, ... of
shapes compute, as Python ints (static dims) and fx nodes of run-time sizes (``x.size(1)``).

Consumers (Reshape, Expand, Range, ConstantOfShape, Tile) read them through
``helpers.shapes.const_ints`` / ``sym_ints``, so a size reaches torch as a Python int -- a
literal when known, a SymInt under ``torch.compile`` / ``torch.export`` -- and no lowered unit
reads a shape tensor back with ``.tolist()`` / ``.item()`` (a data-dependent value that those
compilers cannot guard on). The tensors themselves are still emitted for any other consumer;
dead ones are removed with the rest of the module's dead code.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto as TP

from neffkit.backends.torch.context import LoweringContext
from neffkit.ir.core import Node

# Integer element types whose values a shape computation may carry (Cast targets included).
_INTS = {TP.INT8, TP.INT16, TP.INT32, TP.INT64, TP.UINT8, TP.UINT16, TP.UINT32, TP.UINT64}
# Broadcast arithmetic followed on known elements (integer Div is left to the runtime).
_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "Add": operator.add,
    "Sub": operator.sub,
    "Mul": operator.mul,
}
_LIMIT = 64  # longer integer tensors are data, not shapes


def track(ctx: LoweringContext, node: Node) -> None:
    """Records the known elements of ``node``'s output when it computes on shapes."""
    if node.domain != "" or not node.outputs or node.outputs[0] is None:
        return
    fn = _RULES.get(node.op_type)
    if fn is None:
        return
    out = node.outputs[0]
    if out.dtype is not None and out.dtype not in _INTS:
        return
    try:
        got = fn(ctx, node)
    except (TypeError, ValueError, IndexError):
        return  # a malformed shape computation: the lowering proper reports it, or runs it
    if got is not None and len(got[0]) <= _LIMIT:
        ctx.set_ints(out, got[0], got[1])


Known = tuple[list[Any], bool]


def _input(ctx: LoweringContext, node: Node, i: int) -> Known | None:
    ins = node.inputs
    return ctx.known_ints(ins[i]) if i < len(ins) and ins[i] is not None else None


def _shape(ctx: LoweringContext, node: Node) -> Known | None:
    # Shape(x)[start:end] -> [8, x.size(1), ...]: static dims as ints, others read as sizes
    x = node.inputs[0]
    if x is None or x.shape is None:
        return None
    rank = len(x.shape)
    dims: list[int | None] = [
        int(d) if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else None
        for d in x.shape
    ]  # None: read at run time, only for the dims the slice keeps
    start = node.attr("start", 0)
    end = node.attr("end", None)
    keep = range(rank)[slice(start, end)]
    src = ctx.value(x)
    out = [dims[i] if dims[i] is not None else ctx.method("size", src, i) for i in keep]
    return out, False


def _same(ctx: LoweringContext, node: Node) -> Known | None:
    # Identity(s) / Cast(s, to=int) -> s
    if node.op_type == "Cast" and node.attr("to", None) not in _INTS:
        return None
    return _input(ctx, node, 0)


def _gather(ctx: LoweringContext, node: Node) -> Known | None:
    # Gather(s, i, axis=0) -> s[i] (a 0-d index gives a 0-d result)
    data = _input(ctx, node, 0)
    idx = ctx.constant(node.inputs[1]) if len(node.inputs) > 1 else None
    if data is None or data[1] or idx is None or idx.ndim > 1 or node.attr("axis", 0) != 0:
        return None
    n = len(data[0])
    picked = []
    for i in idx.reshape(-1).tolist():
        if not -n <= i < n:
            return None
        picked.append(data[0][i])
    return picked, idx.ndim == 0


def _unsqueeze(ctx: LoweringContext, node: Node) -> Known | None:
    # Unsqueeze(scalar, [0]) -> [scalar]
    data = _input(ctx, node, 0)
    if ctx.opset < 13:
        axes = node.attr("axes", None)
    else:
        axes = ctx.constant(node.inputs[1]) if len(node.inputs) > 1 else None
    if data is None or not data[1] or axes is None:
        return None
    if [int(a) for a in np.asarray(axes).reshape(-1)] not in ([0], [-1]):
        return None
    return data[0], False


def _squeeze(ctx: LoweringContext, node: Node) -> Known | None:
    # Squeeze([s]) -> s
    data = _input(ctx, node, 0)
    if data is None or data[1] or len(data[0]) != 1:
        return None
    return data[0], True


def _concat(ctx: LoweringContext, node: Node) -> Known | None:
    # Concat(a, b, axis=0) -> a + b
    if node.attr("axis", None) not in (0, -1):
        return None
    out: list[Any] = []
    for i, v in enumerate(node.inputs):
        if v is None:
            continue
        part = _input(ctx, node, i)
        if part is None or part[1]:
            return None
        out += part[0]
    return out, False


def _slice(ctx: LoweringContext, node: Node) -> Known | None:
    # Slice(s, [a], [b]) -> s[a:b] (axis 0, step 1)
    data = _input(ctx, node, 0)
    if data is None or data[1] or ctx.opset < 10:
        return None
    bounds = [ctx.constant(node.inputs[i]) if i < len(node.inputs) else None for i in (1, 2, 3, 4)]
    starts, ends, axes, steps = bounds
    if starts is None or ends is None or starts.size != 1 or ends.size != 1:
        return None
    if axes is not None and int(axes.reshape(-1)[0]) not in (0, -1):
        return None
    if steps is not None and int(steps.reshape(-1)[0]) != 1:
        return None
    s, e = int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0])
    return data[0][slice(s, e)], False


def _arith(ctx: LoweringContext, node: Node) -> Known | None:
    # Add([a, b], [c]) -> [a + c, b + c]: ints folded, sizes emitted as Python arithmetic
    a, b = _input(ctx, node, 0), _input(ctx, node, 1)
    if a is None or b is None:
        return None
    xa, xb = a[0], b[0]
    if len(xa) != len(xb) and 1 not in (len(xa), len(xb)):
        return None
    if all(isinstance(e, int) for e in xa + xb):
        return None  # both constant: the constant folding of the optimizer's business
    n = max(len(xa), len(xb))
    fn = _ARITH[node.op_type]
    out = []
    for i in range(n):
        u = xa[i if len(xa) > 1 else 0]
        v = xb[i if len(xb) > 1 else 0]
        both = isinstance(u, int) and isinstance(v, int)
        out.append(fn(u, v) if both else ctx.call(fn, u, v))
    return out, a[1] and b[1]


_RULES: dict[str, Callable[[LoweringContext, Node], Known | None]] = {
    "Shape": _shape,
    "Identity": _same,
    "Cast": _same,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
    **{op: _arith for op in _ARITH},
}
