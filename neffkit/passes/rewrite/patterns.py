"""Pattern helpers for rewrite rules: match a producer, read constant operands (attributes
before an opset, inputs from it), check that broadcasting keeps a shape, swap a node's
constant operand for a new one."""

from __future__ import annotations

import numpy as np

from neffkit.ir.core import Node, Value
from neffkit.passes import shapes
from neffkit.passes.rewrite.rewriter import Rewriter


def producer(v: Value | None, op_type: str) -> Node | None:
    """The ONNX-domain node of type ``op_type`` that produces ``v``, if that is what does."""
    if v is None or v.producer is None:
        return None
    p = v.producer
    return p if p.op_type == op_type and p.domain == "" else None


def is_used(v: Value) -> bool:
    """True when something reads ``v``: a node, or the graph as an output."""
    return v.num_uses > 0 or v.is_graph_output


def int_list(arr: np.ndarray | None) -> list[int] | None:
    """The values of an integer constant as a flat list of Python ints."""
    if arr is None or arr.dtype.kind not in "iu":
        return None
    return [int(x) for x in arr.reshape(-1)]


class Absent:
    """Marks an optional operand (attribute or input) that the node does not give."""


ABSENT = Absent()


def ints_operand(
    node: Node, rw: Rewriter, attr: str, index: int, since: int
) -> list[int] | None | Absent:
    """An int-list operand that is attribute ``attr`` before opset ``since`` and input
    ``index`` from it on: its values, ``ABSENT`` when not given, None when not constant."""
    if rw.opset < since:
        a = node.attributes.get(attr)
        return ABSENT if a is None else [int(x) for x in a.value]
    if index >= len(node.inputs) or node.inputs[index] is None:
        return ABSENT
    return int_list(rw.const(node.inputs[index]))


def keeps_shape(rw: Rewriter, x: Value, other: tuple[int, ...]) -> bool:
    """True when broadcasting ``x`` against a tensor of shape ``other`` leaves x's shape."""
    if len(other) == 0:
        return True
    xs = rw.shape(x)
    return xs is not None and shapes.keeps_shape(xs, other)


FOLD_DTYPES = (np.float16, np.float32, np.float64)


def weights(rw: Rewriter, v: Value | None, ndim: int | None = None) -> np.ndarray | None:
    """``v``'s constant when it is a float tensor that folding may rewrite (of ``ndim`` dims
    when given, at most ``max_constant_bytes``)."""
    w = rw.const(v)
    if w is None or w.dtype.type not in FOLD_DTYPES or w.nbytes > rw.ctx.max_constant_bytes:
        return None
    return w if ndim is None or w.ndim == ndim else None


def set_or_append(rw: Rewriter, node: Node, index: int, v: Value) -> None:
    """Sets input ``index`` of ``node`` to ``v``, appending it when the node has fewer."""
    if index < len(node.inputs):
        rw.set_input(node, index, v)
    else:
        node.append_input(v)
        rw.touched.append(node)


def rebind(rw: Rewriter, node: Node, index: int, array: np.ndarray, suffix: str) -> None:
    """Gives ``node`` a new constant input ``index`` (never writes to a shared tensor)."""
    g = node.graph
    assert g is not None
    old = node.inputs[index] if index < len(node.inputs) else None
    hint = (old.name if old is not None else node.outputs[0].name or node.op_type) + suffix
    set_or_append(rw, node, index, rw.add_constant(g, hint, array))
