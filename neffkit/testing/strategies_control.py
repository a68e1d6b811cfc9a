"""Control flow and planted patterns for the graph strategies: ``If`` / ``Loop`` with drawn
bodies, and the patterns passes look for (constant copies, repeats, dead code, no-op copies,
transpose pairs, constant and shape-only subexpressions)."""

from __future__ import annotations

import numpy as np

from neffkit.ir.core import Node, Value
from neffkit.ir.tensor import np_dtype
from neffkit.ir.types import TensorType
from neffkit.testing.builder import (
    ANY,
    BOOL,
    FLOATS,
    I32,
    I64,
    NUMERIC,
    Builder,
    Generator,
    bshape,
    i64,
    numel,
)

CONTROL_OPS = ("If", "Loop")
#: Patterns planted for the passes (the ``plants`` option of ``graphs``).
PLANTS = ("dup-const", "repeat", "dead", "copy-chain", "transpose-pair", "const-expr", "shape-expr")


def gen_if(b: Builder) -> None:
    """``If`` with one or two outputs; the condition is a constant (a dead branch), a bool
    scalar in scope, or ``ReduceMax(x) > 0``."""
    kind = b.integer(0, 2)
    scalars = [v for v in b.pool if v.dtype == BOOL and v.shape == ()]
    if kind == 1 and scalars:
        cond = scalars[b.integer(0, len(scalars) - 1)]
    elif kind == 2:
        x = b.pick(NUMERIC - {I32}, 1)
        r = b.emit1("ReduceMax", [x], x.dtype, (), keepdims=0)
        zero = b.const(np.zeros((), np_dtype(x.dtype)))
        cond = b.emit1("Greater", [r, zero], BOOL, ())
    else:
        cond = b.const(np.asarray(not b.flip()))  # shrinks to True: the then branch runs
    targets = [b.pick(ANY) for _ in range(b.integer(1, 2))]
    branches = []
    for name in ("then", "else"):
        sub = b.body(b.name(name), [])
        sub.steps(0, 2)
        outs = [sub.transform(sub.typed(t.dtype, t.shape)) for t in targets]
        sub.graph.set_outputs(outs)
        branches.append(sub.graph)
    node = Node(
        "If", [cond], outputs=[Value(b.name(), TensorType(t.dtype, t.shape)) for t in targets]
    )
    node.set_attr("then_branch", branches[0])
    node.set_attr("else_branch", branches[1])
    b.graph.append(node)
    b.pool.extend(node.outputs)
    b.produced.extend(node.outputs)


def gen_loop(b: Builder) -> None:
    """``Loop`` with a constant trip count and one or two carried values. Static loops (no
    condition) may also have a scan output; bounded ones stop at ``iter < K``."""
    trips = b.integer(1, 3)
    bounded = b.flip()
    carried = [b.pick(ANY) for _ in range(b.integer(1, 2))]
    types = [(v.dtype, v.shape) for v in carried]
    sub = b.body(b.name("body"), [(I64, ()), (BOOL, ()), *types])
    it, cond_in = sub.graph.inputs[0], sub.graph.inputs[1]
    # onnxruntime 1.32 bug: when a body returns its iteration-number input itself as a scan
    # output, every row holds the last count ([3, 3, 3], not [0, 1, 2]). Only Cast(it) reads
    # the number here, so no pass (dropping an Identity, say) can turn a graph into that form.
    sub.pool.remove(it)
    sub.steps(0, 2)
    outs = []
    for v in sub.graph.inputs[2:]:
        new = sub.transform(v)
        if v.dtype in FLOATS and sub.flip():  # read the iteration number
            step = sub.emit1("Cast", [it], v.dtype, (), to=v.dtype)
            new = sub.emit1("Add", [new, step], v.dtype, v.shape)
        outs.append(new)
    scans = []
    if not bounded and sub.flip():
        scans = [sub.pick(ANY)]
    if bounded:
        limit = sub.const(np.asarray(b.integer(0, trips), np.int64))
        cond_out = sub.emit1("Less", [it, limit], BOOL, ())
        cond_init: Value | None = b.const(np.asarray(True))
    else:
        cond_out = cond_in
        cond_init = None
    sub.graph.set_outputs([cond_out, *outs, *scans])
    m = b.const(np.asarray(trips, np.int64))
    out_types = [*types, *[(s.dtype, (trips, *s.shape)) for s in scans]]
    outputs = [Value(b.name(), TensorType(dt, shape)) for dt, shape in out_types]
    node = Node("Loop", [m, cond_init, *carried], outputs=outputs)
    node.set_attr("body", sub.graph)
    b.graph.append(node)
    b.pool.extend(outputs)
    b.produced.extend(outputs)


# -- planted patterns ------------------------------------------------------------------------


def _plant_dup_const(b: Builder) -> None:
    """A second constant equal to one in scope, combined with a value (``dedup`` merges them)."""
    consts = [v for v in b.pool if v in b.known and v.dtype != BOOL]
    src = consts[b.integer(0, len(consts) - 1)] if consts else None
    if src is None:
        dt = b.dtype(NUMERIC)
        src = b.const(b.values(dt, b.shape()))
    copy = b.const(b.known[src].copy())
    other = b.partner(src.dtype, src.shape)
    op = b.choice(["Add", "Mul", "Max"])
    b.emit1(op, [copy, other], src.dtype, bshape(copy.shape, other.shape))


def _plant_repeat(b: Builder) -> None:
    """A copy of an earlier node (same op, inputs, attributes) whose result is used (CSE)."""
    nodes = [n for n in b.graph if not n.subgraphs and n.op_type != "Constant"]
    if not nodes:
        b.op("Relu")
        return
    n = nodes[b.integer(0, len(nodes) - 1)]
    outs = [Value(b.name(), o.type) for o in n.outputs]
    b.graph.append(Node(n.op_type, n.inputs, attributes=dict(n.attributes), outputs=outs))
    b.pool.extend(outs)
    b.produced.extend(outs)
    first, second = n.outputs[0], outs[0]
    op = "Or" if first.dtype == BOOL else b.choice(["Add", "Sub", "Mul"])
    out = BOOL if first.dtype == BOOL else first.dtype
    b.emit1(op, [first, second], out, first.shape)


def _plant_dead(b: Builder) -> None:
    """An op whose results nobody reads and that is never a graph output (DCE)."""
    before = len(b.produced)
    b.op(b.choice([o for o in b.opts.ops if o not in CONTROL_OPS] or ["Relu"]))
    for v in b.produced[before:]:
        b.dead.add(v)
        if v in b.pool:
            b.pool.remove(v)


def _plant_copy_chain(b: Builder) -> None:
    """One to three no-op copies: Identity, same-type Cast, same-shape Reshape / Expand,
    identity Transpose, Squeeze(Unsqueeze), full Slice, ``x * 1``, ``x + 0``."""
    v = b.pick(ANY)
    for _ in range(b.integer(1, 3)):
        v = noop_copy(b, v)


def _plant_transpose_pair(b: Builder) -> None:
    """``Transpose(Transpose(x, p), q)``: the inverse (cancels) or any other perm (fuses)."""
    x = b.pick(ANY, 2)
    r = len(x.shape)
    p = b.perm(r)
    t = b.emit1("Transpose", [x], x.dtype, [x.shape[i] for i in p], perm=p)
    q = [int(i) for i in np.argsort(p)] if not b.flip() else b.perm(r)
    b.emit1("Transpose", [t], x.dtype, [t.shape[i] for i in q], perm=q)


def _plant_const_expr(b: Builder) -> None:
    """An op on constants only, then used with a value (``fold`` computes it)."""
    dt = b.dtype(NUMERIC)
    shape = b.shape()
    c1 = b.const(b.values(dt, shape))
    c2 = b.const(b.values(dt, b.partner_shape(shape)))
    op = b.choice(["Add", "Mul", "Sub", "Max"])
    k = b.emit1(op, [c1, c2], dt, bshape(c1.shape, c2.shape))
    other = b.partner(dt, k.shape)
    b.emit1(b.choice(["Add", "Mul"]), [k, other], dt, bshape(k.shape, other.shape))


def _plant_shape_expr(b: Builder) -> None:
    """``Reshape(Reshape(x, [-1]), Shape(x))``: shape folding plus a reshape chain."""
    x = b.pick(ANY, 1)
    flat = b.emit1("Reshape", [x, b.const(np.asarray([-1], np.int64))], x.dtype, [numel(x.shape)])
    s = b.emit1("Shape", [x], I64, [len(x.shape)])
    b.known[s] = np.asarray(x.shape, np.int64)
    b.emit1("Reshape", [flat, s], x.dtype, x.shape)


PLANT_GENS: dict[str, Generator] = {
    "dup-const": _plant_dup_const,
    "repeat": _plant_repeat,
    "dead": _plant_dead,
    "copy-chain": _plant_copy_chain,
    "transpose-pair": _plant_transpose_pair,
    "const-expr": _plant_const_expr,
    "shape-expr": _plant_shape_expr,
}


def noop_copy(b: Builder, v: Value) -> Value:
    """A copy of ``v`` through an op that changes nothing (what ``simplify`` / ``dedup`` drop)."""
    r = len(v.shape)
    kinds = ["Identity", "Cast", "Reshape", "Expand"]
    if r:
        kinds += ["Transpose", "Unsqueeze", "Slice"]
    if v.dtype in NUMERIC:
        kinds += ["Mul", "Add"]
    kind = b.choice(kinds)
    if kind == "Cast":
        return b.emit1("Cast", [v], v.dtype, v.shape, to=v.dtype)
    if kind == "Reshape":
        return b.emit1("Reshape", [v, b.const(i64(v.shape))], v.dtype, v.shape)
    if kind == "Expand":
        return b.emit1("Expand", [v, b.const(i64([1] * b.integer(0, r)))], v.dtype, v.shape)
    if kind == "Transpose":
        return b.emit1("Transpose", [v], v.dtype, v.shape, perm=list(range(r)))
    if kind == "Unsqueeze":  # Squeeze(Unsqueeze(v, a), a)
        a = b.integer(0, r)
        up = b.emit1("Unsqueeze", [v, b.const(i64([a]))], v.dtype, (*v.shape[:a], 1, *v.shape[a:]))
        return b.emit1("Squeeze", [up, b.const(i64([a]))], v.dtype, v.shape)
    if kind == "Slice":
        ends = i64([b.choice([2**63 - 1, d]) for d in v.shape])
        return b.emit1("Slice", [v, b.const(i64([0] * r)), b.const(ends)], v.dtype, v.shape)
    if kind in ("Mul", "Add"):
        unit = b.const(np.asarray(1 if kind == "Mul" else 0, np_dtype(v.dtype)))
        return b.emit1(kind, [v, unit], v.dtype, v.shape)
    return b.emit1("Identity", [v], v.dtype, v.shape)
