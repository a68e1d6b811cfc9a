"""Rules that drop nodes which only copy an input: Identity, inference Dropout, a Concat of one
input, Slice / Pad / Expand / Tile that move no data, and a Where whose condition is a constant.
"""

from __future__ import annotations

import numpy as np

from neffkit.ir.core import Node
from neffkit.passes.rewrite.patterns import ABSENT, Absent, int_list, is_used, keeps_shape
from neffkit.passes.rewrite.registry import rule
from neffkit.passes.rewrite.rewriter import Rewriter

_MAX_CONDITION_BYTES = 1 << 20  # a Where condition bigger than this is not read in


@rule("Identity")
def drop_identity(node: Node, rw: Rewriter) -> bool:
    """Identity(x) -> x"""
    x = node.inputs[0] if node.inputs else None
    out = node.outputs[0]
    if x is None or not rw.can_replace(out, x):
        return False  # a graph output that needs its own node stays an Identity
    rw.replace(out, x)
    return True


@rule("Dropout")
def drop_dropout(node: Node, rw: Rewriter) -> bool:
    """Dropout(x) -> x   (inference: is_test / training_mode false / ratio 0; mask unread)"""
    x = node.inputs[0] if node.inputs else None
    out = node.outputs[0]
    if x is None or not is_used(out) or any(is_used(m) for m in node.outputs[1:]):
        return False
    if not _dropout_is_identity(node, rw):
        return False
    rw.replace(out, x)
    return True


def _dropout_is_identity(node: Node, rw: Rewriter) -> bool:
    if rw.opset < 7:
        return node.attr("is_test", 0) != 0 or node.attr("ratio", 0.5) == 0
    if rw.opset < 12:
        return True  # opsets 7-11 have no training flag: inference copies the input
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is None:
        return True
    flag = rw.const(training)
    if flag is not None and flag.size == 1 and not bool(flag.reshape(-1)[0]):
        return True
    ratio = rw.const(node.inputs[1]) if len(node.inputs) > 1 else None
    return ratio is not None and ratio.size == 1 and float(ratio.reshape(-1)[0]) == 0.0


@rule("Concat")
def drop_single_concat(node: Node, rw: Rewriter) -> bool:
    """Concat(x) -> x"""
    if len(node.inputs) != 1 or node.inputs[0] is None:
        return False
    rw.replace(node.outputs[0], node.inputs[0])
    return True


@rule("Slice")
def drop_noop_slice(node: Node, rw: Rewriter) -> bool:
    """Slice(x, starts=0, ends>=dim, steps=1) -> x"""
    x = node.inputs[0] if node.inputs else None
    xs = rw.shape(x)
    if x is None or xs is None:
        return False
    axes: list[int] | None | Absent
    steps: list[int] | None | Absent
    if rw.opset < 10:
        starts, ends = _attr_ints(node, "starts"), _attr_ints(node, "ends")
        axes = ABSENT if node.attr("axes") is None else _attr_ints(node, "axes")
        steps = ABSENT
    else:
        ins = list(node.inputs) + [None] * (5 - len(node.inputs))
        starts, ends = int_list(rw.const(ins[1])), int_list(rw.const(ins[2]))
        axes = ABSENT if ins[3] is None else int_list(rw.const(ins[3]))
        steps = ABSENT if ins[4] is None else int_list(rw.const(ins[4]))
    if starts is None or ends is None or axes is None or steps is None:
        return False
    axes = list(range(len(starts))) if isinstance(axes, Absent) else axes
    steps = [1] * len(starts) if isinstance(steps, Absent) else steps
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        return False
    rank = len(xs)
    seen: set[int] = set()
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = a + rank if a < 0 else a
        if not 0 <= a < rank or a in seen or st != 1:
            return False
        seen.add(a)
        d = xs[a]
        if not isinstance(d, int):
            return False
        s = min(max(s + d if s < 0 else s, 0), d)
        e = min(max(e + d if e < 0 else e, 0), d)
        if s != 0 or e != d:
            return False
    rw.replace(node.outputs[0], x)
    return True


def _attr_ints(node: Node, name: str) -> list[int] | None:
    a = node.attr(name)
    return None if a is None else [int(x) for x in a]


@rule("Pad")
def drop_noop_pad(node: Node, rw: Rewriter) -> bool:
    """Pad(x, pads=0) -> x"""
    x = node.inputs[0] if node.inputs else None
    if rw.opset < 11:
        pads = node.attr("pads", node.attr("paddings"))  # "paddings" in opset 1
        pads = None if pads is None else [int(p) for p in pads]
    else:
        pads = int_list(rw.const(node.inputs[1])) if len(node.inputs) > 1 else None
    if x is None or pads is None or any(p != 0 for p in pads):
        return False
    rw.replace(node.outputs[0], x)
    return True


@rule("Expand")
def drop_noop_expand(node: Node, rw: Rewriter) -> bool:
    """Expand(x, shape) -> x   (broadcasting x to shape leaves x's shape)"""
    if rw.opset < 8 or len(node.inputs) != 2 or node.inputs[0] is None:
        return False
    target = int_list(rw.const(node.inputs[1]))
    if target is None or not keeps_shape(rw, node.inputs[0], tuple(target)):
        return False
    rw.replace(node.outputs[0], node.inputs[0])
    return True


@rule("Tile")
def drop_noop_tile(node: Node, rw: Rewriter) -> bool:
    """Tile(x, repeats=1) -> x"""
    if rw.opset < 6 or len(node.inputs) != 2 or node.inputs[0] is None:
        return False  # opset 1 Tile takes (input, tiles, axis)
    repeats = int_list(rw.const(node.inputs[1]))
    if repeats is None or any(r != 1 for r in repeats):
        return False
    rw.replace(node.outputs[0], node.inputs[0])
    return True


@rule("Where")
def select_constant_where(node: Node, rw: Rewriter) -> bool:
    """Where(c, a, b) -> b when c is all false; -> a when c is all true

    ``a`` / ``b`` has the result's shape.
    """
    if len(node.inputs) != 3 or any(v is None for v in node.inputs):
        return False
    c = rw.const(node.inputs[0], _MAX_CONDITION_BYTES)
    if c is None or c.dtype != np.bool_ or c.size == 0:
        return False
    if np.all(c):
        keep, other = node.inputs[1], node.inputs[2]
    elif not np.any(c):
        keep, other = node.inputs[2], node.inputs[1]
    else:
        return False
    if keep is None or other is None:
        return False
    other_shape = rw.static_shape(other)
    if other_shape is None or not rw.can_replace(node.outputs[0], keep):
        return False
    if not keeps_shape(rw, keep, tuple(c.shape)) or not keeps_shape(rw, keep, other_shape):
        return False
    rw.replace(node.outputs[0], keep)
    return True
