"""Lowering a graph to a GraphModule (neffkit/backends/torch/lowering.py): ops of many families in
one module script and agree with eager torch and the ONNX reference; what a lowering refuses or
lacks is one BackendError naming the node; subgraphs capture outer values."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
import torch
from onnx.reference import ReferenceEvaluator

import neffkit.backends.torch as tb
from neffkit.backends.torch.context import free_values
from neffkit.backends.torch.lowering import lower_graph
from neffkit.errors import BackendError
from neffkit.frontends.onnx import load

_SCRIPT_MODEL = """
<ir_version: 9, opset_import: ["" : 20]>
g (float[2,3,4] x, int32[2,3,4] i, uint64[4] u, int64[1] axes) => (
    float[2,3,4] y, int32[2,3,4] q, bool[4] lt, uint64[4] d, int32[2,4] s, float[2,2,4] tv,
    int64[2,2,4] ti, float[2,3,4] w, float16[2,3,4] h, float[2,1,4] rm, int32[2,3,4] cs,
    int64[2,1,4] am, int64[2,3,4] sh
) {
    lo = Constant <value = float {-1.0}> ()
    hi = Constant <value = float {1.0}> ()
    seven = Constant <value = int32 {7}> ()
    k = Constant <value = int64[1] {2}> ()
    zero = Constant <value = float {0.0}> ()
    one = Constant <value = int64 {1}> ()
    x2 = Add (x, x)
    c = Clip (x2, lo, hi)
    y = Softmax <axis = 1> (c)
    ai = Abs (i)
    ai7 = Add (ai, seven)
    q = Div (i, ai7)
    um = Max (u, u)
    lt = Less (u, um)
    uu = Add (u, u)
    d = Div (u, uu)
    s = ReduceSum <keepdims = 0> (i, axes)
    tv, ti = TopK <axis = 1> (x, k)
    pos = Greater (x, zero)
    nx = Neg (x)
    w = Where (pos, x, nx)
    g = Gelu <approximate = "tanh"> (x)
    h = Cast <to = 10> (g)
    rm = ReduceMax (x, axes)
    cs = CumSum <exclusive = 1, reverse = 1> (i, one)
    rx = Round (x)
    am = ArgMax <axis = 1, select_last_index = 1> (rx)
    i64 = Cast <to = 7> (i)
    ai64 = Abs (i64)
    sh = BitShift <direction = "LEFT"> (i64, ai64)
}
"""


def test_scripted_module_matches_eager() -> None:
    graph = load(onnx.parser.parse_model(_SCRIPT_MODEL))
    gm = tb.compile(graph)
    scripted = torch.jit.script(gm)
    rng = np.random.default_rng(0)
    feed = [
        rng.standard_normal((2, 3, 4)).astype(np.float32) * 3,
        rng.integers(-50, 50, (2, 3, 4)).astype(np.int32),
        np.array([1, 2**63 + 5, 2**64 - 1, 7], dtype=np.uint64),
        np.array([1], dtype=np.int64),
    ]
    eager = tb.run(graph, feed, module=gm)
    script = tb.run(graph, feed, module=scripted)
    ref = ReferenceEvaluator(onnx.parser.parse_model(_SCRIPT_MODEL)).run(
        None, dict(zip(["x", "i", "u", "axes"], feed))
    )
    for e, s, r in zip(eager, script, ref):
        assert e.dtype == s.dtype == r.dtype
        np.testing.assert_array_equal(e, s)
        np.testing.assert_allclose(e.astype(np.float64), r.astype(np.float64), rtol=1e-3, atol=1e-6)


def test_an_op_without_lowering_names_the_node_and_op() -> None:
    model = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>\n'
        "g (float[2] x) => (float[2] y) { y = com.example.Frobnicate(x) }"
    )
    with pytest.raises(BackendError, match="no lowering for op 'com.example::Frobnicate'"):
        lower_graph(load(model))


def test_a_refused_node_is_one_backend_error() -> None:
    # Dropout in training mode with a constant ratio > 0 is random: the lowering refuses it
    model = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 17]>\n'
        "g (float[2] x) => (float[2] y) { r = Constant<value = float {0.5}>()\n"
        " t = Constant<value = bool {1}>()\n y = Dropout(x, r, t) }"
    )
    with pytest.raises(BackendError, match="not supported by the torch backend"):
        lower_graph(load(model))


def test_a_loop_body_captures_the_outer_values_it_reads() -> None:
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x, float[2] k) => (float[2] y) {
            n = Constant<value = int64 {3}>()
            c = Constant<value = bool {1}>()
            y = Loop <body = b (int64 i, bool ci, float[2] acc)
                             => (bool co, float[2] out) {
                co = Identity(ci)
                out = Add(acc, k)
            }> (n, c, x)
        }""")
    graph = load(model)
    loop = [n for n in graph if n.op_type == "Loop"][0]
    body = loop.attributes["body"].value
    assert [v.name for v in free_values(body)] == ["k"]
    gm = lower_graph(graph)
    x, k = np.ones(2, np.float32), np.full(2, 2.0, np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x, "k": k})[0]
    np.testing.assert_allclose(tb.run(graph, [x, k], module=gm)[0], want)
    np.testing.assert_allclose(tb.run(graph, [x, k], module=torch.jit.script(gm))[0], want)
