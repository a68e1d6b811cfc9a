"""Reshape, Squeeze and Unsqueeze rules, and the shape tensors they read: chains fuse, a
Reshape to the shape it already has goes, a Squeeze undoes an Unsqueeze, and a Reshape target
assembled from ``Shape`` pieces (or a ``Gather`` of a partly static shape) becomes a constant.

Before / after (``x: float[1, T, 8]``, as the PyTorch exporter writes ``x.view(1, -1, 2, 4)``)::

    s = Shape(x)
    t = Gather<axis=0>(s, 1)
    u = Unsqueeze(t, [0])             ->    y = Reshape(x, [1, -1, 2, 4])
    c = Concat<axis=0>([1], u, [2, 4])
    y = Reshape(x, c)

``fold`` cannot do this: the gathered dim ``T`` is symbolic. Every other piece of the target is
known, so ``-1`` recovers ``T`` exactly (the known pieces multiply to a nonzero number).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as TP

from neffkit.ir.core import Node, Value
from neffkit.passes.rewrite.patterns import Absent, int_list, ints_operand, producer
from neffkit.passes.rewrite.registry import rule
from neffkit.passes.rewrite.rewriter import Rewriter

#: How far back a shape piece is traced (Reshape <- Cast <- Concat <- Unsqueeze <- Gather <- Shape)
_DEPTH = 6


#: A longer tensor of unknown values is no shape piece (and is not listed out)
_MAX_UNKNOWN = 64


_INT_LIMITS = {TP.INT64: (-(2**63), 2**63 - 1), TP.INT32: (-(2**31), 2**31 - 1)}


#: The elements of a 0-D or 1-D int tensor (None where unknown) and whether it is 0-D.
Elements = tuple[list[int | None], bool]


def elements(v: Value | None, rw: Rewriter, depth: int = _DEPTH) -> Elements | None:
    """The element values of a small 0-D / 1-D integer tensor, traced through the ops that
    build shapes; None when even the element count is unknown."""
    if v is None:
        return None
    c = rw.const(v, 1 << 12)
    if c is not None:
        if c.dtype.kind not in "iu" or c.ndim > 1:
            return None
        return [int(d) for d in c.reshape(-1)], c.ndim == 0
    p = v.producer
    got = None
    if depth > 0 and p is not None and p.domain == "" and v.index == 0:
        got = _traced(p, rw, depth - 1)
    if got is not None:
        return got
    s = rw.static_shape(v)
    if s is None or len(s) > 1 or (s and s[0] > _MAX_UNKNOWN):
        return None
    return [None] * (s[0] if s else 1), not s


def _traced(p: Node, rw: Rewriter, depth: int) -> Elements | None:
    op = p.op_type
    ins = p.inputs
    if op == "Shape" and ins and ins[0] is not None:
        xs = rw.shape(ins[0])
        if xs is None:
            return None
        r = len(xs)
        start, end = (_clamp(p.attr(k, d), r) for k, d in (("start", 0), ("end", r)))
        return [d if isinstance(d, int) else None for d in xs[start:end]], False
    if op == "Gather" and len(ins) == 2 and p.attr("axis", 0) in (0, -1):
        data = elements(ins[0], rw, depth)
        idx = rw.const(ins[1], 1 << 12)
        if data is None or data[1] or idx is None or idx.dtype.kind not in "iu" or idx.ndim > 1:
            return None
        vals, n = data[0], len(data[0])
        out = []
        for i in idx.reshape(-1):
            i = int(i) + n if i < 0 else int(i)
            if not 0 <= i < n:
                return None
            out.append(vals[i])
        return out, idx.ndim == 0
    if op in ("Unsqueeze", "Squeeze") and ins:
        inner = elements(ins[0], rw, depth)
        axes = _axes_or_absent(p, rw)
        if inner is None or len(inner[0]) != 1:
            return None
        if op == "Unsqueeze" and inner[1] and axes in ([0], [-1]):
            return inner[0], False
        if op == "Squeeze" and not inner[1] and (isinstance(axes, Absent) or axes in ([0], [-1])):
            return inner[0], True
        return None
    if op == "Cast" and ins:
        inner = elements(ins[0], rw, depth)
        lim = _INT_LIMITS.get(p.attr("to"))  # every traced element is an integer already
        if inner is None or lim is None:
            return None
        if any(d is not None and not lim[0] <= d <= lim[1] for d in inner[0]):
            return None
        return inner
    if op == "Concat" and p.attr("axis") in (0, -1) and ins:
        out = []
        for i in ins:
            got = elements(i, rw, depth)
            if got is None or got[1]:
                return None
            out.extend(got[0])
        return out, False
    return None


def _clamp(i: int, rank: int) -> int:
    i = i + rank if i < 0 else i
    return min(max(i, 0), rank)


def _axes_or_absent(node: Node, rw: Rewriter) -> list[int] | Absent | None:
    """Squeeze / Unsqueeze axes (an attribute before opset 13, an input from it); ``ABSENT``
    when not given; None when not constant."""
    return ints_operand(node, rw, "axes", 1, 13)


def _new_ints(rw: Rewriter, node: Node, suffix: str, vals: list[int]) -> Value:
    g = node.graph
    assert g is not None
    hint = (node.outputs[0].name or node.op_type) + suffix
    return rw.add_constant(g, hint, np.array(vals, np.int64))


@rule("Reshape")
def constant_reshape_target(node: Node, rw: Rewriter) -> bool:
    """Reshape(x, Concat(.., Unsqueeze(Gather(Shape(y), i)), ..)) -> Reshape(x, [.., -1, ..])"""
    if rw.opset < 5 or len(node.inputs) != 2 or node.inputs[0] is None:
        return False  # the shape is an attribute before opset 5
    s = node.inputs[1]
    if s is None or rw.const(s) is not None:
        return False
    got = elements(s, rw)
    if got is None or got[1]:
        return False
    vals = got[0]
    unknown = [i for i, d in enumerate(vals) if d is None]
    if len(unknown) > 1:
        return False
    if unknown and not _minus_one_is_exact(vals, node, rw):
        return False
    target = [-1 if d is None else d for d in vals]
    rw.set_input(node, 1, _new_ints(rw, node, "_shape", target))
    return True


def _minus_one_is_exact(vals: list[int | None], node: Node, rw: Rewriter) -> bool:
    """True when -1 in the one unknown place gives back its value: every other output dim is
    known nonzero (a 0 with allowzero=0 copies x's dim, which must be static and nonzero)."""
    allowzero = bool(node.attr("allowzero", 0))
    xs = rw.shape(node.inputs[0]) if 0 in vals else None
    for i, d in enumerate(vals):
        if d is None or d > 0:
            continue
        if d < 0 or allowzero:
            return False  # a second -1, or an explicit 0 (-1 and 0 cannot meet with allowzero)
        dim = xs[i] if xs is not None and i < len(xs) else None
        if not isinstance(dim, int) or dim <= 0:
            return False  # an empty tensor leaves -1 undetermined
    return True


@rule("Gather")
def fold_gather_of_shape(node: Node, rw: Rewriter) -> bool:
    """Gather(Shape(x), i) -> [x.shape[i]]   (that dim is static, though others of x may not be)"""
    if len(node.inputs) != 2 or producer(node.inputs[0], "Shape") is None:
        return False
    out = node.outputs[0]
    if out.is_graph_output:
        return False  # an initializer cannot take an output's name
    got = _traced(node, rw, _DEPTH)
    if got is None or any(d is None for d in got[0]):
        return False
    idx = rw.const(node.inputs[1], 1 << 12)  # constant: _traced read it
    if idx is None:
        return False
    arr = np.array(got[0], np.int64)
    arr = arr.reshape(()) if got[1] else arr.reshape(idx.shape)
    g = node.graph
    assert g is not None
    rw.replace(out, rw.add_constant(g, (out.name or "dim") + "_value", arr))
    return True


_RESHAPE_LIKE = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


@rule("Reshape")
def fuse_reshape_chain(node: Node, rw: Rewriter) -> bool:
    """Reshape(Reshape|Flatten|Squeeze|Unsqueeze(x), s) -> Reshape(x, s)

    ``s`` copies no dim: no 0.
    """
    if rw.opset < 5 or len(node.inputs) < 2:
        return False  # the shape is an attribute before opset 5
    t = node.inputs[0]
    inner = t.producer if t is not None else None
    if inner is None or inner.domain != "" or inner.op_type not in _RESHAPE_LIKE:
        return False
    x = inner.inputs[0] if inner.inputs else None
    s = int_list(rw.const(node.inputs[1]))
    if x is None or s is None:
        return False
    if 0 in s and not node.attr("allowzero", 0):
        return False  # a 0 copies a dim of the intermediate shape
    rw.set_input(node, 0, x)
    return True


@rule("Reshape")
def drop_same_shape_reshape(node: Node, rw: Rewriter) -> bool:
    """Reshape(x, s) -> x   (s resolves to x's own shape)"""
    if rw.opset < 5 or len(node.inputs) < 2 or node.inputs[0] is None:
        return False
    x = node.inputs[0]
    s = int_list(rw.const(node.inputs[1]))
    xs = rw.shape(x)
    if s is None or xs is None or len(s) != len(xs):
        return False
    allowzero = bool(node.attr("allowzero", 0))
    inferred = -1
    for i, (d, want) in enumerate(zip(xs, s)):
        if want == 0 and not allowzero:
            continue  # copies x's dim
        if want == -1 and inferred < 0:
            inferred = i
            continue
        if not isinstance(d, int) or d != want:
            return False
    if inferred >= 0:
        # -1 takes what is left of the element count: x's own dim, when the rest is nonzero
        rest = [d for i, d in enumerate(xs) if i != inferred]
        if not all(isinstance(d, int) and d > 0 for d in rest):
            return False
    rw.replace(node.outputs[0], x)
    return True


def _axes(node: Node, rw: Rewriter) -> list[int] | None:
    """Squeeze/Unsqueeze axes: attribute before opset 13, input 1 from it; None if unknown."""
    axes = ints_operand(node, rw, "axes", 1, 13)
    return None if isinstance(axes, Absent) else axes


@rule("Squeeze", "Unsqueeze")
def cancel_squeeze_unsqueeze(node: Node, rw: Rewriter) -> bool:
    """Squeeze(Unsqueeze(x, a), a) -> x;  Unsqueeze(Squeeze(x, a), a) -> x"""
    other = "Unsqueeze" if node.op_type == "Squeeze" else "Squeeze"
    inner = producer(node.inputs[0], other)
    if inner is None or inner.inputs[0] is None:
        return False
    x = inner.inputs[0]
    a_out = _axes(node, rw)
    a_in = _axes(inner, rw)
    if not a_out or not a_in or len(set(a_out)) != len(a_out) or len(a_in) != len(a_out):
        return False
    if sorted(a_out) != sorted(a_in):
        # Both lists index the same rank R: the Unsqueeze's output = the Squeeze's input.
        r = rw.rank(x)
        if r is None:
            return False
        if node.op_type == "Squeeze":
            r += len(a_in)
        if r <= 0 or not all(-r <= a < r for a in a_out + a_in):
            return False
        if sorted(a % r for a in a_out) != sorted(a % r for a in a_in):
            return False
    rw.replace(node.outputs[0], x)
    return True


def _normalized(axes: list[int], rank: int | None) -> list[int] | None:
    """``axes`` in [0, rank), without repeats; negative axes need the rank."""
    if any(a < 0 for a in axes):
        if rank is None:
            return None
        axes = [a + rank if a < 0 else a for a in axes]
    if any(a < 0 or (rank is not None and a >= rank) for a in axes):
        return None
    return axes if len(set(axes)) == len(axes) else None


def _nth_not_in(taken: set[int], count: int) -> list[int]:
    """The first ``count`` non-negative ints not in ``taken``, in order."""
    out: list[int] = []
    p = 0
    while len(out) < count:
        if p not in taken:
            out.append(p)
        p += 1
    return out


def _set_axes(node: Node, rw: Rewriter, axes: list[int]) -> None:
    if rw.opset < 13:
        node.set_attr("axes", axes)
        rw.touched.append(node)
    elif len(node.inputs) > 1:
        rw.set_input(node, 1, _new_ints(rw, node, "_axes", axes))
    else:
        node.append_input(_new_ints(rw, node, "_axes", axes))
        rw.touched.append(node)


@rule("Unsqueeze")
def fuse_unsqueezes(node: Node, rw: Rewriter) -> bool:
    """Unsqueeze(Unsqueeze(x, a1), a2) -> Unsqueeze(x, a)   (a: where both sets of new dims land)"""
    inner = producer(node.inputs[0], "Unsqueeze")
    if inner is None or inner.inputs[0] is None or not rw.only_user(node.inputs[0], node):
        return False
    a1, a2 = _axes_or_absent(inner, rw), _axes_or_absent(node, rw)
    if not isinstance(a1, list) or not isinstance(a2, list) or not a1 or not a2:
        return False
    x = inner.inputs[0]
    r = rw.rank(x)
    r1 = None if r is None else r + len(a1)
    n1 = _normalized(a1, r1)
    n2 = _normalized(a2, None if r1 is None else r1 + len(a2))
    if n1 is None or n2 is None:
        return False
    # the intermediate's dim j lands on the j-th output position that a2 does not take
    kept = _nth_not_in(set(n2), max(n1) + 1)
    axes = sorted(set(n2) | {kept[j] for j in n1})
    rw.set_input(node, 0, x)
    _set_axes(node, rw, axes)
    return True


@rule("Squeeze")
def fuse_squeezes(node: Node, rw: Rewriter) -> bool:
    """Squeeze(Squeeze(x, a1), a2) -> Squeeze(x, a)   (a2 renumbered to x's dims)"""
    inner = producer(node.inputs[0], "Squeeze")
    if inner is None or inner.inputs[0] is None or not rw.only_user(node.inputs[0], node):
        return False
    x = inner.inputs[0]
    a1, a2 = _axes_or_absent(inner, rw), _axes_or_absent(node, rw)
    if not isinstance(a1, list) or a2 is None:
        return False  # after a Squeeze of every 1, the outer Squeeze has nothing left to take
    xs = rw.shape(x)
    r = None if xs is None else len(xs)
    n1 = _normalized(a1, r)
    if n1 is None or not n1:
        return False
    if isinstance(a2, Absent):  # every dim of 1 left after the inner Squeeze
        if xs is None or not all(isinstance(d, int) for d in xs):
            return False  # which dims are 1 is known only for a static shape
        a2 = [j for j, p in enumerate(_nth_not_in(set(n1), len(xs) - len(n1))) if xs[p] == 1]
    n2 = _normalized(a2, None if r is None else r - len(n1))
    if n2 is None or not n2:
        return False
    kept = _nth_not_in(set(n1), max(n2) + 1)
    axes = sorted(set(n1) | {kept[j] for j in n2})
    rw.set_input(node, 0, x)
    _set_axes(node, rw, axes)
    return True
