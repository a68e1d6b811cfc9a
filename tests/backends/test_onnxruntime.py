"""How models reach onnxruntime: a graph with external weights goes through a temporary
folder on disk (no big in-memory protobuf, nothing left behind), and optimizing such a model
with verification neither loads its weights into the IR nor drops external data."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import neffkit
from neffkit.backends import onnxruntime as ort_backend

N = 512


def _external_model(folder) -> str:
    """``y = (x @ w1 + b) @ w2`` with ``w2`` a byte copy of ``w1``, weights in ``w.bin``."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((N, N)) / np.sqrt(N)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    (folder / "w.bin").write_bytes(w.tobytes() + b.tobytes() + w.tobytes())
    inits = []
    for name, dims, offset in (("w1", [N, N], 0), ("b", [N], N * N * 4), ("w2", [N, N], None)):
        tp = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
        tp.data_location = TensorProto.EXTERNAL
        off = offset if offset is not None else N * N * 4 + N * 4
        for k, v in (("location", "w.bin"), ("offset", str(off))):
            e = tp.external_data.add()
            e.key, e.value = k, v
        inits.append(tp)
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["a"]),
            helper.make_node("MatMul", ["a", "w2"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, N])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, N])],
        inits,
    )
    path = folder / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.fixture
def seen_sources(monkeypatch) -> list:
    """What every InferenceSession was created from (and whether that path existed then)."""
    seen: list = []
    real = onnxruntime.InferenceSession

    def spy(src, *args, **kwargs):
        seen.append((src, isinstance(src, str) and os.path.exists(src)))
        return real(src, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    return seen


def test_a_graph_with_external_weights_reaches_onnxruntime_as_a_temporary_file(
    tmp_path, seen_sources
) -> None:
    path = _external_model(tmp_path)
    g = neffkit.load(path)
    sess = ort_backend.session(g)
    ((src, existed),) = seen_sources
    assert isinstance(src, str) and existed
    assert os.path.dirname(src) != str(tmp_path)
    assert not os.path.exists(os.path.dirname(src))  # removed once the session is made
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "w.bin"]
    x = np.ones((2, N), np.float32)
    (want,) = ort_backend.run(path, [x])
    (got,) = sess.run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # weights not prepacked
    assert all(v.const._array is None for v in g.initializers.values())


def test_a_small_inline_graph_still_goes_in_memory(seen_sources) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    m = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
        ]),
        opset_imports=[helper.make_opsetid("", 17)],
    )  # fmt: skip
    ort_backend.session(neffkit.load(m))
    ((src, _),) = seen_sources
    assert isinstance(src, bytes)


def test_optimize_verifies_through_disk_and_keeps_weights_lazy_and_external(
    tmp_path, seen_sources
) -> None:
    path = _external_model(tmp_path)
    g = neffkit.load(path)
    opt, report = neffkit.optimize(g, copy=False)
    assert report.ok and report.verification is not None
    assert seen_sources and all(isinstance(s, str) for s, _ in seen_sources)
    big = [v.const for v in opt.initializers.values() if v.const.shape == (N, N)]
    assert len(big) == 1  # dedup merged the byte copy
    assert big[0]._array is None and big[0].is_external  # hashed, verified, never loaded
    out = tmp_path / "out" / "m.onnx"
    neffkit.save(opt, out)
    assert (tmp_path / "out" / "m.onnx.data").stat().st_size >= N * N * 4
    assert os.path.getsize(out) < 4096
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "out", "w.bin"]
    x = np.random.default_rng(1).standard_normal((2, N)).astype(np.float32)
    (want,) = ort_backend.run(path, [x])
    (got,) = neffkit.run(out, [x], backend="onnxruntime")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
