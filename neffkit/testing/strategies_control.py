"""Control flow and planted patterns for the graph strategies: ``If`` / ``Loop`` with drawn
bodies (loops with the decoder-like options of :data:`LOOP_FEATURES`), and the patterns passes
look for (constant copies, repeats, dead code, no-op copies, transpose pairs, constant and
shape-only subexpressions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neffkit.ir.core import Node, Value
from neffkit.ir.tensor import np_dtype
from neffkit.ir.types import Dim, TensorType
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
    static,
)

CONTROL_OPS = ("If", "Loop")
#: Patterns planted for the passes (the ``plants`` option of ``graphs``).
PLANTS = ("dup-const", "repeat", "dead", "copy-chain", "transpose-pair", "const-expr", "shape-expr")


def gen_if(b: Builder, inner: Generator | None = None) -> None:
    """``If`` with one or two outputs; the condition is a constant (a dead branch), a bool
    scalar in scope, or ``ReduceMax(x) > 0``. ``inner`` (a ``Loop``, say) is drawn first into
    one of the branches."""
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
    inner_at = b.integer(0, 1) if inner is not None else -1
    for i, name in enumerate(("then", "else")):
        sub = b.body(b.name(name), [])
        if i == inner_at and inner is not None:
            inner(sub)
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


#: The decoder-like features a drawn ``Loop`` may have (what :func:`loop_features` reports).
LOOP_FEATURES = ("grow", "exit", "scan", "runtime-trips", "cond-input", "capture", "nested")
_BIG = 2**63 - 1


def gen_loop(b: Builder) -> None:
    """``Loop`` with a constant trip count and one or two carried values; static loops (no
    condition) or ones that stop at ``iter < K``. Further drawn options (each off when shrunk)
    make it decoder-like: a carried value that grows by one row along an axis each iteration,
    a data-dependent exit, scan outputs, a trip count computed at run time, an initial
    condition computed from the inputs, and a nested ``Loop`` in the body."""
    trips = b.integer(1, 3)
    bounded = b.flip()
    carried = [b.pick(ANY) for _ in range(b.integer(1, 2))]
    types = [(v.dtype, v.shape) for v in carried]
    exit_kind = b.integer(0, 3) if bounded else 0  # 0: iter < K; 1-3: data-dependent exits
    grown = b.pick(NUMERIC, 1, 3) if b.integer(0, 2) == 2 else None
    axis = b.integer(0, len(grown.shape) - 1) if grown is not None else 0
    runtime = b.integer(0, 3) == 3
    want_scan = b.flip()
    cond_input = bounded and b.integer(0, 3) == 3
    nested = b.depth + 1 < b.opts.max_depth and b.integer(0, 7) == 7
    gtype: list[tuple[int, Sequence[Dim]]] = []
    if grown is not None:
        gtype = [(grown.dtype, (*grown.shape[:axis], None, *grown.shape[axis + 1 :]))]
    sub = b.body(b.name("body"), [(I64, ()), (BOOL, ()), *types, *gtype])
    it, cond_in = sub.graph.inputs[0], sub.graph.inputs[1]
    # onnxruntime 1.32 bug: when a body returns its iteration-number input itself as a scan
    # output, every row holds the last count ([3, 3, 3], not [0, 1, 2]). Only Cast(it) reads
    # the number here, so no pass (dropping an Identity, say) can turn a graph into that form.
    sub.pool.remove(it)
    last = None
    if grown is not None:  # the newest row: a static slice of the growing value
        g_in = sub.graph.inputs[-1]  # not in the pool: its dim grows
        row_shape = (*grown.shape[:axis], 1, *grown.shape[axis + 1 :])
        last = sub.emit1(
            "Slice", [g_in, sub.const(i64([-1])), sub.const(i64([_BIG])), sub.const(i64([axis]))],
            grown.dtype, row_shape,
        )  # fmt: skip
    if nested:
        sub.op("Loop")
    sub.steps(0, 2)
    outs = []
    for v in sub.graph.inputs[2 : 2 + len(carried)]:
        new = sub.transform(v)
        if v.dtype in FLOATS and sub.flip():  # read the iteration number
            step = sub.emit1("Cast", [it], v.dtype, (), to=v.dtype)
            new = sub.emit1("Add", [new, step], v.dtype, v.shape)
        outs.append(new)
    if grown is not None and last is not None:  # tokens = Concat(tokens, next token)
        row = sub.transform(last) if sub.flip() else sub.typed(grown.dtype, last.shape)
        outs.append(sub.emit1("Concat", [sub.graph.inputs[-1], row], grown.dtype, gtype[0][1],
                              axis=axis))  # fmt: skip
    scans = [sub.pick(ANY)] if want_scan else []
    if not bounded:
        cond_out = cond_in
    elif exit_kind == 0:
        limit = sub.const(np.asarray(b.integer(0, trips), np.int64))
        cond_out = sub.emit1("Less", [it, limit], BOOL, ())
    else:
        cond_out = _exit(sub, exit_kind, it, cond_in, outs)
    sub.graph.set_outputs([cond_out, *outs, *scans])
    if runtime:  # may be 0: then no iteration runs
        m = b.emit1("Min", [_count(b)[0], b.const(i64(trips))], I64, ())
    else:
        m = b.const(np.asarray(trips, np.int64))
    cond_init: Value | None = None
    if cond_input:  # may be false: then no iteration runs
        x = b.pick(NUMERIC - {I32})  # as gen_if's ReduceMax
        r = b.emit1("ReduceMax", [x], x.dtype, (), keepdims=0)
        cond_init = b.emit1("Greater", [r, b.const(np.zeros((), np_dtype(x.dtype)))], BOOL, ())
    elif bounded:
        cond_init = b.const(np.asarray(True))
    known = not bounded and not runtime  # the number of iterations is the trip count
    steps: Dim = trips if known else None
    out_types = [*types, *gtype, *[(s.dtype, (steps, *s.shape)) for s in scans]]
    outputs = [Value(b.name(), TensorType(dt, _named(b, shape))) for dt, shape in out_types]
    node = Node("Loop", [m, cond_init, *carried, *([grown] if grown is not None else [])],
                outputs=outputs)  # fmt: skip
    node.set_attr("body", sub.graph)
    b.graph.append(node)
    b.produced.extend(outputs)
    for v in outputs:
        if static(v):
            b.pool.append(v)
        elif b.flip():  # a static view of it: sum over the dim that grows
            ax = v.shape.index(next(d for d in v.shape if type(d) is not int))
            src = v if v.dtype != BOOL else b.emit1("Cast", [v], I64, v.shape, to=I64)
            shape = tuple(1 if i == ax else d for i, d in enumerate(v.shape))
            b.emit1("ReduceSum", [src, b.const(i64([ax]))], src.dtype, shape, keepdims=1)


def gen_required_loop(b: Builder) -> None:
    """A ``Loop`` (what ``graphs(loops=True)`` draws first): at the top level, or, one time in
    six and when the depth allows, inside a branch of an ``If``."""
    if b.depth + 1 < b.opts.max_depth and b.integer(0, 5) == 5:
        gen_if(b, gen_loop)
    else:
        gen_loop(b)


def loop_features(node: Node) -> set[str]:
    """Which of :data:`LOOP_FEATURES` a ``Loop`` node has (for tests and statistics)."""
    body = node.attr("body")
    n_carried = len(node.inputs) - 2
    it, cond_in = body.inputs[0], body.inputs[1]
    out: set[str] = set()
    if any(not static(v) for v in node.outputs[:n_carried]):
        out.add("grow")
    if len(node.outputs) > n_carried:
        out.add("scan")
    cond_out = body.outputs[0]
    p = cond_out.producer
    if cond_out is not cond_in and not (
        p is not None and p.op_type == "Less" and p.inputs[0] is it and _constant(p.inputs[1])
    ):
        out.add("exit")
    if node.inputs[0] is not None and not _constant(node.inputs[0]):
        out.add("runtime-trips")
    if node.inputs[1] is not None and not _constant(node.inputs[1]):
        out.add("cond-input")
    inside = set(map(id, body.all_graphs()))
    nodes = list(body.all_nodes())
    if any(v is not None and id(v.graph) not in inside for n in nodes for v in n.inputs):
        out.add("capture")
    if any(n.op_type == "Loop" for n in nodes):
        out.add("nested")
    return out


def _constant(v: Value | None) -> bool:
    return v is not None and (
        v.is_initializer or (v.producer is not None and v.producer.op_type == "Constant")
    )


def _named(b: Builder, shape: Sequence[Dim]) -> tuple[Dim, ...]:
    """``shape`` with its unknown dims given fresh symbols (how a Loop output is typed)."""
    return tuple(b.name("n") if d is None else d for d in shape)


def _count(b: Builder) -> tuple[Value, int]:
    """``ReduceSum(x > 0)`` as an int64 scalar, ``x`` mostly a value the inputs reach; and the
    number of elements of ``x`` (the largest count)."""
    x = _fed(b, NUMERIC, b.pool)
    pos = b.emit1("Greater", [x, b.const(np.zeros((), np_dtype(x.dtype)))], BOOL, x.shape)
    ints = b.emit1("Cast", [pos], I64, x.shape, to=I64)
    return b.emit1("ReduceSum", [ints], I64, (), keepdims=0), numel(x.shape)


def _fed(b: Builder, dtypes: frozenset[int], among: list[Value], wide: bool = False) -> Value:
    """Three times in four a value of ``among`` (newest first) that the graph's or the body's
    inputs reach, so that what is computed from it changes with the feeds; else any operand.
    ``wide``: of rank 1 or more, the last dim at least 2."""

    def fits(v: Value) -> bool:
        return not wide or (len(v.shape) >= 1 and int(v.shape[-1] or 0) >= 2)

    memo: dict[int, bool] = {}
    cands = [
        v
        for v in reversed(among)
        if v.dtype in dtypes and static(v) and fits(v) and _reached(v, memo)
    ]
    if cands and b.integer(0, 3) < 3:
        return b.choice(cands)
    return b.pick(dtypes, pred=fits, fresh=lambda: (max(2, b.dim()),))


def _reached(v: Value, memo: dict[int, bool]) -> bool:
    """True when an input (of the graph or of a body) reaches ``v``: not a constant expression."""
    if id(v) not in memo:
        p = v.producer
        if p is None:
            memo[id(v)] = not v.is_initializer
        else:
            memo[id(v)] = bool(p.subgraphs) or any(
                _reached(x, memo) for x in p.inputs if x is not None
            )
    return memo[id(v)]


def _exit(sub: Builder, kind: int, it: Value, cond_in: Value, outs: list[Value]) -> Value:
    """A data-dependent ``cond_out``: the iteration number against a count read from a value
    in scope (often a captured one), a carried value's sum against a threshold, or the
    decoder's ``cond_in and ArgMax(logits) != EOS``."""
    if kind == 1:  # it * K < count, K spreading the count's range over the trip count
        n, size = _count(sub)
        k = max(1, size // 2)
        scaled = sub.emit1("Mul", [it, sub.const(i64(k))], I64, ())
        return sub.emit1("Less", [scaled, n], BOOL, ())
    if kind == 2:
        x = _fed(sub, NUMERIC, outs if sub.flip() else sub.pool)
        s = sub.emit1("ReduceSum", [x], x.dtype, (), keepdims=0)
        thr = sub.const(sub.values(x.dtype, ()))
        return sub.emit1("Less", [s, thr], BOOL, ())
    logits = _fed(sub, FLOATS, outs if sub.flip() else sub.pool, wide=True)
    d = numel(logits.shape[-1:])
    rows = sub.emit1("Reshape", [logits, sub.const(i64([-1, d]))], logits.dtype,
                     (numel(logits.shape) // d, d))  # fmt: skip
    first = sub.emit1("Gather", [rows, sub.const(i64(0))], logits.dtype, (d,), axis=0)
    am = sub.emit1("ArgMax", [first], I64, (), axis=0, keepdims=0)  # the next token
    eos = sub.const(i64(sub.integer(0, d - 1)))
    stop = sub.emit1("Equal", [am, eos], BOOL, ())
    go = sub.emit1("Not", [stop], BOOL, ())
    return sub.emit1("And", [cond_in, go], BOOL, ())


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
