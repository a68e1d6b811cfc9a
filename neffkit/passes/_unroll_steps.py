"""Straight-line steps of an unrolled ``Loop`` and the exact exit logic around them.

``emit_steps`` pastes copies of a body with the chain of ``running`` booleans beside them;
``finish`` picks the loop's outputs from the steps (``Where`` for carried values of one shape,
a tree of ``If`` by the number of steps run for the others, scans stacked and cut). The design
and its trade-offs are in ``neffkit.passes.unroll_loops``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.types import OpaqueType, TensorType
from neffkit.ir.units import GATE_MARK, PARTITION_MARK, host_loop_key
from neffkit.passes._loops import (
    Emitter,
    LoopParts,
    among,
    body_size,
    copy_body,
    counted_bound,
    dtype_of,
    is_true,
    stable_carried,
    stable_shapes,
    static_int,
    static_shape,
)


@dataclass
class Steps:
    """What ``emit_steps`` made: the carried values after each step, and who ran."""

    chain: list[list[Value]]  # chain[j]: carried values after j steps (chain[0]: the start)
    running: list[Value | None]  # running[j]: whether step j runs (None: known true)
    last: Value | None  # whether the last step ran (None: known true)
    cond: Value  # the last step's cond_out (the next step's cond_in)
    scans: list[list[Value]]  # scans[j]: the scan outputs of step j
    watch_cond: bool  # whether cond_out decides (False: no loop condition, or passed through)

    def after(self, em: Emitter) -> Value | None:
        """Whether a step after the last would run, M aside (None: known true)."""
        if not self.watch_cond or is_true(self.cond):
            return self.last
        return conj(em, self.last, scalar(em, self.cond))


def bound(parts: LoopParts, max_trip: int) -> int | None:
    """How many copies to make: the least of M (when constant), the bound a counter in the
    exit condition proves (``counted_bound``), and ``max_trip`` (0: none), or None."""
    known = [b for b in (static_int(parts.trip), counted_bound(parts)) if b is not None]
    if max_trip:
        known.append(max_trip)
    return max(min(known), 0) if known else None


def why_not(parts: LoopParts, trips: int | None, max_nodes: int) -> str | None:
    """Why this loop is left alone, or None."""
    if trips is None:
        return "its trip count is not a constant and no max-trip bounds it"
    graph = parts.node.graph
    if graph is not None and (graph.opset("") or 0) < 11:
        return "the model's opset is below 11"
    if trips == 0 and parts.scan_out:
        return "it runs no step and has scan outputs (their shape is unknown)"
    if parts.cond is None and not _forwards_true(parts):
        # Loop(M, "", ...): the spec ignores cond_out; onnxruntime (and the torch backend)
        # stop on it. No unrolled graph can agree with both.
        return (
            "it has no condition input but its body computes cond_out, which the ONNX spec "
            "ignores and onnxruntime stops on"
        )
    opaque = _non_tensor(parts)
    if opaque is not None:
        return opaque
    size = body_size(parts.body)
    # a step adds at least one node (its counter, its exit test): an empty body with M = 1e9
    # must not pass as costing nothing (the copies were made, for ever)
    if max(size, 1) * trips > max_nodes:
        return f"{trips} copies of its {size}-node body exceed max-nodes={max_nodes}"
    return None


def _non_tensor(parts: LoopParts) -> str | None:
    """Why the loop's sequence or optional carried values stop it from being unrolled, or None.

    A step's copy binds the body's input to the previous step's output, so the two must be of
    one kind (an ``optional(seq)`` input fed a ``seq`` output is not); and only tensors are
    picked at an exit (``Identity`` of a sequence needs opset 14, of an optional 16).
    """
    for v_in, v_out in zip(parts.state_in, parts.state_out):
        a, b = v_in.type, v_out.type
        if not isinstance(a, OpaqueType) and not isinstance(b, OpaqueType):
            continue
        kind_a = a.proto.WhichOneof("value") if isinstance(a, OpaqueType) else "tensor_type"
        kind_b = b.proto.WhichOneof("value") if isinstance(b, OpaqueType) else "tensor_type"
        if a is not None and b is not None and kind_a != kind_b:
            return f"its carried value '{v_in.name}' comes in as {kind_a}, out as {kind_b}"
        if _may_stop(parts):
            return f"it may stop early and carries '{v_in.name}', not a tensor"
    return None


def _may_stop(parts: LoopParts) -> bool:
    """False when every step up to the bound is known to run."""
    if parts.trip is not None and static_int(parts.trip) is None:
        return True
    if parts.cond is None:
        return False
    return not (is_true(parts.cond) and (_forwards_true(parts)))


def _forwards_true(parts: LoopParts) -> bool:
    """True when cond_out is cond_in or a constant true, through ``Identity`` nodes (then,
    with no condition input, it is true on every step by the spec and by onnxruntime)."""
    v = parts.cond_out
    p = v.producer
    while p is not None and p.op_type == "Identity" and p.domain == "" and p.inputs[0] is not None:
        v = p.inputs[0]
        p = v.producer
    return v is parts.cond_in or is_true(v)


def shared_constants(parts: LoopParts, graph: Graph) -> dict[Value, Value]:
    """The body's initializers, each added once to ``graph`` for all copies to read."""
    shared: dict[Value, Value] = {}
    for v in parts.body.initializers.values():
        shared[v] = graph.add_initializer(Value(v.name, v.type, const=v.const))
    return shared


def scalar(em: Emitter, v: Value, dtype: int = TensorProto.BOOL) -> Value:
    """``v`` as a rank-0 tensor (cond and M may come as one-element tensors) of ``dtype``, the
    type the spec gives it (bool for a condition, int64 for M; ``v`` may have no type).

    Only a constant or a graph input is trusted to be rank 0 already: a body's declared
    output types are not checked by runtimes, and ``Equal([1, 1], x)`` declared ``bool``
    happens.
    """
    if v.producer is None and static_shape(v) == ():
        return v
    out = em.node("Reshape", [v, em.const(np.zeros(0, np.int64), "scalar_shape")], "scalar")
    out.type = TensorType(dtype, ())
    return out


def conj(em: Emitter, a: Value | None, b: Value) -> Value:
    """``a and b``; None stands for a known true."""
    if a is None:
        return b
    out = em.node("And", [a, b], "running")
    out.type = TensorType(TensorProto.BOOL, ())
    return out


def initial_running(parts: LoopParts, em: Emitter) -> Value | None:
    """Whether the first step runs, the trip count aside (None: known true)."""
    if parts.cond is None or is_true(parts.cond):
        return None
    return scalar(em, parts.cond)


def initial_cond(parts: LoopParts, em: Emitter) -> Value:
    """The first step's cond_in: the loop's condition, or true when it has none."""
    if parts.cond is not None or not parts.cond_in.is_used:
        return parts.cond or parts.cond_in  # an unread cond_in needs no value
    return em.const(np.array(True), "true")


def emit_steps(
    parts: LoopParts,
    em: Emitter,
    span: range,
    state: list[Value],
    running: Value | None,
    cond: Value,
    shared: dict[Value, Value],
    trip: Value | None,
) -> Steps:
    """Pastes the steps of ``span`` at ``em``'s place, starting from ``state``.

    ``trip`` is M when it is not a constant (each step then also checks ``t < M``).
    """
    chain = [list(state)]
    runs: list[Value | None] = []
    scans: list[list[Value]] = []
    watch_cond = parts.cond is not None and parts.cond_out is not parts.cond_in
    last = last_index(em, trip) if trip is not None and parts.iter_in.is_used else None
    for t in span:
        if t != span.start and watch_cond and not is_true(cond):
            running = conj(em, running, scalar(em, cond))  # the previous step's cond_out
        vmap: dict[Value, Value] = {parts.cond_in: cond}
        if parts.iter_in.is_used or trip is not None:
            index = vmap[parts.iter_in] = em.const(np.array(t, np.int64), f"iter_{t}")
        if trip is not None:
            below_m = scalar(em, em.node("Less", [index, trip]))
            running = conj(em, running, below_m)
        if last is not None:
            # steps from M on run too (their results are dropped); their iteration number
            # stays at M - 1 so that what the body indexes by it stays in range (a step past
            # the end read x[M:M+1], empty, and Where broadcast that into the frozen value)
            clamped = em.node("Where", [below_m, index, last], "iter")
            clamped.type = TensorType(TensorProto.INT64, ())
            vmap[parts.iter_in] = clamped
        runs.append(running)
        vmap.update(zip(parts.state_in, chain[-1]))
        copy_body(parts.body, em, vmap, f"{em.prefix}s{t}", shared)
        chain.append([vmap.get(v, v) for v in parts.state_out])
        scans.append([vmap.get(v, v) for v in parts.scan_out])
        cond = vmap.get(parts.cond_out, parts.cond_out)
    return Steps(chain, runs, running, cond, scans, watch_cond)


#: Element types onnxruntime's CPU ``Where`` takes (bool goes through uint8).
_WHERE_TYPES = frozenset(
    {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64}
    | {TensorProto.UINT8, TensorProto.STRING, TensorProto.BOOL}
)


def same_shape_every_step(parts: LoopParts, k: int) -> bool:
    """True when carried value k can be frozen by ``Where``: it provably keeps one shape (the
    initial value's static shape is the one the body declares for its output, or the body
    passes it through) and runtimes have a ``Where`` for its element type."""
    out = parts.state_out[k]
    if out is parts.state_in[k]:
        return True
    start = static_shape(parts.inits[k])
    if start is None or static_shape(out) != start:
        return False
    return dtype_of(parts.inits[k]) in _WHERE_TYPES


def freeze(em: Emitter, running: Value, step: Value, frozen: Value) -> Value:
    """``running ? step : frozen``, for every element type in ``_WHERE_TYPES``."""
    if dtype_of(step) != TensorProto.BOOL and dtype_of(frozen) != TensorProto.BOOL:
        return em.node("Where", [running, step, frozen], "frozen")
    # bool [running ? step : frozen] -> Cast(Where(running, Cast(step, u8), Cast(frozen, u8)))
    a = em.node("Cast", [step], "as_u8", to=TensorProto.UINT8)
    b = em.node("Cast", [frozen], "as_u8", to=TensorProto.UINT8)
    picked = em.node("Where", [running, a, b], "frozen")
    return em.node("Cast", [picked], "frozen", to=TensorProto.BOOL)


def steps_run(em: Emitter, runs: list[Value | None]) -> Value:
    """n, the number of steps that ran, as an int64 scalar (``running`` is monotone)."""
    known = sum(1 for r in runs if r is None)
    total: Value = em.const(np.array(known, np.int64), f"steps_{known}")
    for r in runs:
        if r is not None:
            one = em.node("Cast", [r], "ran", to=TensorProto.INT64)
            total = em.node("Add", [total, one], "steps_run")
            total.type = TensorType(TensorProto.INT64, ())
    return total


def select_by_count(
    em: Emitter,
    count: Value,
    chain: list[list[Value]],
    lo: int,
    hi: int,
    leaf: bool,
    make: Callable[[Emitter, int], list[Value]] | None = None,
) -> list[Value]:
    """``chain[count]``, among ``chain[lo..hi]``, by a balanced tree of ``If`` nodes (or what
    ``make`` builds for that count in its branch; ``chain`` then only gives the types)."""
    if lo == hi:
        if make is not None:
            return make(em, lo)
        if not leaf:
            return list(chain[lo])
        outs = []
        for v in chain[lo]:
            c = em.node("Identity", [v])
            c.type = v.type
            outs.append(c)
        return outs
    mid = (lo + hi) // 2
    le = em.node("Less", [count, em.const(np.array(mid + 1, np.int64), f"steps_{mid + 1}")])
    branches = []
    for name, a, b in (
        (f"steps_{lo}_to_{mid}", lo, mid),
        (f"steps_{mid + 1}_to_{hi}", mid + 1, hi),
    ):
        sub = Graph(name)
        for v in select_by_count(em.child(sub), count, chain, a, b, True, make):
            sub.add_output(v)
        branches.append(sub)
    node = Node("If", [le], num_outputs=len(chain[lo]))
    node.set_attr("then_branch", branches[0])
    node.set_attr("else_branch", branches[1])
    em.add(node)
    for v, first in zip(node.outputs, chain[lo]):
        v.type = _loose(first.type)
    return list(node.outputs)


def _loose(t: object) -> TensorType | None:
    """The dtype and rank of ``t`` with every dim unknown (steps differ in shape)."""
    if not isinstance(t, TensorType):
        return None
    return TensorType(t.dtype, None if t.shape is None else (None,) * len(t.shape))


def finish(parts: LoopParts, em: Emitter, steps: Steps, cut: bool) -> list[Value]:
    """The loop's outputs from the steps: carried values frozen at the exit, scans cut.

    ``cut=False`` when every step is known to run.
    """
    chain, runs = steps.chain, steps.running
    n = len(parts.state_out)
    fixed = stable_carried(parts, [k for k in range(n) if same_shape_every_step(parts, k)])
    needs_count = bool(parts.scan_out) or len(fixed) < n
    count = steps_run(em, runs) if cut and needs_count else None
    finals = list(chain[-1])
    growing = []
    for k in range(len(finals)):
        if not cut:
            continue
        if k not in fixed:  # its shape may change on a step, maybe one past the exit
            growing.append(k)
            continue
        acc = chain[0][k]
        for t, r in enumerate(runs):
            step = chain[t + 1][k]
            if step is acc:
                continue  # passed through unchanged: nothing to pick (and no Where to type)
            # running_t ? step t's result : the value frozen before it
            acc = step if r is None else freeze(em, r, step, acc)
        finals[k] = acc
    if growing and count is not None:
        picked = [[row[k] for k in growing] for row in chain]
        for k, v in zip(growing, select_by_count(em, count, picked, 0, len(chain) - 1, False)):
            finals[k] = v
    shaped = stable_shapes(parts, fixed)
    scans = [among(v, parts.body, shaped) for v in parts.scan_out]
    return finals + [stack_scans(em, steps, j, count, scans[j]) for j in range(len(scans))]


def stack_scans(
    em: Emitter, steps: Steps, j: int, count: Value | None, stable: bool = True
) -> Value:
    """Scan output j: the steps' slices stacked on a new axis 0, cut to ``count`` rows.

    ``stable=False``: a row's shape may change on the steps past the exit, where ``Concat``
    would fail; the rows of the steps that ran are then stacked inside the branch of a tree
    of ``If`` nodes picked by ``count``.
    """
    zero = em.const(np.zeros(1, np.int64), "axis_0")
    rows = []
    for step in steps.scans:
        if em.opset >= 13:
            rows.append(em.node("Unsqueeze", [step[j], zero]))
        else:
            rows.append(em.node("Unsqueeze", [step[j]], axes=[0]))
    if count is not None and not stable:

        def ran(sub: Emitter, k: int) -> list[Value]:
            # the first k rows; none: row 0 cut to no rows (the runtimes' empty scan)
            if k == 0:
                return [sub.node("Slice", [rows[0], zero, zero, zero])]
            first: list[Value | None] = list(rows[:k])
            return [sub.node("Concat", first, "stacked", axis=0)]

        types = [[rows[0]]] * (len(rows) + 1)
        return select_by_count(em, count, types, 0, len(rows), False, ran)[0]
    stacked = em.node("Concat", list(rows), "stacked", axis=0)
    if count is None:
        return stacked
    end = em.node("Reshape", [count, em.const(np.ones(1, np.int64), "one_dim")], "rows")
    return em.node("Slice", [stacked, zero, end, zero])


def replace_loop(node: Node, em: Emitter, results: list[Value]) -> None:
    """Rewires the loop's readers to ``results`` and removes the loop."""
    for out, new in zip(node.outputs, results):
        if new.producer is None or new.is_graph_output or new.graph is not em.graph:
            new = em.node("Identity", [new])  # an output slot needs a value of its own
        if out.type is not None:
            new.type = out.type  # the loop's declared type holds for the final value
        out.replace_all_uses_with(new)
    graph = node.graph
    assert graph is not None  # the loop is in the graph being rewritten
    graph.remove(node)
    if graph.root is graph and node.name:  # split's mark of it, if any, names no loop now
        graph.meta.metadata_props.pop(host_loop_key(node), None)
    for out, new in zip(node.outputs, results):
        if out.name and new.producer is not None and not new.name.startswith(out.name):
            new.name = out.name


def last_index(em: Emitter, trip: Value) -> Value:
    """``max(M - 1, 0)``: the last iteration number of a loop of run-time trip count M (as
    ``Where``: integer ``Max`` needs opset 12)."""
    one = em.const(np.array(1, np.int64), "one")
    zero = em.const(np.array(0, np.int64), "zero")
    below = em.node("Sub", [trip, one], "last_step")
    runs = em.node("Less", [zero, trip], "runs")
    out = em.node("Where", [runs, below, zero], "last_step")
    out.type = TensorType(TensorProto.INT64, ())
    return out


def trip_operand(parts: LoopParts, em: Emitter) -> Value | None:
    """M as a scalar, when the copies must check ``t < M`` at run time."""
    if parts.trip is None or static_int(parts.trip) is not None:
        return None
    return scalar(em, parts.trip, TensorProto.INT64)


def emit_partitions(
    parts: LoopParts,
    em: Emitter,
    spans: list[range],
    state: list[Value],
    running: Value | None,
    cond: Value,
    shared: dict[Value, Value],
    trip: Value | None,
) -> list[Value]:
    """The loop's outputs, its steps cut into ``spans``: each later span runs inside the
    then-branch of an ``If`` taken only while the loop still runs at the span's start.

    A span's steps are straight-line (one compiled unit); when the loop stops inside span p,
    the gate after it takes its else-branch, which picks the outputs from span p's steps
    (``finish``); when it goes on, span p + 1 starts from span p's last step.
    """
    steps = emit_steps(parts, em, spans[0], state, running, cond, shared, trip)
    cut = any(r is not None for r in steps.running)
    if len(spans) == 1:
        return finish(parts, em, steps, cut)
    nxt = spans[1]
    go = steps.after(em)
    if trip is not None:  # and the next step is below M
        less = em.node("Less", [em.const(np.array(nxt.start, np.int64), f"iter_{nxt.start}"), trip])
        go = conj(em, go, scalar(em, less))
    if go is None:
        go = em.const(np.array(True), "true")
    then = Graph(f"partition_{nxt.start}_to_{nxt.stop - 1}")
    then.doc_string = f"{PARTITION_MARK} steps={nxt.start}-{nxt.stop - 1}"
    tem = em.child(then)
    rest = emit_partitions(parts, tem, spans[1:], steps.chain[-1], None, steps.cond, shared, trip)
    k = len(parts.state_out)
    for j in range(len(parts.scan_out)):  # every step of this span ran: all its rows
        mine = stack_scans(tem, steps, j, None)
        rest[k + j] = tem.node("Concat", [mine, rest[k + j]], "stacked", axis=0)
    stop = Graph(f"stop_in_{spans[0].start}_to_{spans[0].stop - 1}")
    picked = finish(parts, em.child(stop), steps, cut)
    for sub, values in ((then, rest), (stop, picked)):
        sem = em.child(sub)
        for v in values:
            sub.add_output(v if v.graph is sub and v.producer is not None else _copy(sem, v))
    name = f"{parts.node.name}/partition_gate_{nxt.start}" if parts.node.name else ""
    gate = Node("If", [go], num_outputs=len(rest), name=name)
    gate.doc_string = GATE_MARK
    gate.set_attr("then_branch", then)
    gate.set_attr("else_branch", stop)
    em.add(gate)
    for v, first in zip(gate.outputs, picked):
        v.type = _loose(first.type)
    return list(gate.outputs)


def can_stop_early(parts: LoopParts, trip: Value | None) -> bool:
    """False when every step up to the bound is known to run (no condition that decides,
    and a constant trip count): then steps need no running chain and no gates."""
    if trip is not None:
        return True
    if parts.cond is None or parts.cond_out is parts.cond_in:
        return False
    return not is_true(parts.cond_out)


def _copy(em: Emitter, v: Value) -> Value:
    """``Identity(v)``: a branch output must be a value of the branch."""
    out = em.node("Identity", [v])
    out.type = v.type
    return out


def partition_spans(trips: int, boundaries: list[int]) -> list[range]:
    """The steps of each partition: ``boundaries`` below ``trips``, then ``trips``."""
    ends = sorted({b for b in boundaries if 0 < b < trips} | {trips})
    return [range(a, b) for a, b in zip([0, *ends[:-1]], ends)]
