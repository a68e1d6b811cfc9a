"""The IR's mutation API keeps use-lists, node order and outputs right."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from onnx import AttributeProto, TensorProto

from neffkit.errors import VerificationError
from neffkit.ir import Attr, Graph, Node, Tensor, TensorType, Value
from neffkit.ir.text import parse
from neffkit.ir.verifier import verify


def _chain() -> tuple[Graph, Value, Node, Node]:
    g = Graph("g")
    x = g.add_input(Value("x", TensorType(TensorProto.FLOAT, [2, "n"])))
    a = g.append(Node("Relu", [x], name="a"))
    b = g.append(Node("Neg", [a.outputs[0]], name="b"))
    g.add_output(b.outputs[0])
    return g, x, a, b


def test_uses_are_recorded_in_order_and_per_input_slot() -> None:
    g, x, a, b = _chain()
    add = g.append(Node("Add", [x, x], name="add"))
    assert x.uses == [(a, 0), (add, 0), (add, 1)]
    assert x.users == [a, add]
    add.set_input(1, a.outputs[0])
    assert x.uses == [(a, 0), (add, 0)]
    assert a.outputs[0].uses == [(b, 0), (add, 1)]
    verify(g)


def test_replace_all_uses_with_updates_node_inputs_and_graph_outputs() -> None:
    g, x, a, b = _chain()
    c = g.append(Node("Abs", [a.outputs[0]], name="c"))
    b.outputs[0].replace_all_uses_with(c.outputs[0])
    assert g.outputs == (c.outputs[0],)
    assert c.outputs[0].is_graph_output and not b.outputs[0].is_graph_output
    g.remove(b)
    verify(g)
    assert [n.name for n in g] == ["a", "c"]


def test_remove_refuses_a_node_whose_output_is_still_used() -> None:
    g, x, a, b = _chain()
    with pytest.raises(VerificationError, match="still has 1 uses"):
        g.remove(a)
    with pytest.raises(VerificationError, match="graph output"):
        g.remove(b)


def test_removing_nodes_while_iterating_is_safe() -> None:
    g = Graph()
    x = g.add_input(Value("x", TensorType(TensorProto.FLOAT, [1])))
    for i in range(10):
        g.append(Node("Relu", [x], name=f"n{i}"))
    seen = []
    for node in g:
        seen.append(node.name)
        g.remove(node)
    assert seen == [f"n{i}" for i in range(10)]
    assert len(g) == 0 and x.num_uses == 0
    verify(g)


def test_insert_before_and_after_keep_order() -> None:
    g, x, a, b = _chain()
    first = g.insert_before(a, Node("Identity", [x], name="first"))
    mid = g.insert_after(a, Node("Identity", [x], name="mid"))
    assert [n.name for n in g] == ["first", "a", "mid", "b"]
    assert [n.name for n in reversed(g)] == ["b", "mid", "a", "first"]
    assert first.next is a and mid.prev is a
    verify(g)


def test_a_node_cannot_join_two_graphs_and_a_value_has_one_producer() -> None:
    g, x, a, b = _chain()
    other = Graph()
    with pytest.raises(VerificationError, match="already belongs"):
        other.append(a)
    with pytest.raises(VerificationError, match="already has a producer"):
        Node("Relu", [x], outputs=[a.outputs[0]])


def test_version_counter_changes_on_every_mutation_and_caches_follow_it() -> None:
    g, x, a, b = _chain()
    calls = []
    build = lambda graph: calls.append(1) or len(graph)  # noqa: E731
    assert g.cached("n", build) == 2
    assert g.cached("n", build) == 2
    assert len(calls) == 1
    g.append(Node("Relu", [x]))
    assert g.cached("n", build) == 3
    assert len(calls) == 2


def test_subgraph_reads_of_outer_values_are_real_uses() -> None:
    g = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        m (bool c, float[2] x) => (float[2] y) {
            t = Relu(x)
            y = If(c) <then_branch = g1 () => (float[2] a) { a = Neg(t) },
                       else_branch = g2 () => (float[2] b) { b = Identity(t) }>
        }
        """
    )
    relu = next(iter(g))
    t = relu.outputs[0]
    users = [n.op_type for n in t.users]
    assert users == ["Neg", "Identity"]
    assert all(n.graph is not g for n in t.users)
    with pytest.raises(VerificationError):
        g.remove(relu)
    verify(g)
    assert sum(1 for _ in g.all_nodes()) == 4
    assert len(list(g.all_graphs())) == 3


def test_initializers_and_inputs() -> None:
    g = Graph()
    w = g.add_initializer(Value("w", const=Tensor(np.ones((2, 2), np.float32))))
    assert w.is_initializer and w.shape == (2, 2) and w.dtype == TensorProto.FLOAT
    w2 = g.add_initializer(Value("w", const=Tensor(np.zeros(3, np.float32))))
    assert w2.name != "w" and set(g.initializers) == {"w", w2.name}
    g.remove_initializer(w2)
    assert set(g.initializers) == {"w"}
    n = g.append(Node("Relu", [w]))
    g.add_output(n.outputs[0])
    with pytest.raises(VerificationError):
        g.remove_initializer(w)
    verify(g)


def test_set_attr_takes_numpy_values_and_refuses_others_clearly() -> None:
    n = Node("Transpose", [])
    n.set_attr("axis", np.int64(1))
    n.set_attr("perm", [np.int64(1), 0])
    n.set_attr("alpha", np.float32(0.5))
    n.set_attr("value", np.ones(3, np.float32))
    assert (n.attr("axis"), n.attr("perm"), n.attr("alpha")) == (1, [1, 0], 0.5)
    assert type(n.attr("axis")) is int and isinstance(n.attr("value"), Tensor)
    with pytest.raises(VerificationError, match="attribute 'bad'"):
        n.set_attr("bad", object())


def test_fresh_initializer_names_are_deterministic_and_skip_taken_ones() -> None:
    g = Graph()
    t = Tensor(np.ones(1, np.float32))
    g.add_initializer(Value("w_2", const=t))
    names = [g.add_initializer(Value("w", const=t)).name for _ in range(4)]
    assert names == ["w", "w_1", "w_3", "w_4"]
    assert g.add_initializer(Value("", const=t)).name == "const_1"


def test_adding_100k_initializers_with_one_hint_is_linear() -> None:
    # Each fresh name used to probe w_1, w_2, ... from the start: 100k adds took minutes.
    import time

    g = Graph()
    t = Tensor(np.ones(1, np.float32))
    start = time.perf_counter()
    for _ in range(100_000):
        g.add_initializer(Value("w", const=t))
    elapsed = time.perf_counter() - start
    assert len(g.initializers) == 100_000 and "w_99999" in g.initializers
    assert elapsed < 5.0, f"100k add_initializer calls took {elapsed:.1f}s"


def _loop_with_body() -> tuple[Graph, Node, Graph]:
    body = Graph("body")
    body.add_output(body.add_input(Value("i", TensorType(TensorProto.INT64, []))))
    g, x, a, b = _chain()
    return g, a, body


def _attr(name: str, value: float) -> Attr:
    return Attr(name, AttributeProto.FLOAT, value)


def _with_initializer(g: Graph) -> Value:
    return g.add_initializer(Value("w", const=Tensor(np.ones(2, np.float32))))


Mutation = Callable[[Graph, Value, Node, Node], Callable[[], object]]

# each entry prepares the chain graph (x -> a -> b) and returns the one mutation to check
_MUTATIONS: dict[str, Mutation] = {
    "value name": lambda g, x, a, b: lambda: setattr(a.outputs[0], "name", "renamed"),
    "value type": lambda g, x, a, b: (
        lambda: setattr(a.outputs[0], "type", TensorType(TensorProto.FLOAT, [2, 3]))
    ),
    "input type": lambda g, x, a, b: (
        lambda: setattr(x, "type", TensorType(TensorProto.FLOAT, [2, 3]))
    ),
    "node name": lambda g, x, a, b: lambda: setattr(a, "name", "other"),
    "node doc_string": lambda g, x, a, b: lambda: setattr(a, "doc_string", "why"),
    "node overload": lambda g, x, a, b: lambda: setattr(a, "overload", "o"),
    "set_attr": lambda g, x, a, b: lambda: a.set_attr("alpha", 0.5),
    "put_attr": lambda g, x, a, b: lambda: a.put_attr(_attr("alpha", 1.0)),
    "remove_attr": lambda g, x, a, b: (
        a.set_attr("k", 1.0),
        lambda: a.remove_attr("k"),
    )[1],
    "attributes replaced": lambda g, x, a, b: lambda: setattr(a, "attributes", {}),
    "set_input": lambda g, x, a, b: lambda: b.set_input(0, x),
    "append_input": lambda g, x, a, b: lambda: b.append_input(x),
    "set_inputs": lambda g, x, a, b: lambda: b.set_inputs([x]),
    "replace_all_uses_with": lambda g, x, a, b: lambda: a.outputs[0].replace_all_uses_with(x),
    "add_initializer": lambda g, x, a, b: lambda: _with_initializer(g),
    "initializer tensor": lambda g, x, a, b: (
        lambda w: lambda: setattr(w, "const", Tensor(np.zeros(2, np.float32)))
    )(_with_initializer(g)),
    "remove_initializer": lambda g, x, a, b: (lambda w: lambda: g.remove_initializer(w))(
        _with_initializer(g)
    ),
    "add_input": lambda g, x, a, b: lambda: g.add_input(Value("y")),
    "add_output": lambda g, x, a, b: lambda: g.add_output(x),
    "graph name": lambda g, x, a, b: lambda: setattr(g, "name", "renamed"),
    "graph doc_string": lambda g, x, a, b: lambda: setattr(g, "doc_string", "why"),
    "append node": lambda g, x, a, b: lambda: g.append(Node("Abs", [x])),
    "remove node": lambda g, x, a, b: lambda: g.remove(b, safe=False),
}


@pytest.mark.parametrize("kind", sorted(_MUTATIONS))
def test_every_kind_of_mutation_changes_the_stamp(kind: str) -> None:
    g, x, a, b = _chain()
    mutate = _MUTATIONS[kind](g, x, a, b)
    before = g.version
    mutate()
    assert g.version > before, kind


def test_a_subgraph_mutation_changes_the_total_stamp_only_through_the_subgraph() -> None:
    from neffkit.passes.manager import total_version

    g, a, body = _loop_with_body()
    a.set_attr("body", body)
    assert body.parent is a and a in g.holders
    before = total_version(g)
    body.outputs[0].type = TensorType(TensorProto.INT64, [1])
    assert total_version(g) > before


def test_attributes_holding_graphs_are_adopted_however_they_are_set() -> None:
    g, a, body = _loop_with_body()
    a.put_attr(Attr("body", AttributeProto.GRAPH, body))
    assert body.parent is a and a in g.holders
    assert a.remove_attr("body") is not None and a.remove_attr("body") is None
    assert a not in g.holders
    a.attributes = {"body": Attr("body", AttributeProto.GRAPH, body)}
    assert a in g.holders
    verify(g)


def test_the_attributes_mapping_is_read_only() -> None:
    g, x, a, b = _chain()
    a.set_attr("k", 1)
    assert dict(a.attributes) == {"k": a.attributes["k"]} and a.attr("k") == 1
    with pytest.raises(TypeError):
        a.attributes["k"] = _attr("k", 2.0)  # type: ignore[index]


def test_restore_builds_the_same_node_as_the_constructor() -> None:
    g, x, a, b = _chain()
    t = TensorType(TensorProto.FLOAT, [2])
    n = Node.restore("Add", "ai.onnx", "n", [x, None], {"k": Attr("k", 2, 3)}, [("y", t)])
    g.append(n)
    assert n.domain == "" and n.inputs == (x, None) and n.attr("k") == 3
    (y,) = n.outputs
    assert (y.name, y.type, y.producer, y.index, y.const) == ("y", t, n, 0, None)
    assert x.has_use(n, 0) and not x.has_use(n, 1) and not y.is_used
    g.add_output(y)
    assert y.is_used and y.is_output_of(g)
    verify(g)


def test_read_only_views_follow_the_graph() -> None:
    g, x, a, b = _chain()
    assert g.first is a and g.last is b and a.next is b and b.prev is a
    assert list(x.iter_uses()) == [(a, 0)]
    assert not b.outputs[0].num_uses and b.outputs[0].is_used  # a graph output
    g.remove(b, safe=False)
    assert g.last is a and not list(g.holders)
