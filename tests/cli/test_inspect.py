"""``neffkit inspect`` (:mod:`neffkit.cli.inspect`)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.parser
from onnx import TensorProto, helper

from neffkit.cli import main


def test_inspect_lists_ops_inputs_and_constants(model, capsys) -> None:
    assert main(["inspect", model]) == 0
    out = capsys.readouterr().out
    for text in ("x: float[2,3]", "y: float[2,4]", "ai.onnx 18", "MatMul", "Relu", "Constant"):
        assert text in out
    assert "6 top level, 6 including subgraphs" in out
    assert "2 Constant nodes (60 B)" in out


def test_inspect_json_with_subgraphs_and_external_data(tmp_path, capsys) -> None:
    then = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"]), helper.make_node("Identity", ["t"], ["o1"])],
        "then",
        [],
        [helper.make_tensor_value_info("o1", TensorProto.FLOAT, [64])],
    )
    other = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["o2"])],
        "else",
        [],
        [helper.make_tensor_value_info("o2", TensorProto.FLOAT, [64])],
    )
    node = helper.make_node(
        "If", ["cond"], ["y"], name="branch", then_branch=then, else_branch=other
    )
    w = onnx.numpy_helper.from_array(np.arange(64, dtype=np.float32), "w")
    g = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [64]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], producer_name="test")
    path = tmp_path / "if.onnx"
    onnx.save(m, path, save_as_external_data=True, location="if.weights", size_threshold=0)
    assert main(["inspect", str(path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["producer"] == "test" and s["opset_imports"] == {"ai.onnx": 18}
    assert (s["nodes"], s["nodes_total"]) == (1, 4)
    assert s["ops"] == {"Add": 1, "Identity": 1, "If": 1, "Relu": 1}
    assert s["initializers"] == 1 and s["initializer_bytes"] == 256
    assert {(x["node"], x["attribute"], x["nodes"]) for x in s["subgraphs"]} == {
        ("branch", "then_branch", 2),
        ("branch", "else_branch", 1),
    }
    assert s["external_data"] == [{"file": "if.weights", "bytes": 256}]
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "subgraphs:" in out and "if.weights" in out
