"""``ExportedModel``: a graph exported once; the bytes written are the bytes exported, inline
or with a data file (whose name is the only thing that changes on the way to disk)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import neffkit
from neffkit.errors import BackendError
from neffkit.execution.exported import ExportedModel
from neffkit.execution.runner import run
from neffkit.files import FileCollisionError

W = np.arange(512, dtype=np.float32)  # 2 KiB: goes to the data file with external data


def _graph() -> neffkit.Graph:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [512])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [512])
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [x],
        [y],
        [numpy_helper.from_array(W, "w")],
    )
    return neffkit.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]))


def _sha(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_inline_the_file_written_is_the_bytes_exported(tmp_path) -> None:
    graph = _graph()
    exported = ExportedModel(graph)
    assert not exported.external_data and exported.source == exported.model_bytes()
    assert exported.model_bytes() == neffkit.to_onnx(graph).SerializeToString()
    out = tmp_path / "out.onnx"
    exported.write(out)
    assert _sha(out) == exported.sha256() == hashlib.sha256(exported.model_bytes()).hexdigest()
    assert not os.path.exists(f"{out}.data")
    (y,) = run(out, [np.ones(512, np.float32)], "onnxruntime")
    np.testing.assert_array_equal(y, W + 1)


def test_external_data_is_exported_once_and_written_with_its_data(tmp_path) -> None:
    graph = _graph()
    exported = ExportedModel(graph, external_data=True)
    folder = exported.folder
    assert folder is not None and os.path.isfile(exported.source)
    (y,) = run(exported.source, [np.zeros(512, np.float32)], "onnxruntime")
    np.testing.assert_array_equal(y, W)
    out = tmp_path / "out.onnx"
    (tmp_path / "out.onnx.data").write_bytes(b"an old data file another model may use")
    exported.write(out)
    data = [p for p in os.listdir(tmp_path) if p.startswith("out.onnx.") and p != "out.onnx.data"]
    assert len(data) == 1  # a fresh name: the existing out.onnx.data was not the old model's
    assert _sha(tmp_path / data[0]) == _sha(os.path.join(folder, "model.onnx.data"))
    written = onnx.load(out, load_external_data=False)
    exported_proto = onnx.load(exported.source, load_external_data=False)
    (loc,) = [e.value for e in written.graph.initializer[0].external_data if e.key == "location"]
    assert loc == data[0]
    for t in exported_proto.graph.initializer:  # only the data file's name differs
        for e in t.external_data:
            if e.key == "location":
                e.value = loc
    assert written.SerializeToString() == exported_proto.SerializeToString()
    (y,) = run(out, [np.ones(512, np.float32)], "onnxruntime")
    np.testing.assert_array_equal(y, W + 1)
    exported.close()
    assert not os.path.exists(folder)


def test_write_refuses_a_folder_and_the_files_the_graph_reads(tmp_path) -> None:
    exported = ExportedModel(_graph())
    with pytest.raises(BackendError, match="is a directory"):
        exported.write(tmp_path)
    src = tmp_path / "src.onnx"
    neffkit.save(_graph(), src, external_data=True)
    reading = ExportedModel(neffkit.load(src), external_data=False)
    with pytest.raises(FileCollisionError):
        reading.write(tmp_path / "src.onnx.data")


def test_a_big_inline_model_waits_on_disk_and_is_written_byte_for_byte(
    tmp_path, monkeypatch
) -> None:
    from neffkit.execution import exported as module

    monkeypatch.setattr(module, "SPILL_BYTES", 100)
    graph = _graph()
    exported = ExportedModel(graph)
    assert exported.blob is None and not exported.external_data
    assert isinstance(exported.source, str) and os.path.isfile(exported.source)
    assert exported.model_bytes() == neffkit.to_onnx(graph).SerializeToString()
    out = tmp_path / "out.onnx"
    exported.write(out)
    assert out.read_bytes() == exported.model_bytes()
    assert _sha(out) == exported.sha256()
    (y,) = run(exported.source, [np.ones(512, np.float32)], "onnxruntime")
    np.testing.assert_array_equal(y, W + 1)
