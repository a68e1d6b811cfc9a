"""``hoist``: loop-invariant code motion out of ``Loop`` and ``Scan`` bodies.

Before / after::

    y = Loop (n, c, t0) <body = ... {         k = MatMul (mem, w)
        k = MatMul (mem, w)                   y = Loop (n, c, t0) <body = ... {
        s = MatMul (t, k)            ->           s = MatMul (t, k)     (k: captured)
        ...                                       ...
    }>                                        }>

A body node is invariant when it is pure (``neffkit.passes.base.is_pure``: no Random* op, no
Dropout, no custom-domain op; for a node holding subgraphs, every node inside them too) and
every value it reads (inside its subgraphs included) is an outer-scope value, a constant of
the body, or the output of another invariant node: never the iteration number, the condition
or a carried / scanned value. Invariant nodes move, in order, to just before the loop node;
the body reads their outputs as captured values, so the values (and their types and shapes)
are the same objects. Constants of the body that a moved node reads are copied into the outer
graph (the body's copy is dropped once unread). Loops are visited innermost first, so a node
invariant in every enclosing loop moves all the way out in one run.

Zero-trip loops: a hoisted node runs even when the loop runs zero times. When the loop is
proven to run at least once (``Loop``: a constant trip count >= 1 or none, and a constant true
or absent initial condition; ``Scan``: a static sequence length >= 1), every top-level body
node ran at least once before, on the same inputs, so moving any pure node is exact, errors
included. Otherwise only nodes that cannot raise on any input move (``Constant``, ``Shape``,
``Identity``, elementwise unary math ...), unless ``speculate=true``: then any invariant node
moves, and a node that fails (a ``Reshape`` to a bad shape, say) makes a run fail that the
zero-trip loop did not. ``If`` branches are not loops: nothing is hoisted out of them (an
``If`` in a body moves as a whole when everything its branches read is invariant).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from neffkit.ir.core import Graph, Node, Value
from neffkit.passes._loops import free_name
from neffkit.passes.base import Pass, PassContext, PassResult, all_graphs_postorder, is_pure, option
from neffkit.passes.registry import register

#: Ops that cannot raise on any input of a valid graph (no shape, index or value condition),
#: so they may move out of a loop that may run zero times.
CANNOT_RAISE = frozenset(
    {
        "Constant",
        "Identity",
        "Shape",
        "Size",
        "Abs",
        "Neg",
        "Relu",
        "Sigmoid",
        "Tanh",
        "Exp",
        "Log",
        "Sqrt",
        "Reciprocal",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        "Not",
        "Sin",
        "Cos",
        "Erf",
        "IsNaN",
        "IsInf",
        "Softplus",
        "Softsign",
    }
)

_LOOPS = frozenset({"Loop", "Scan"})


@register
@dataclass(frozen=True)
class HoistLoopInvariants(Pass):
    """Moves loop-invariant pure nodes out of ``Loop`` / ``Scan`` bodies, innermost first."""

    name: ClassVar[str] = "hoist"
    description: ClassVar[str] = (
        "loop-invariant code motion: move pure nodes that read no per-iteration value out of "
        "Loop/Scan bodies"
    )
    speculate: bool = option(
        False,
        "also move nodes that may raise out of loops that may run zero times",
    )

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        moved = loops = copied = 0
        names: dict[Graph, set[str]] = {}  # node names taken in each graph nodes move to
        # Bodies before the graphs that hold them: what leaves an inner body can then leave
        # the enclosing one in the same run.
        for body in list(all_graphs_postorder(graph)):
            loop = body.parent
            if loop is None or loop.op_type not in _LOOPS or loop.domain != "":
                continue
            if loop.attr("body") is not body or loop.graph is None:
                continue
            speculate = self.speculate or _runs_at_least_once(loop)
            nodes = _invariant_nodes(body, speculate)
            if not nodes:
                continue
            outer = loop.graph
            taken = names.get(outer)
            if taken is None:
                taken = names[outer] = {n.name for n in outer if n.name}
            copied += _move(nodes, body, loop, outer, taken)
            moved += len(nodes)
            loops += 1
        stats = {"nodes_hoisted": moved, "loops": loops, "constants_copied": copied}
        return PassResult(moved > 0, {k: v for k, v in stats.items() if v})


def _invariant_nodes(body: Graph, speculate: bool) -> list[Node]:
    """The body's invariant nodes that may move, in program order."""
    inputs = set(body.inputs)
    invariant: set[Value] = set()
    out: list[Node] = []
    for node in body:
        if not speculate and node.op_type not in CANNOT_RAISE:
            continue
        if not _movable(node, body, inputs, invariant):
            continue
        out.append(node)
        invariant.update(node.outputs)
    return out


def _movable(node: Node, body: Graph, inputs: set[Value], invariant: set[Value]) -> bool:
    """True when ``node`` is pure and reads only values that are the same on every iteration."""
    if not is_pure(node):
        return False
    if node in body.holders:
        inner = _inner_graphs(node)
        if not all(is_pure(n) for g in inner for n in g):
            return False
        reads: Iterable[Value] = [*_inputs(node), *_free_values(inner)]
    else:
        reads = _inputs(node)
    for v in reads:
        if v.graph is not body:
            continue  # an outer-scope value: the same on every iteration
        if v in invariant:
            continue
        if v.is_initializer and v not in inputs:
            continue  # a constant of the body
        return False
    return True


def _inner_graphs(node: Node) -> set[Graph]:
    return {g for sub in node.subgraphs for g in sub.all_graphs()}


def _free_values(inner: set[Graph]) -> Iterator[Value]:
    """Values read inside ``inner`` (node inputs and graph outputs) defined outside it."""
    for g in inner:
        for n in g:
            for v in n.inputs:
                if v is not None and v.graph not in inner:
                    yield v
        for v in g.outputs:
            if v.graph not in inner:
                yield v


def _inputs(node: Node) -> Iterator[Value]:
    for v in node.inputs:
        if v is not None:
            yield v


def _move(nodes: list[Node], body: Graph, loop: Node, outer: Graph, taken: set[str]) -> int:
    """Moves ``nodes`` before ``loop`` in ``outer``; returns how many constants were copied.

    A moved node whose name ``outer`` already has (``taken``) gets a free one: onnxruntime
    refuses a graph with two nodes of one name.
    """
    moving = set(nodes)
    regions: dict[Node, set[Graph]] = {n: _inner_graphs(n) for n in nodes if n in body.holders}
    inner_all = set().union(*regions.values()) if regions else set()
    copies: dict[Value, Value] = {}

    def outer_copy(v: Value) -> Value:
        # the body's constant, as a constant of the outer graph (the tensor is shared)
        c = copies.get(v)
        if c is None:
            c = outer.add_initializer(Value(v.name, v.type, const=v.const))
            copies[v] = c
        return c

    # body constants read by moving nodes (or inside their subgraphs) -> outer copies; each
    # constant once: its first reader rewires every moving use of it
    for node in nodes:
        graphs = regions.get(node)
        reads = [*_inputs(node), *(_free_values(graphs) if graphs else ())]
        for v in reads:
            if v.graph is not body or not v.is_initializer or v in copies:
                continue
            c = outer_copy(v)
            for user, i in v.uses:
                if user in moving or user.graph in inner_all:
                    user.set_input(i, c)
            for g in inner_all:
                if v in g.outputs:
                    g.replace_output(v, c)
    for node in nodes:
        body.remove(node, safe=False)  # its outputs keep their readers; its input uses drop
        if node.name:
            node.name = free_name(node.name, taken)
        outer.insert_before(loop, node)
        node.set_inputs(list(node.inputs))  # the uses ``remove`` dropped
        graphs = regions.get(node)
        if graphs:
            _restore_outer_uses(graphs)
    for v in copies:
        if not v.is_used:
            body.remove_initializer(v)
    return len(copies)


def _restore_outer_uses(inner: set[Graph]) -> None:
    """Re-registers the uses of outer values made inside ``inner`` (``remove`` dropped them)."""
    for g in inner:
        for n in g:
            if any(v is not None and v.graph not in inner for v in n.inputs):
                n.set_inputs(list(n.inputs))
        if any(v.graph not in inner for v in g.outputs):
            g.set_outputs(list(g.outputs), list(g.output_names))


def _runs_at_least_once(loop: Node) -> bool:
    """True when ``loop`` is proven to run its body at least once."""
    if loop.op_type == "Loop":
        ins = loop.inputs
        m = ins[0] if ins else None
        cond = ins[1] if len(ins) > 1 else None
        if m is not None:
            trips = _constant(m)
            if trips is None or trips.size != 1 or int(trips.reshape(())) < 1:
                return False
        if cond is not None:
            c = _constant(cond)
            if c is None or c.size != 1 or not bool(c.reshape(())):
                return False
        return True
    # Scan (opset 9+): the scanned inputs are the last num_scan_inputs
    k = loop.attr("num_scan_inputs", 0)
    opset = loop.graph.opset("") if loop.graph is not None else None
    if not isinstance(k, int) or k < 1 or opset is None or opset < 9:
        return False
    first = loop.inputs[len(loop.inputs) - k]
    shape = first.shape if first is not None else None
    axes = loop.attr("scan_input_axes") or [0]
    if shape is None or not isinstance(axes, list):
        return False
    axis = axes[0] + len(shape) if axes[0] < 0 else axes[0]
    if not 0 <= axis < len(shape):
        return False
    n = shape[axis]
    return isinstance(n, int) and n >= 1


def _constant(v: Value) -> np.ndarray | None:
    """The value of a constant (initializer or ``Constant`` node), else None."""
    if v.const is not None:
        return v.const.numpy()
    p = v.producer
    if p is None or p.op_type != "Constant" or p.domain != "":
        return None
    t = p.attr("value")
    if t is not None and hasattr(t, "numpy"):
        arr: np.ndarray = t.numpy()
        return arr
    for key in ("value_int", "value_float"):
        x = p.attr(key)
        if x is not None:
            return np.asarray(x)
    return None
