"""A model as a path (ONNX or TorchScript), proto, bytes, ScriptModule or graph: one ``Graph``,
one label, errors naming the file."""

from __future__ import annotations

import onnx
import onnx.parser
import pytest
import torch

import neffkit
from neffkit.errors import FrontendError, NeffkitError
from neffkit.execution.model import (
    as_graph,
    as_model_proto,
    describe_model,
    is_torch_path,
    mentioning,
    source_path,
)
from neffkit.frontends.torchscript_inputs import InputSpec

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
    with pytest.raises(NeffkitError, match="expected a model path, onnx.ModelProto, "
                       "torch.jit.ScriptModule or neffkit Graph, got int"):  # fmt: skip
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


class _Scale(torch.nn.Module):
    def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return torch.special.i0e(x) * k


def test_torchscript_files_are_told_by_their_bytes_and_typed_by_input_shapes(tmp_path) -> None:
    path = tmp_path / "model.onnx"  # the name says ONNX; the bytes say TorchScript
    torch.jit.save(torch.jit.script(_Scale()), path)
    assert is_torch_path(path) and not is_torch_path(MODEL)
    with pytest.raises(FrontendError, match=r"model.onnx: input 'x' of the TorchScript module "
                       r"has no recorded dtype and shape.*--input-shape x="):  # fmt: skip
        as_graph(path)
    graph = as_graph(path, input_shapes={"x": InputSpec((2, 3), "float64")})
    assert [(v.name, str(v.type)) for v in graph.inputs] == [("x", "double[2,3]"),
                                                            ("k", "int64[]")]  # fmt: skip
    assert [v.name for v in graph.outputs] == ["output_0"]
    assert describe_model(graph) == str(path)
    with pytest.raises(FrontendError, match="names 'y', but the module's inputs are 'x', 'k'"):
        as_graph(path, input_shapes={"y": InputSpec((2,))})
    # an inputs file's arrays (stated=False) need not all be inputs
    graph = as_graph(path, input_shapes={"x": InputSpec((4,)), "y": InputSpec((2,), None, False)})
    assert str(graph.inputs[0].type) == "float[4]"


def test_a_script_module_in_memory_and_a_checkpoint(tmp_path) -> None:
    traced = torch.jit.trace(torch.nn.Linear(3, 2), (torch.ones(5, 3),))
    assert str(as_graph(traced).inputs[0].type) == "float[5,3]"  # a trace records its types
    path = tmp_path / "ckpt.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(FrontendError, match="ckpt.pt: a torch.save checkpoint"):
        as_graph(path, input_shapes={"x": InputSpec((2, 3))})
