"""A model as a path, proto, bytes or graph: one ``Graph``, one label, errors naming the file."""

from __future__ import annotations

import onnx
import onnx.parser
import pytest

import neffkit
from neffkit.errors import NeffkitError
from neffkit.execution.model import (
    as_graph,
    as_model_proto,
    describe_model,
    mentioning,
    source_path,
)

MODEL = onnx.parser.parse_model(
    '<ir_version: 8, opset_import: ["" : 18]> g (float[2] x) => (float[2] y) { y = Neg(x) }'
)


def test_every_form_becomes_a_graph(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(MODEL, path)
    graph = as_graph(MODEL)
    assert as_graph(graph) is graph
    for form in (path, str(path), MODEL, MODEL.SerializeToString()):
        assert [n.op_type for n in as_graph(form)] == ["Neg"]
    assert as_model_proto(MODEL) is MODEL
    assert as_model_proto(path).graph.node[0].op_type == "Neg"
    with pytest.raises(NeffkitError, match="expected a model path, onnx.ModelProto or neffkit "
                       "Graph, got int"):  # fmt: skip
        as_graph(3)


def test_labels_and_source_paths(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(MODEL, path)
    assert describe_model(path) == str(path) == source_path(path)
    assert describe_model(MODEL) == "<ModelProto g>"
    assert describe_model(b"abc") == "<3 bytes of ONNX>"
    assert describe_model(neffkit.load(path)) == str(path)
    assert source_path(MODEL) is None


def test_mentioning_puts_the_file_in_front_once() -> None:
    with pytest.raises(NeffkitError, match="^m.onnx: bad$"):
        with mentioning("m.onnx"):
            raise NeffkitError("bad")
    with pytest.raises(NeffkitError, match="^m.onnx: bad$"):
        with mentioning("m.onnx"):
            raise NeffkitError("m.onnx: bad")
