"""The networkx view of a graph: edges per producer -> user, cached on the version stamp."""

from __future__ import annotations

from neffkit.ir import Node
from neffkit.ir.analysis import (
    ancestors,
    has_cycle,
    immediate_dominators,
    to_networkx,
    topological_order,
)
from neffkit.ir.text import parse

# x -> a -> (b, c) -> d: a diamond, plus e, which reads only x
_DIAMOND = """
    <ir_version: 8, opset_import: ["" : 17]>
    m (float[2] x) => (float[2] d, float[2] e) {
        a = Relu(x)
        b = Neg(a)
        c = Abs(a)
        d = Add(b, c)
        e = Sigmoid(x)
    }
"""


def _by_op(nodes: object) -> dict[str, Node]:
    return {n.op_type: n for n in nodes}  # type: ignore[attr-defined]


def test_edges_follow_uses_and_carry_the_values() -> None:
    g = parse(_DIAMOND)
    n = _by_op(g)
    view = to_networkx(g)
    assert set(view.edges) == {
        (n["Relu"], n["Neg"]),
        (n["Relu"], n["Abs"]),
        (n["Neg"], n["Add"]),
        (n["Abs"], n["Add"]),
    }
    assert view.edges[n["Relu"], n["Neg"]]["values"] == [n["Relu"].outputs[0]]
    assert set(view.nodes) == set(g)


def test_one_edge_per_node_pair_lists_every_value_along_it() -> None:
    g = parse("""
        <ir_version: 8, opset_import: ["" : 18]>
        m (float[2] x) => (float[1] y) {
            s1, s2 = Split <axis = 0, num_outputs = 2> (x)
            y = Add(s1, s2)
        }
    """)
    split, add = list(g)
    assert to_networkx(g).edges[split, add]["values"] == list(split.outputs)


def test_the_view_is_cached_until_the_graph_changes() -> None:
    g = parse(_DIAMOND)
    first = to_networkx(g)
    assert to_networkx(g) is first
    n = _by_op(g)
    g.append(Node("Relu", [n["Add"].outputs[0]]))
    second = to_networkx(g)
    assert second is not first and len(second) == len(first) + 1


def test_order_cycle_and_ancestors() -> None:
    g = parse(_DIAMOND)
    n = _by_op(g)
    order = topological_order(g)
    assert order.index(n["Relu"]) < order.index(n["Neg"]) < order.index(n["Add"])
    assert not has_cycle(g)
    assert ancestors(g, [n["Add"].outputs[0]]) == {n["Relu"], n["Neg"], n["Abs"], n["Add"]}
    assert ancestors(g, [n["Sigmoid"].outputs[0]]) == {n["Sigmoid"]}
    # a use-def cycle (made by hand: an invalid graph) is found
    n["Relu"].set_input(0, n["Add"].outputs[0])
    assert has_cycle(g)


def test_immediate_dominators_of_the_diamond() -> None:
    g = parse(_DIAMOND)
    n = _by_op(g)
    idom = immediate_dominators(g)
    assert idom[n["Neg"]] is n["Relu"] and idom[n["Abs"]] is n["Relu"]
    assert idom[n["Add"]] is n["Relu"]  # both paths to Add go through Relu
    assert n["Relu"] not in idom and n["Sigmoid"] not in idom  # roots: the virtual entry
