"""``clone_graph`` makes a structural copy that shares only immutable parts, and
``replace_contents`` moves a graph's contents into another graph object in place."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from neffkit.frontends.onnx import load
from neffkit.ir.clone import clone_graph, replace_contents
from neffkit.ir.core import Graph, Node
from neffkit.ir.text import parse, print_body, print_graph
from neffkit.ir.verifier import verify

H = '<ir_version: 8, opset_import: ["" : 17]>'
NESTED = (
    H
    + """m (bool c, float[2] x) => (float[2] y, float[2] t) <float[2] w = {5.0, 6.0}> {
    t = Add(x, w)
    y = If(c) <then_branch = g1 () => (float[2] a) {
                   a = If(c) <then_branch = g3 () => (float[2] p) { p = Mul(t, w) },
                              else_branch = g4 () => (float[2] q) { q = Abs(x) }> },
               else_branch = g2 () => (float[2] b) { b = Relu(t) }>
}"""
)


def _values(g: Graph) -> list:
    out = list(g.inputs) + list(g.initializers.values())
    for node in g.all_nodes():
        out.extend(node.outputs)
    return out


def test_the_clone_prints_the_same_and_verifies() -> None:
    g = parse(NESTED)
    c = clone_graph(g)
    verify(c)
    assert print_graph(c) == print_graph(g)


def test_the_clone_shares_no_node_or_value_but_shares_tensors_and_attributes() -> None:
    g = parse(NESTED)
    c = clone_graph(g)
    assert not {id(v) for v in _values(g)} & {id(v) for v in _values(c)}
    assert not {id(n) for n in g.all_nodes()} & {id(n) for n in c.all_nodes()}
    assert c.initializers["w"].const is g.initializers["w"].const  # immutable: shared
    add_g, if_g = list(g)
    add_c, if_c = list(c)
    assert add_c.inputs[1] is c.initializers["w"]
    assert if_c.attributes["then_branch"] is not if_g.attributes["then_branch"]


def test_subgraphs_point_at_the_cloned_holder_and_read_cloned_outer_values() -> None:
    g = parse(NESTED)
    c = clone_graph(g)
    t = c.outputs[1]
    _, if_node = list(c)
    then_branch, else_branch = if_node.subgraphs
    assert then_branch.parent is if_node and else_branch.parent is if_node
    (inner_if,) = list(then_branch)
    (mul,) = list(inner_if.subgraphs[0])
    assert mul.inputs == (t, c.initializers["w"])
    # the outer value knows its reader inside the cloned body, not in the original
    assert mul in t.users and all(n.graph.root is c for n in t.users)


def test_changing_the_clone_leaves_the_original_alone() -> None:
    g = parse(NESTED)
    before = print_graph(g)
    c = clone_graph(g)
    add, _ = list(c)
    neg = c.insert_after(add, Node("Neg", [add.outputs[0]], name="neg"))
    add.outputs[0].replace_all_uses_with(neg.outputs[0])
    neg.set_input(0, add.outputs[0])
    c.meta.metadata_props["k"] = "v"
    c.meta.functions.append("f")
    verify(c)
    assert print_graph(g) == before
    assert g.meta.metadata_props == {} and g.meta.functions == []


def test_model_metadata_and_doc_strings_are_copied() -> None:
    g = parse(NESTED)
    g.meta.producer_name = "me"
    g.meta.metadata_props["a"] = "b"
    g.doc_string = "graph doc"
    next(iter(g)).doc_string = "node doc"
    c = clone_graph(g)
    assert (c.meta.producer_name, c.meta.metadata_props) == ("me", {"a": "b"})
    assert c.doc_string == "graph doc" and next(iter(c)).doc_string == "node doc"
    assert c.opset_imports == g.opset_imports


def test_ir_v3_input_order_is_kept() -> None:
    # an IR v3 model lists initializers among its inputs, interleaved with the others
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "v3",
        [
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)
    onnx.checker.check_model(model)
    g = load(model)
    c = clone_graph(g)
    assert [v.name for v in c.inputs] == ["w", "x"]
    assert c.inputs[0] is c.initializers["w"]
    verify(c)


def test_replace_contents_moves_everything_into_the_kept_object() -> None:
    target = parse(H + "m (float[2] x) => (float[2] y) { y = Neg(x) }")
    source = parse(NESTED)
    expected = print_graph(source)
    replace_contents(target, source)
    verify(target)
    assert print_graph(target) == expected
    assert all(n.graph is target for n in target)
    assert all(v.graph is target for v in target.inputs)
    assert all(v.graph is target for v in target.initializers.values())
    assert len(list(source)) == 0 and source.outputs == ()


def test_replace_contents_restores_a_snapshot() -> None:
    g = parse(NESTED)
    before = print_body(g)
    snapshot = clone_graph(g)
    for node in reversed(list(g)):
        for v in node.outputs:
            if v.is_graph_output:
                g.replace_output(v, g.inputs[1])
        g.remove(node, safe=False)
    assert print_body(g) != before
    replace_contents(g, snapshot)
    verify(g)
    assert print_body(g) == before


def test_replace_contents_gives_a_stamp_no_later_mutation_can_repeat() -> None:
    target = parse(H + "m (float[2] x) => (float[2] y) { y = Neg(x) }")
    source = parse(NESTED)
    # target changed last: the clock's next tick would be target.version + 1
    target.append(Node("Abs", [target.inputs[0]], name="a"))
    replace_contents(target, source)
    assert target.cached("nodes", lambda g: len(list(g))) == 2
    target.append(Node("Abs", [target.inputs[1]], name="b"))
    # a cache keyed on the stamp must not survive a change
    assert target.cached("nodes", lambda g: len(list(g))) == 3
