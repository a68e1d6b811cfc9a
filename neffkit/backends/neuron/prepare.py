"""Rewrites the Neuron backend makes on its own copy of a graph before lowering its units:
what keeps a compiled unit one static graph that holds its weights.

* ``selects_to_where``: an ``If`` that only picks one of two values of one static type is a
  ``Where`` (exact), so that it stays inside a unit (a trace would fix one branch)::

      y = If (c) <then = {Identity (a)}, else = {Identity (b)}>   ->   y = Where (c, a, b)

* ``own_weights``: a partition graph reads the outer initializers as its own, so the unit does
  not take weights as call arguments.
"""

from __future__ import annotations

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.types import TensorType
from neffkit.ir.units import GATE_MARK, PARTITION_MARK

__all__ = ["own_weights", "selects_to_where"]


def own_weights(graph: Graph) -> int:
    """Gives each partition graph its own initializers for the outer ones it reads: a branch
    gets outer values as call arguments, and a compiled unit must hold its weights, not take
    them as inputs on every call. The tensors are shared, not copied. Returns how many."""
    done = 0
    for g in list(graph.all_graphs()):
        if g is graph or not g.doc_string.startswith(PARTITION_MARK):
            continue
        inner = set(g.all_graphs())
        local: dict[Value, Value] = {}
        for node in _own_nodes(g):
            for i, v in enumerate(node.inputs):
                if v is None or v.graph in inner or not _is_initializer(v):
                    continue
                if v not in local:
                    local[v] = g.add_initializer(Value(v.name, v.type, const=v.const))
                    done += 1
                node.set_input(i, local[v])
    return done


def _own_nodes(partition: Graph) -> list[Node]:
    """The nodes of a partition and of its subgraphs, stopping at the partitions nested in it
    (each is walked on its own: walking them here too would cost partitions x nodes)."""
    nodes: list[Node] = []
    stack = [partition]
    while stack:
        g = stack.pop()
        for node in g:
            nodes.append(node)
            stack.extend(
                sub for sub in node.subgraphs if not sub.doc_string.startswith(PARTITION_MARK)
            )
    return nodes


def _is_initializer(v: Value) -> bool:
    g = v.graph
    return v.const is not None and v.producer is None and not (g is not None and v in g.inputs)


def selects_to_where(graph: Graph) -> int:
    """``If(c) {a...} {b...}`` -> ``Where(c, a, b)`` per output when each branch only hands
    on outer values (directly or through one ``Identity`` each), ``c`` is a scalar and every
    pair has one static type (exact; a trace would fix one branch). Returns how many Ifs."""
    done = 0
    for g in list(graph.all_graphs()):
        for node in list(g):
            picked = _picks(node)
            if picked is None:
                continue
            for out, (a, b) in zip(node.outputs, picked, strict=True):
                where = Node("Where", [node.inputs[0], a, b], num_outputs=1, name=node.name)
                where.outputs[0].type = out.type
                where.outputs[0].name = out.name
                g.insert_before(node, where)
                out.replace_all_uses_with(where.outputs[0])
            g.remove(node)
            done += 1
    return done


def _picks(node: Node) -> list[tuple[Value, Value]] | None:
    """The pairs of values an ``If`` picks between, when that is all it does."""
    if node.op_type != "If" or node.domain or node.doc_string == GATE_MARK:
        return None
    if not node.outputs or not node.inputs or node.inputs[0] is None:
        return None
    cond = node.inputs[0].type
    if not isinstance(cond, TensorType) or cond.shape != ():
        return None
    sides = [_handed_on(node.attr(key)) for key in ("then_branch", "else_branch")]
    if sides[0] is None or sides[1] is None or len(sides[0]) != len(node.outputs):
        return None
    pairs = list(zip(sides[0], sides[1], strict=True))
    for out, (a, b) in zip(node.outputs, pairs, strict=True):
        t = out.type
        # an untyped value takes the If's type: a branch must return what the If declares
        if not (isinstance(t, TensorType) and t.is_static and a.type in (t, None)):
            return None
        if b.type not in (t, None):
            return None
    return pairs


def _handed_on(branch: Graph) -> list[Value] | None:
    """The outer values a branch returns, when it computes nothing (at most an ``Identity``
    per output); else None."""
    found: list[Value] = []
    for v in branch.outputs:
        p = v.producer
        if p is not None and p.graph is branch:
            if p.op_type != "Identity" or p.domain or p.inputs[0] is None:
                return None
            v = p.inputs[0]
        if v.graph is branch:  # computed or held inside
            return None
        found.append(v)
    if any(n.op_type != "Identity" or n.domain for n in branch):
        return None
    return found
