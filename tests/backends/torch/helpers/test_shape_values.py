"""Shape computations followed while lowering (neffkit/backends/torch/helpers/shape_values.py) and
the lowerings that read them: sizes reach torch as Python ints (``x.size(1)``, literals), scalar
constants as Python numbers, and no lowered unit reads a shape tensor back at run time; results
agree with the ONNX reference on several sizes, and torch.export / torch.compile take them."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import neffkit.backends.torch as tb
from neffkit.frontends.onnx import load

# Reads of tensors back into Python that torch's compilers cannot guard on.
RUNTIME_READS = ("int_list", "range_dynamic", ".item()", ".tolist()")

_DYNAMIC = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[1,N,8] x) => (int64[N] r, float[1,N,2,4] y, float[N,8] t, float[1,N] z, float[1,N,8] c) {
    zero = Constant <value = int64 {0}> ()
    one = Constant <value = int64 {1}> ()
    axes = Constant <value = int64[1] {0}> ()
    head = Constant <value = int64[1] {1}> ()
    tail = Constant <value = int64[2] {2, 4}> ()
    three = Constant <value = int64[1] {3}> ()
    s = Shape (x)
    n = Gather <axis = 0> (s, one)
    r = Range (zero, n, one)
    nn = Unsqueeze (n, axes)
    shp = Concat <axis = 0> (head, nn, tail)
    y = Reshape (x, shp)
    e = Slice (s, head, three)
    t0 = Expand (x, s)
    t = Reshape (t0, e)
    n2 = Mul (nn, head)
    zs = Concat <axis = 0> (head, n2)
    z = ConstantOfShape <value = float[1] {0.5}> (zs)
    x2 = Concat <axis = 1> (x, x)
    c = Slice (x2, nn, n2, head)
}
"""


def _reference(text: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ReferenceEvaluator(onnx.parser.parse_model(text)).run(None, feeds)


def test_sizes_of_a_dynamic_dim_are_read_as_python_ints() -> None:
    graph = load(onnx.parser.parse_model(_DYNAMIC))
    gm = tb.compile(graph)
    assert not any(r in gm.code for r in RUNTIME_READS), gm.code
    assert "torch.arange(0, size, 1" in gm.code
    for n in (3, 5):
        x = np.random.default_rng(n).standard_normal((1, n, 8)).astype(np.float32)
        want = _reference(_DYNAMIC, {"x": x})
        got = tb.run(graph, [x], module=gm)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)


def test_a_dynamic_dim_exports_compiles_and_scripts_without_data_dependent_guards() -> None:
    gm = tb.compile(load(onnx.parser.parse_model(_DYNAMIC)))
    x = torch.randn(1, 5, 8)
    dim = torch.export.Dim("n", min=2, max=64)
    ep = torch.export.export(gm, (x,), dynamic_shapes=({1: dim},))
    compiled = torch.compile(gm, backend="eager", fullgraph=True, dynamic=True)
    scripted = torch.jit.script(gm)  # neffkit convert's TorchScript keeps the sizes dynamic too
    for n in (3, 6):
        x = torch.randn(1, n, 8)
        want = gm(x)
        for got in (ep.module()(x), compiled(x), scripted(x)):
            for w, g in zip(want, got):
                torch.testing.assert_close(g, w, rtol=0, atol=0)


_STATIC = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[2,3,4] x) => (float[6,4] y, float[2,3,4] w, float[2,3,4] v, int32[2,3,4] q) {
    one = Constant <value = int64[1] {1}> ()
    big = Constant <value = int64[1] {3}> ()
    minus = Constant <value = int64[1] {-1}> ()
    s = Shape (x)
    last = Slice (s, big, big)
    hw = Slice (s, one, big)
    p = ReduceProd <keepdims = 1> (hw)
    shp = Concat <axis = 0> (minus, last)
    y0 = Reshape (x, s)
    y = Flatten <axis = 2> (y0)
    c = Constant <value = float {0.125}> ()
    w = Mul (x, c)
    o = Constant <value = float[1] {1.0}> ()
    v = Sub (o, x)
    xi = Cast <to = 6> (x)
    seven = Constant <value = int32 {7}> ()
    q = Div (xi, seven)
}
"""


def test_static_shapes_become_literals_and_scalar_constants_python_numbers() -> None:
    graph = load(onnx.parser.parse_model(_STATIC))
    gm = tb.compile(graph)
    code = gm.code
    assert not any(r in code for r in RUNTIME_READS), code
    assert "reshape([2, 3, 4])" in code
    assert "torch.tensor(" not in code and "prod" not in code  # dead shape math is gone
    assert "x * 0.125" in code and "1.0 - x" in code
    assert "rounding_mode = 'trunc'" in code  # integer Div keeps C-style truncation
    x = (np.random.default_rng(0).standard_normal((2, 3, 4)) * 20).astype(np.float32)
    want = _reference(_STATIC, {"x": x})
    got = tb.run(graph, [x], module=gm)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)


def test_an_ir3_initializer_input_is_a_constant_of_the_module() -> None:
    # light_* models: the shape of a Reshape is a graph input that has an initializer
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=3)
    gm = tb.compile(load(model))
    assert "x.reshape([1, -1])" in gm.code, gm.code
    x = torch.randn(1, 2, 3)
    torch.testing.assert_close(gm(x)[0], x.reshape(1, 6))


_ATTENTION = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[1,6,2,4] q, float[1,6,2,4] k, float[1,6,2,4] v) => (float[1,2,6,4] o) {
    qt = Transpose <perm = [0, 2, 1, 3]> (q)
    kt = Transpose <perm = [0, 2, 3, 1]> (k)
    vt = Transpose <perm = [0, 2, 1, 3]> (v)
    s = MatMul (qt, kt)
    c = Constant <value = float {2.0}> ()
    d = Div (s, c)
    p = Softmax <axis = -1> (d)
    o = MatMul (p, vt)
}
"""


def test_a_key_transposed_for_matmul_is_permuted_then_transposed() -> None:
    graph = load(onnx.parser.parse_model(_ATTENTION))
    gm = tb.compile(graph)
    assert "k.permute([0, 2, 1, 3])" in gm.code and ".transpose(-2, -1)" in gm.code, gm.code
    assert "/ 2.0" in gm.code
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((1, 6, 2, 4)).astype(np.float32) for n in "qkv"}
    (want,) = _reference(_ATTENTION, feeds)
    (got,) = tb.run(graph, feeds, module=gm)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


_RESIZE = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[1,2,3,3] x) => (float[1,2,6,6] y) {
    s = Shape <end = 2> (x)
    hw = Constant <value = int64[2] {6, 6}> ()
    sizes = Concat <axis = 0> (s, hw)
    y = Resize <mode = "nearest"> (x, , , sizes)
}
"""


def test_resize_sizes_from_a_static_shape_are_literals() -> None:
    graph = load(onnx.parser.parse_model(_RESIZE))
    gm = tb.compile(graph)
    assert not any(r in gm.code for r in RUNTIME_READS), gm.code
    x = np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3)
    (want,) = _reference(_RESIZE, {"x": x})
    (got,) = tb.run(graph, [x], module=gm)
    np.testing.assert_array_equal(got, want)
