"""Constants: lazy decoding and hashing, external data loaded lazily and kept in its folder."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import neffkit
from neffkit.errors import FrontendError
from neffkit.ir import Tensor


def test_hash_is_by_content_and_cached() -> None:
    a = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = Tensor.from_proto(numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3)))
    c = Tensor(np.arange(6, dtype=np.float32).reshape(3, 2))
    d = Tensor(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert a.content_hash() == b.content_hash()
    assert a.equals(b)
    assert len({a.content_hash(), c.content_hash(), d.content_hash()}) == 3
    assert b._array is None  # hashing raw_data does not decode the proto
    assert a.content_hash() is a.content_hash()


def _model_with_weight(n: int = 4096) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.arange(n, dtype=np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])],
        [w],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _save_external(model: onnx.ModelProto, folder: str, location: str = "w.bin") -> str:
    path = os.path.join(folder, "m.onnx")
    onnx.save(model, path, save_as_external_data=True, location=location, size_threshold=0)
    return path


def test_external_data_is_read_only_when_needed_and_saved_back_external(tmp_path) -> None:
    path = _save_external(_model_with_weight(), str(tmp_path))
    g = neffkit.load(path)
    w = g.initializers["w"].const
    assert w.is_external and w._array is None
    out = tmp_path / "out" / "copy.onnx"
    neffkit.save(g, out)
    assert w.is_external  # copied byte for byte without decoding
    assert (tmp_path / "out" / "copy.onnx.data").exists()
    back = onnx.load(str(out), load_external_data=False)
    assert back.graph.initializer[0].data_location == TensorProto.EXTERNAL
    np.testing.assert_array_equal(
        neffkit.load(out).initializers["w"].const.numpy(), np.arange(4096, dtype=np.float32)
    )
    assert not [f for f in os.listdir(tmp_path / "out") if f.startswith(".neffkit-")]


@pytest.mark.parametrize("location", ["../w.bin", "/etc/passwd", "sub/../../w.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location) -> None:
    model = _model_with_weight()
    inner = tmp_path / "inner"
    inner.mkdir()
    path = _save_external(model, str(inner))
    os.replace(inner / "w.bin", tmp_path / "w.bin")
    m = onnx.load(path, load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    onnx.save(m, path)
    with pytest.raises(FrontendError, match="tensor 'w'.*(outside|absolute)"):
        neffkit.load(path)


def test_external_data_through_a_link_that_leaves_the_folder_is_refused(tmp_path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    path = _save_external(_model_with_weight(), str(inner))
    os.replace(inner / "w.bin", tmp_path / "real.bin")
    os.symlink(tmp_path / "real.bin", inner / "w.bin")
    with pytest.raises(FrontendError, match="through a link"):
        neffkit.load(path)


def test_missing_and_truncated_external_data_are_clear_errors(tmp_path) -> None:
    path = _save_external(_model_with_weight(), str(tmp_path))
    data = (tmp_path / "w.bin").read_bytes()
    g = neffkit.load(path)  # truncated after loading: found when read
    (tmp_path / "w.bin").write_bytes(data[:100])
    with pytest.raises(FrontendError, match="tensor 'w'.*shorter than when the model was loaded"):
        g.initializers["w"].const.numpy()
    with pytest.raises(FrontendError, match="tensor 'w'.*beyond the end.*truncated"):
        neffkit.load(path)  # truncated before loading: found at once
    os.unlink(tmp_path / "w.bin")
    with pytest.raises(FrontendError, match="not found"):
        neffkit.load(path)


def test_save_is_atomic_and_can_refuse_to_overwrite(tmp_path) -> None:
    g = neffkit.load(_model_with_weight(8))
    out = tmp_path / "m.onnx"
    neffkit.save(g, out)
    before = out.read_bytes()
    with pytest.raises(neffkit.BackendError, match="refusing to overwrite"):
        neffkit.save(g, out, overwrite=False)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.onnx"]
