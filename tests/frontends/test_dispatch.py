"""neffkit.load picks the frontend by what it is given: ONNX as before, TorchScript modules and
files by content (not by name), with the safe loader's refusals for other PyTorch files."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import neffkit
from neffkit.errors import FrontendError
from neffkit.frontends.dispatch import is_torch_file

torch = pytest.importorskip("torch")


def _onnx_model() -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_onnx_path_bytes_and_proto_still_load(tmp_path: Any) -> None:
    model = _onnx_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert not is_torch_file(path)
    for source in (path, str(path), model.SerializeToString(), model):
        graph = neffkit.load(source)
        assert [n.op_type for n in graph] == ["Relu"]


def test_script_module_and_torchscript_file_by_content(tmp_path: Any) -> None:
    scripted = torch.jit.script(Double())
    path = tmp_path / "model.onnx"  # the name says ONNX, the bytes say TorchScript
    torch.jit.save(scripted, str(path))
    assert is_torch_file(path)
    x = torch.randn(3)
    for source in (scripted, path):
        graph = neffkit.load(source, example_inputs=(x,))
        assert [n.op_type for n in graph] == ["Mul"]
        assert graph.inputs[0].type.shape == (3,)


def test_torch_save_checkpoint_is_refused_not_unpickled(tmp_path: Any) -> None:
    zipped, legacy = tmp_path / "weights.pt", tmp_path / "legacy.bin"
    torch.save({"w": torch.ones(2)}, str(zipped))
    legacy.write_bytes(pickle.dumps({"w": np.ones(2)}, protocol=2))
    for path in (zipped, legacy):
        assert is_torch_file(path)
        with pytest.raises(FrontendError, match="torch.jit.save"):
            neffkit.load(path)


def test_missing_file_keeps_the_onnx_message(tmp_path: Any) -> None:
    with pytest.raises(FrontendError, match="no such file"):
        neffkit.load(tmp_path / "absent.pt")
