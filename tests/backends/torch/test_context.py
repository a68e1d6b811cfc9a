"""What a lowering sees (neffkit/backends/torch/context.py): the opset of the node's domain,
constants known when lowering, fresh buffer names, values read from enclosing graphs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
import torch
import torch.fx as fx

from neffkit.backends.torch.context import LoweringContext, free_values, read_value
from neffkit.backends.torch.lowering import lower_graph
from neffkit.errors import BackendError
from neffkit.frontends.onnx import load

_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) <float[2] w = {1, 2}> {
    c = Constant<value = float[2] {3, 4}>()
    a = Add(x, w)
    y = Mul(a, c)
}
"""


def _ctx(text: str = _MODEL) -> LoweringContext:
    graph = load(onnx.parser.parse_model(text))
    return LoweringContext(fx.Graph(), torch.nn.Module(), graph, lower_graph)


def test_constants_known_when_lowering() -> None:
    ctx = _ctx()
    add, mul = [n for n in ctx.graph if n.op_type != "Constant"]
    ctx.node = mul
    np.testing.assert_array_equal(ctx.input_constant(1), [3, 4])  # a Constant node
    assert ctx.input_constant(0) is None  # computed at run time
    assert ctx.input_constant(5) is None  # no such input
    ctx.node = add
    np.testing.assert_array_equal(ctx.input_constant(1), [1, 2])  # an initializer
    assert ctx.constant(None) is None


def test_opset_is_the_node_domain_s() -> None:
    ctx = _ctx()
    ctx.node = next(iter(ctx.graph))
    assert ctx.opset == 17


def test_buffer_names_are_fresh_and_cached_per_value() -> None:
    ctx = _ctx()
    first = ctx.tensor(np.zeros(2, np.float32), "w")
    second = ctx.tensor(np.zeros(2, np.float32), "w")
    assert first.target == "w" and second.target == "w_2"
    init = [v for n in ctx.graph for v in n.inputs if v is not None and v.const is not None]
    assert ctx.buffer_for(init[0]) is ctx.buffer_for(init[0])


def test_a_value_read_before_it_is_defined_is_an_error() -> None:
    ctx = _ctx()
    y = ctx.graph.outputs[0]
    with pytest.raises(BackendError, match="read before it is defined"):
        read_value(y, {}, ctx)


def test_free_values_are_the_outer_values_a_subgraph_reads() -> None:
    graph = load(
        onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (bool c, float[2] x, float[2] k) => (float[2] y) {
            y = If (c) <
                then_branch = t () => (float[2] o) { o = Add(x, k) },
                else_branch = e () => (float[2] o2) { o2 = Identity(x) }
            >
        }""")
    )
    node = next(iter(graph))
    then = node.attributes["then_branch"].value
    assert [v.name for v in free_values(then)] == ["x", "k"]
