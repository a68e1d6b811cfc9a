"""neffkit.run / as_graph / as_model_proto / random_inputs on small models built in the test."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import TensorProto, helper

import neffkit
from neffkit.api import as_graph, as_model_proto, check_inputs, random_inputs, run
from neffkit.errors import BackendError, NeffkitError
from neffkit.ir import Graph
from neffkit.testing.text import model_text

MODEL = model_text("""
agraph (float[2,3] x, float[3,4] w) => (float[2,4] y, float[2,3] z) {
    m = MatMul(x, w)
    y = Relu(m)
    c = Constant<value = float[3] {1.0, 2.0, 3.0}>()
    s = Add(x, c)
    z = Mul(s, x)
}
""", opset=18)


def _model() -> onnx.ModelProto:
    return onnx.parser.parse_model(MODEL)


def _inputs() -> dict[str, np.ndarray]:
    return random_inputs(_model(), seed=1)


def _expected(x: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
    return [np.maximum(x @ w, 0), (x + np.array([1, 2, 3], np.float32)) * x]


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(_model(), path)
    return path


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("form", ["path", "proto", "graph"])
@pytest.mark.parametrize("as_dict", [True, False])
def test_run_every_model_form_and_backend(model_path, backend, form, as_dict) -> None:
    model = {"path": model_path, "proto": _model(), "graph": neffkit.load(model_path)}[form]
    feeds = _inputs()
    got = run(model, feeds if as_dict else [feeds["x"], feeds["w"]], backend)
    want = _expected(feeds["x"], feeds["w"])
    assert len(got) == 2
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_top_level_run_is_the_api_run(model_path) -> None:
    feeds = _inputs()
    got = neffkit.run(str(model_path), feeds, backend="torch", device="cpu")
    np.testing.assert_allclose(got[0], _expected(**feeds)[0], rtol=1e-5, atol=1e-6)


def test_ir3_initializer_inputs_are_not_runtime_inputs() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    init = helper.make_tensor("w", TensorProto.FLOAT, [2], [10.0, 20.0])
    g = helper.make_graph([helper.make_node("Add", ["w", "x"], ["y"])], "g", [w, x], [y], [init])
    m = helper.make_model(g, ir_version=3, opset_imports=[helper.make_opsetid("", 8)])
    graph = as_graph(m)
    assert list(random_inputs(graph)) == ["x"]
    ones = np.ones(2, np.float32)
    for backend in ("torch", "onnxruntime"):
        np.testing.assert_array_equal(run(m, [ones], backend)[0], [11.0, 21.0])
        np.testing.assert_array_equal(run(m, {"x": ones}, backend)[0], [11.0, 21.0])


def test_as_graph_and_as_model_proto(model_path) -> None:
    g = as_graph(model_path)
    assert isinstance(g, Graph) and as_graph(g) is g
    proto = _model()
    assert as_model_proto(proto) is proto
    from_graph = as_model_proto(g)
    onnx.checker.check_model(from_graph)
    assert [o.name for o in from_graph.graph.output] == ["y", "z"]
    assert isinstance(as_model_proto(str(model_path)), onnx.ModelProto)
    with pytest.raises(NeffkitError, match="expected a model path"):
        as_graph(42)  # type: ignore[arg-type]


def test_inputs_that_do_not_fit_are_clear_errors(model_path) -> None:
    feeds = _inputs()
    with pytest.raises(BackendError, match=r"input 'x' expects float\[2,3\], got float64"):
        run(model_path, {**feeds, "x": feeds["x"].astype(np.float64)}, "onnxruntime")
    with pytest.raises(BackendError, match=r"input 'w' expects shape float\[3,4\], got \[4, 3\]"):
        run(model_path, {**feeds, "w": feeds["w"].T.copy()}, "torch")
    with pytest.raises(BackendError, match="missing w"):
        run(model_path, {"x": feeds["x"]}, "torch")
    with pytest.raises(BackendError, match="takes 2 inputs"):
        run(model_path, [feeds["x"]], "onnxruntime")
    with pytest.raises(NeffkitError, match="unknown backend 'tvm'"):
        run(model_path, feeds, "tvm")
    check_inputs(as_graph(model_path), feeds)  # fits: no error


def test_backend_errors_name_the_file_node_and_op(tmp_path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    node = helper.make_node("Frobnicate", ["x"], ["y"], name="frob1", domain="com.example")
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)]
    path = tmp_path / "custom.onnx"
    onnx.save(
        helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets), path
    )
    with pytest.raises(BackendError) as info:
        run(path, [np.zeros(2, np.float32)], "torch")
    msg = str(info.value)
    assert msg.startswith(str(path)) and "frob1" in msg and "Frobnicate" in msg


# -- random inputs ----------------------------------------------------------------------------

TYPES = model_text("""
agraph (float[batch,3] f, float16[2] h, double[unk] d, bfloat16[2] b, int64[4] ids,
        int32[1,5] attention_mask, bool[2,2] flag, uint8[3] u) => (float[batch,3] y) {
    y = Identity(f)
}
""", opset=18)


def test_random_inputs_follow_the_declared_types() -> None:
    graph = as_graph(onnx.parser.parse_model(TYPES))
    feeds = random_inputs(graph, seed=3, dims={"batch": 4})
    assert list(feeds) == ["f", "h", "d", "b", "ids", "attention_mask", "flag", "u"]
    want = {
        "f": ("float32", (4, 3)),
        "h": ("float16", (2,)),
        "d": ("float64", (1,)),  # a symbol not in dims is 1
        "b": ("bfloat16", (2,)),
        "ids": ("int64", (4,)),
        "attention_mask": ("int32", (1, 5)),
        "flag": ("bool", (2, 2)),
        "u": ("uint8", (3,)),
    }
    for name, (dtype, shape) in want.items():
        assert (feeds[name].dtype.name, feeds[name].shape) == (dtype, shape), name
    assert feeds["ids"].min() >= 0 and feeds["ids"].max() < 10
    assert (feeds["attention_mask"] == 1).all()
    check_inputs(graph, feeds)
    # The same seed gives the same values; another seed other values.
    again = random_inputs(graph, seed=3, dims={"batch": 4})
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
    other = random_inputs(graph, seed=4, dims={"batch": 4})
    assert not np.array_equal(feeds["f"], other["f"])
    # Default dims: 1.
    assert random_inputs(graph)["f"].shape == (1, 3)


def test_random_gather_indices_stay_inside_the_table() -> None:
    m = onnx.parser.parse_model(
        model_text("""
        agraph (int64[64] idx) => (float[64,2] y) {
            table = Constant<value = float[3,2] {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}>()
            y = Gather<axis = 0>(table, idx)
        }
        """, opset=18)
    )
    idx = random_inputs(as_graph(m), seed=0)["idx"]
    assert idx.min() >= 0 and idx.max() < 3
    assert len(run(m, {"idx": idx}, "onnxruntime")[0]) == 64


def test_random_inputs_refuse_untyped_or_non_tensor_inputs() -> None:
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("SequenceAt", ["s", "i"], ["y"])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [])
    m = helper.make_model(helper.make_graph([node], "g", [seq, i], [y]))
    with pytest.raises(NeffkitError, match="input 's'.*give the inputs in a file"):
        random_inputs(as_graph(m))
    no_rank = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    m = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [no_rank], [y])
    )
    with pytest.raises(NeffkitError, match="input 'x'.*unknown rank"):
        random_inputs(as_graph(m))
