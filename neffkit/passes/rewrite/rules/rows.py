"""The rule that runs a region of row-wise nodes on 2-D rows, so that its MatMul + Add pairs
become Gemm.

Before / after (``x: float[1, T, 8]``, ``W: [8, 16]``, ``b: [16]``)::

    m = MatMul(x, W)                        x2 = Reshape(x, [-1, 8])
    a = Add(m, b)                     ->    g = Gemm(x2, W, b)         (fuse_matmul_add)
    h = LayerNormalization(a, s, t)         h = LayerNormalization(g, s, t)
    y = Reshape(h, [1, T, 4, 4])            y = Reshape(h, [1, T, 4, 4])

A row-wise node computes each row (the last dim) of its output from the same row of its
inputs: elementwise ops whose other operands broadcast along rows, LayerNormalization and
Softmax over the last axis, MatMul by a 2-D constant. It gives the same rows on a tensor
``L + [k]`` and on its 2-D view ``[prod(L), k]``. The rule grows the connected region of such
nodes whose values all have the leading dims ``L`` around a MatMul, and runs the whole region
on the 2-D view when that saves nodes: each MatMul + bias Add in it becomes one Gemm, each
value entering it needs a Reshape to ``[-1, k]`` (free when it comes from a Reshape-like node
that only the region reads: the two fuse) and each value leaving it a Reshape back to
``L + [k]`` (free when only Reshapes read it: they fuse with it).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from onnx import TensorProto as TP

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.types import Dim, Shape, TensorType
from neffkit.passes.rewrite.patterns import int_list
from neffkit.passes.rewrite.registry import rule
from neffkit.passes.rewrite.rewriter import Rewriter

_UNARY = frozenset(
    "Relu Neg Abs Exp Log Sqrt Sigmoid Tanh Erf Cast Reciprocal Sin Cos Floor Ceil Round Sign "
    "Softplus Softsign Gelu LeakyRelu Elu Selu Celu HardSigmoid HardSwish Mish Not IsNaN IsInf "
    "ThresholdedRelu".split()
)


#: Elementwise ops with several operands (multidirectional broadcasting; PRelu's slope and
#: Clip's bounds broadcast to the first operand).
_NARY = frozenset(
    "Add Sub Mul Div Pow Max Min Sum Mean Equal Less Greater LessOrEqual GreaterOrEqual And Or "
    "Xor Mod Where PRelu Clip".split()
)


_LAST_AXIS = frozenset({"Softmax", "LogSoftmax", "Hardmax"})


_RESHAPE_LIKE = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})


_GEMM_DTYPES = {TP.FLOAT, TP.FLOAT16, TP.DOUBLE}


#: A constant read to be reshaped is at most this big (a bias, a position table).
_MAX_CONST_BYTES = 64 << 20


#: Elements of a constant that may be copied into the row shape though others read it too.
_SMALL_COPY = 256

T = TypeVar("T")


class _Region:
    """A candidate region: its nodes (in discovery order) and how its values map to rows.

    Two layouts: when the leading dims are 1 but for one axis ``axis`` (``[1, T]``), a value
    ``L + [k]`` with every other leading dim 1 has ``L[axis]`` rows, whatever that dim is (and
    values may broadcast along it, as rows do in 2-D); otherwise every value must have the
    static leading dims ``lead`` exactly.
    """

    def __init__(self, graph: Graph, lead: tuple[Dim, ...]) -> None:
        self.graph = graph
        self.rank = len(lead) + 1
        others = [i for i, d in enumerate(lead) if d != 1]
        self.axis: int | None = None
        self.lead: tuple[Dim, ...] | None = None
        self.lead_rows = 0
        if len(others) <= 1:
            self.axis = others[0] if others else len(lead) - 1
        else:
            self.lead = lead  # all static (_lead_ok)
            self.lead_rows = int(np.prod([d for d in lead if isinstance(d, int)]))
        self.nodes: dict[Node, None] = {}
        self.seen: dict[Node, bool] = {}

    def rows(self, s: Shape) -> Dim | _Bad:
        """The row count of the 2-D view of a value of shape ``s``, or ``BAD``."""
        if s is None or len(s) != self.rank or not isinstance(s[-1], int) or s[-1] <= 0:
            return BAD
        if self.lead is not None:
            return self.lead_rows if tuple(s[:-1]) == self.lead else BAD
        axis = self.axis
        if axis is None:
            return BAD
        for i, d in enumerate(s[:-1]):
            if i != axis and d != 1:
                return BAD
        d = s[axis]
        return BAD if isinstance(d, int) and d <= 0 else d

    def view(self, s: Shape) -> tuple[Dim, int]:
        """``(rows, k)``: the 2-D view of a value the region admitted (its shape fits)."""
        rows = self.rows(s)
        assert s is not None and isinstance(s[-1], int) and not isinstance(rows, _Bad)
        return rows, s[-1]

    def target(self, s: tuple[Dim, ...]) -> list[int]:
        """The Reshape target back from rows to shape ``s`` (its one non-static dim -1)."""
        return [int(d) if isinstance(d, int) else -1 for d in s]


class _Bad:
    """Marks a value that does not fit the region's rows."""


BAD = _Bad()


def _lead_ok(lead: tuple[Dim, ...]) -> bool:
    """Leading dims a region can start from: all 1 but one axis, or all static (a symbol
    names no size that other values provably share)."""
    if sum(d != 1 for d in lead) <= 1:
        return True
    return all(isinstance(d, int) and d > 0 for d in lead)


@rule("MatMul")
def flatten_row_region(node: Node, rw: Rewriter) -> bool:
    """Rows of MatMul(x, W), Add(.., b), LayerNormalization... on x[L, k] -> the same on [-1, k]"""
    if rw.opset < 7 or len(node.inputs) != 2 or node.graph is None:
        return False
    rejected: set[Node] = rw.memo.setdefault("flatten_row_region", set())
    if node in rejected:
        return False
    s = rw.shape(node.outputs[0])
    if s is None or len(s) < 3 or not _lead_ok(tuple(s[:-1])):
        return False
    region = _Region(node.graph, tuple(s[:-1]))
    if not _eligible(node, region, rw):
        return False
    _grow(node, region, rw)
    plan = _plan(region, rw)
    if plan is None:
        rejected.update(n for n in region.nodes if n.op_type == "MatMul")
        return False
    _convert(region, plan, rw)
    return True


def _full(rw: Rewriter, v: Value, region: _Region) -> bool:
    """True when ``v`` has a 2-D view in the region: shape ``L + [k]``, ``k`` static."""
    return not isinstance(region.rows(rw.shape(v)), _Bad)


def _const_shape(rw: Rewriter, v: Value) -> tuple[int, ...] | None:
    """The shape of a constant operand (not read in), None when ``v`` is no constant."""
    p = v.producer
    if p is None:
        if v.const is None or rw.is_overridable(v):
            return None
        return tuple(int(d) for d in v.const.shape)
    if p.op_type != "Constant" or p.domain != "":
        return None
    arr = rw.const(v, _MAX_CONST_BYTES)
    return None if arr is None else tuple(arr.shape)


def _row_const_shape(cs: tuple[int, ...], region: _Region) -> tuple[int, ...] | None:
    """The shape a constant operand takes in the 2-D view, None when it does not broadcast
    along rows (its leading dims must all be 1, or be ``L`` itself)."""
    if len(cs) > region.rank:
        return None
    padded = (1,) * (region.rank - len(cs)) + cs
    if all(d == 1 for d in padded[:-1]):
        return cs if len(cs) <= 2 else (padded[-1],)
    rows = region.rows(padded)
    if not isinstance(rows, int):
        return None
    return (rows, padded[-1])


def _operand_ok(rw: Rewriter, v: Value | None, region: _Region) -> bool:
    """An operand of an elementwise node: absent, a row-broadcast constant, a non-constant of
    rank <= 1 (it broadcasts the same way on the view), or a full ``L + [k]`` value."""
    if v is None:
        return True
    cs = _const_shape(rw, v)
    if cs is not None:
        return _row_const_shape(cs, region) is not None
    r = rw.rank(v)
    if r is not None and r <= 1:
        return True
    return _full(rw, v, region) and _dtype(rw, v) is not None


_BOOL_OUT = frozenset(
    "Equal Less Greater LessOrEqual GreaterOrEqual Not And Or Xor IsNaN IsInf".split()
)


def _dtype(rw: Rewriter, v: Value | None) -> int | None:
    """``v``'s element type: declared, or traced back through row-wise ops that keep it."""
    for _ in range(16):
        if v is None:
            return None
        dt = rw.dtype(v)
        p = v.producer
        if dt is not None or p is None or p.domain != "" or not p.inputs:
            return dt
        if p.op_type in _BOOL_OUT:
            return TP.BOOL
        if p.op_type == "Where":
            v = p.inputs[1]
        elif p.op_type in _UNARY or p.op_type in _NARY or p.op_type in _LAST_AXIS:
            v = p.inputs[0]
        elif p.op_type in ("MatMul", "LayerNormalization", "Gemm", "Reshape"):
            v = p.inputs[0]
        else:
            return None
    return None


def _eligible(node: Node, region: _Region, rw: Rewriter) -> bool:
    """True when ``node`` is row-wise over the region's leading dims (cached per region)."""
    hit = region.seen.get(node)
    if hit is None:
        hit = node.graph is region.graph and _row_wise(node, region, rw)
        region.seen[node] = hit
    return hit


def _row_wise(node: Node, region: _Region, rw: Rewriter) -> bool:
    if node.domain != "" or node.subgraphs or not node.outputs:
        return False
    out = node.outputs[0]
    if any(v.num_uses or v.is_graph_output for v in node.outputs[1:]):
        return False
    if not _full(rw, out, region) or _dtype(rw, out) is None:
        return False
    op = node.op_type
    ins = node.inputs
    if not ins or ins[0] is None:
        return False
    if op in _UNARY:
        return len(node.outputs) == 1 and _full(rw, ins[0], region)
    if op in _NARY:
        return len(node.outputs) == 1 and all(_operand_ok(rw, v, region) for v in ins)
    if op == "MatMul":
        w = ins[1] if len(ins) == 2 else None
        cs = None if w is None else _const_shape(rw, w)
        return cs is not None and len(cs) == 2 and _full(rw, ins[0], region)
    axis = _axis(node, rw)
    if axis is None or axis % region.rank != region.rank - 1:
        return False
    if op == "LayerNormalization":
        return _full(rw, ins[0], region) and all(_operand_ok(rw, v, region) for v in ins[1:])
    if op in _LAST_AXIS:
        return len(node.outputs) == 1 and _full(rw, ins[0], region)
    return False


def _axis(node: Node, rw: Rewriter) -> int | None:
    op = node.op_type
    if op == "LayerNormalization":
        return int(node.attr("axis", -1))
    if op in _LAST_AXIS:
        return int(node.attr("axis", -1 if rw.opset >= 13 else 1))
    return None


def _grow(start: Node, region: _Region, rw: Rewriter) -> None:
    """The connected row-wise nodes around ``start`` (each node and value visited once)."""
    region.nodes[start] = None
    stack = [start]
    while stack:
        n = stack.pop()
        for v in n.inputs:
            p = v.producer if v is not None else None
            if p is not None and p not in region.nodes and _eligible(p, region, rw):
                region.nodes[p] = None
                stack.append(p)
        for v in n.outputs:
            for u in v.users:
                if u not in region.nodes and _eligible(u, region, rw):
                    region.nodes[u] = None
                    stack.append(u)


class _Plan:
    """What the conversion adds: entry Reshapes for ``entries``, exit Reshapes for ``exits``."""

    def __init__(self) -> None:
        self.entries: dict[Value, None] = {}
        self.exits: dict[Value, list[tuple[Node, int]]] = {}


def _plan(region: _Region, rw: Rewriter) -> _Plan | None:
    """The entries and exits when the converted region has fewer nodes (or as many, with
    MatMul + Add pairs turned into Gemm); None when it does not pay."""
    plan = _Plan()
    nodes = region.nodes
    cost = 0
    for n in nodes:
        for i, v in enumerate(n.inputs):
            if v is None or v in plan.entries or (v.producer is not None and v.producer in nodes):
                continue
            cs = _const_shape(rw, v)
            if cs is not None and not (n.op_type == "MatMul" and i == 1):
                if _copied_const(v, cs, region):
                    return None  # a copy in the row shape would grow the constants
                continue
            if cs is None and rw.rank(v) == region.rank:
                plan.entries[v] = None
                free = _made_entry(v, region, rw) is not None or _free_entry(v, nodes, rw)
                cost += 0 if free else 1
        for v in n.outputs[:1]:
            outside = [(u, i) for u, i in v.uses if u not in nodes]
            if v.is_graph_output and v not in region.graph.outputs:
                return None  # an output of another graph (a branch returning it): left alone
            if outside or v.is_graph_output:
                plan.exits[v] = outside
                cost += 0 if not v.is_graph_output and _free_exit(outside, rw) else 1
    gains = sum(1 for n in nodes if n.op_type == "MatMul" and _becomes_gemm(n, region, rw))
    if gains == 0 or gains < cost:
        return None
    return plan


def _copied_const(v: Value, cs: tuple[int, ...], region: _Region) -> bool:
    """A constant the region reads in another shape, that other nodes read too, and that is
    not tiny: its copy in the row shape would add bytes."""
    want = _row_const_shape(cs, region)
    if want is None or want == cs or int(np.prod(cs)) <= _SMALL_COPY:
        return False
    return v.is_graph_output or any(u not in region.nodes for u in v.users)


def _made_entry(v: Value, region: _Region, rw: Rewriter) -> Value | None:
    """The Reshape of ``v`` to rows that an earlier region made (right after ``v`` is made,
    so before every reader of ``v``), if it is still there."""
    e = rw.memo.get("flatten_row_region_entries", {}).get(v)
    if e is None or e.graph is not region.graph or e.producer is None:
        return None
    p = e.producer
    if p.graph is not region.graph or p.inputs[0] is not v:
        return None
    return e


def _free_entry(v: Value, nodes: dict[Node, None], rw: Rewriter) -> bool:
    """The Reshape to rows fuses with ``v``'s Reshape-like producer, which then dies."""
    p = v.producer
    if p is None or p.domain != "" or p.op_type not in _RESHAPE_LIKE or rw.opset < 5:
        return False
    return not v.is_graph_output and all(u in nodes for u in v.users)


def _free_exit(uses: list[tuple[Node, int]], rw: Rewriter) -> bool:
    """Only Reshapes that copy no dim read the value: the Reshape back fuses into them."""
    for u, i in uses:
        if u.op_type != "Reshape" or u.domain != "" or i != 0 or len(u.inputs) != 2:
            return False
        s = int_list(rw.const(u.inputs[1]))
        if s is None or (0 in s and not u.attr("allowzero", 0)):
            return False
    return True


def _becomes_gemm(mm: Node, region: _Region, rw: Rewriter) -> bool:
    """``fuse_matmul_add`` will turn this MatMul and the bias Add that reads it into a Gemm."""
    out = mm.outputs[0]
    if out.is_graph_output or out.num_uses != 1:
        return False
    add, i = out.uses[0]
    if add.op_type != "Add" or add not in region.nodes or len(add.inputs) != 2:
        return False
    bias = add.inputs[1 - i]
    w = mm.inputs[1]
    if w is None:
        return False
    bs = None if bias is None else _const_shape(rw, bias)
    ws = _const_shape(rw, w)
    if bs is None or ws is None:
        return False
    rs = _row_const_shape(bs, region)
    if rs is None or len(rs) > 2 or (len(rs) == 2 and rs[0] != 1):
        return False
    if rs and rs[-1] not in (1, ws[1]):
        return False
    dt = rw.dtype(w)
    types = _GEMM_DTYPES | ({TP.BFLOAT16} if rw.opset >= 13 else set())
    return dt in types and rw.dtype(bias) == dt


def _convert(region: _Region, plan: _Plan, rw: Rewriter) -> None:
    g = region.graph
    nodes = region.nodes
    old_types = {n.outputs[0]: n.outputs[0].type for n in nodes}
    # every value of the region has a known shape and dtype (_row_wise checked them)
    old_shapes = {n.outputs[0]: _known(rw.shape(n.outputs[0])) for n in nodes}
    dtypes = {n.outputs[0]: _known(_dtype(rw, n.outputs[0])) for n in nodes}
    entries: dict[Value, Value] = {}
    for n in nodes:
        for i, v in enumerate(n.inputs):
            if v is None or (v.producer is not None and v.producer in nodes):
                continue
            if n.op_type == "MatMul" and i == 1:
                continue  # the 2-D weight stays as it is
            if v in plan.entries:
                e = entries.get(v) or _made_entry(v, region, rw)
                if e is None:
                    e = _entry(v, region, rw)
                    rw.memo.setdefault("flatten_row_region_entries", {})[v] = e
                entries[v] = e
                rw.set_input(n, i, e)
                continue
            cs = _const_shape(rw, v)
            if cs is not None:
                want = _row_const_shape(cs, region)
                if want is not None and want != cs:
                    rw.set_input(n, i, _reshaped_const(v, want, g, rw))
        if n.op_type in _LAST_AXIS or n.op_type == "LayerNormalization":
            n.set_attr("axis", 1 if n.op_type in _LAST_AXIS and rw.opset < 13 else -1)
        out = n.outputs[0]
        rw.forget_shape(out)
        out.type = TensorType(dtypes[out], region.view(old_shapes[out]))
        rw.touched.append(n)
    for v, uses in plan.exits.items():
        _exit(v, uses, old_types[v], old_shapes[v], dtypes[v], region, rw)


def _entry(v: Value, region: _Region, rw: Rewriter) -> Value:
    """``Reshape(v, [-1, k])``, placed right after ``v`` is made."""
    g = region.graph
    rows, k = region.view(rw.shape(v))
    r = Node("Reshape", [v, _ints(g, [-1, k], rw)])
    r.outputs[0].name = (v.name or "x") + "_rows"
    dt = _dtype(rw, v)
    r.outputs[0].type = None if dt is None else TensorType(dt, (rows, k))
    p = v.producer
    if p is not None and p.graph is g:
        rw.insert_after(p, r)
    else:
        rw.insert_before(next(iter(g)), r)
    return r.outputs[0]


def _exit(
    v: Value,
    uses: list[tuple[Node, int]],
    old_type: object,
    shape: tuple[Dim, ...],
    dtype: int,
    region: _Region,
    rw: Rewriter,
) -> None:
    """``Reshape(v, L + [k])`` for the readers outside the region (and the graph output)."""
    g = region.graph
    target = region.target(shape)
    name = v.name or "y"
    r = Node("Reshape", [v, _ints(g, target, rw)])
    out = r.outputs[0]
    out.name = name + "_unrows"
    out.type = old_type if isinstance(old_type, TensorType) else TensorType(dtype, shape)
    assert v.producer is not None
    rw.insert_after(v.producer, r)
    for u, i in uses:
        rw.set_input(u, i, out)
    if v.is_graph_output:
        g.replace_output(v, out)
        v.name, out.name = name + "_rows", name


def _known(x: T | None) -> T:
    """``x``, which the region's checks made sure is known."""
    assert x is not None
    return x


def _ints(g: Graph, vals: list[int], rw: Rewriter) -> Value:
    """A shared int64 initializer for a Reshape target made by this rule."""
    cache: dict = rw.memo.setdefault("flatten_row_region_targets", {})
    key = (g, tuple(vals))
    hit = cache.get(key)
    if hit is None or hit.graph is not g:
        hit = cache[key] = rw.add_constant(g, "rows_shape", np.array(vals, np.int64))
    return hit


def _reshaped_const(v: Value, shape: tuple[int, ...], g: Graph, rw: Rewriter) -> Value:
    """``v``'s constant with the shape it takes in the 2-D view (one copy per constant)."""
    cache: dict = rw.memo.setdefault("flatten_row_region_consts", {})
    key = (v, shape)
    hit = cache.get(key)
    if hit is None or hit.graph is not g:
        arr = rw.const(v)
        assert arr is not None
        hit = cache[key] = rw.add_constant(g, (v.name or "c") + "_rows", arr.reshape(shape))
    return hit
