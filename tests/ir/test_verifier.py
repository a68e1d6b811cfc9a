"""The verifier catches each broken invariant and names the node."""

from __future__ import annotations

import pytest
from onnx import TensorProto

from neffkit.errors import VerificationError
from neffkit.ir import Graph, Node, TensorType, Value
from neffkit.ir.text import parse
from neffkit.ir.verifier import verify


def _graph() -> tuple[Graph, Value, Node]:
    g = Graph()
    x = g.add_input(Value("x", TensorType(TensorProto.FLOAT, [2])))
    a = g.append(Node("Relu", [x], name="a"))
    g.add_output(a.outputs[0])
    return g, x, a


def test_valid_graph_passes() -> None:
    g, _, _ = _graph()
    verify(g)


def test_use_before_definition_is_reported_with_node_and_op() -> None:
    g, x, a = _graph()
    b = Node("Neg", [a.outputs[0]], name="early")
    g.insert_before(a, b)
    with pytest.raises(VerificationError, match=r"node 'early' \(Neg\).*before it is defined"):
        verify(g)


def test_value_from_another_graph_is_out_of_scope() -> None:
    g, x, a = _graph()
    stray = Value("stray")
    Node("Relu", [], outputs=[stray])  # produced by a node that is in no graph
    g.append(Node("Add", [x, stray], name="bad"))
    with pytest.raises(VerificationError, match="not in scope"):
        verify(g)


def test_stale_use_list_entry_is_caught() -> None:
    g, x, a = _graph()
    x._uses[(a, 5)] = None  # simulate a pass that edited a private list
    with pytest.raises(VerificationError, match="stale use"):
        x._uses.pop((a, 5))
        a.outputs[0]._uses[(a, 3)] = None
        verify(g)


def test_missing_use_is_caught() -> None:
    g, x, a = _graph()
    x._uses.clear()
    with pytest.raises(VerificationError, match="missing from its use-list"):
        verify(g)


def test_removed_user_is_caught() -> None:
    g, x, a = _graph()
    b = g.append(Node("Neg", [a.outputs[0]], name="b"))
    g.remove(b)
    a.outputs[0]._uses[(b, 0)] = None
    b._inputs = [a.outputs[0]]
    with pytest.raises(VerificationError, match="removed"):
        verify(g)


def test_undefined_graph_output_is_caught() -> None:
    g, x, a = _graph()
    stray = Value("stray")
    Node("Relu", [], outputs=[stray])
    g.add_output(stray)
    with pytest.raises(VerificationError, match="output 1 'stray' is not defined"):
        verify(g)


def test_initializer_type_must_match_its_declared_type() -> None:
    import numpy as np

    from neffkit.ir import Tensor

    g, x, a = _graph()
    w = Value("w", TensorType(TensorProto.FLOAT, [3]), const=Tensor(np.ones(2, np.float32)))
    g.add_initializer(w)
    with pytest.raises(VerificationError, match="declared with shape"):
        verify(g)


def test_subgraph_may_read_outer_values_defined_before_its_node_only() -> None:
    g = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        m (bool c, float[2] x) => (float[2] y) {
            t = Relu(x)
            y = If(c) <then_branch = g1 () => (float[2] a) { a = Neg(t) },
                       else_branch = g2 () => (float[2] b) { b = Identity(x) }>
        }
        """
    )
    verify(g)
    relu, if_node = list(g)
    # Move the Relu after the If: the then-branch now reads a value defined later.
    g.remove(relu, safe=False)
    g.insert_after(if_node, relu)
    relu.set_inputs(list(relu.inputs))
    with pytest.raises(VerificationError, match=r"\(Neg\).*before it is defined"):
        verify(g)
