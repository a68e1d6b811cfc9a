"""``Runner``: prepared once on a registered backend, run on many input sets; a serialized
source is handed to the backend as is."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest

import neffkit
from neffkit.backends import onnxruntime as ort_backend
from neffkit.errors import BackendError
from neffkit.execution.runner import Runner, run

MODEL = onnx.parser.parse_model(
    '<ir_version: 8, opset_import: ["" : 18]> g (float[n] x) => (float[n] y) { y = Neg(x) }'
)
X = np.array([1.0, -2.0], np.float32)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "ort"])
def test_a_runner_runs_many_input_sets(backend: str) -> None:
    runner = Runner(MODEL, backend)
    assert runner.backend == ("onnxruntime" if backend == "ort" else backend)
    assert runner.device == "cpu"
    assert runner.input_names == ["x"] and runner.output_names == ["y"]
    for k in range(1, 4):
        (y,) = runner([np.arange(k, dtype=np.float32)])
        np.testing.assert_array_equal(y, -np.arange(k, dtype=np.float32))


def test_onnxruntime_loads_the_serialized_form_it_is_given(monkeypatch, tmp_path) -> None:
    seen: list[object] = []
    real = ort_backend.session

    def spy(model, **kw):  # noqa: ANN001, ANN003, ANN202
        seen.append(model)
        return real(model, **kw)

    monkeypatch.setattr(ort_backend, "session", spy)
    blob = MODEL.SerializeToString()
    path = tmp_path / "m.onnx"
    onnx.save(MODEL, path)
    graph = neffkit.load(MODEL)
    Runner(blob, "onnxruntime")
    Runner(path, "onnxruntime")
    Runner(graph, "onnxruntime", graph=graph, source=blob)
    Runner(graph, "onnxruntime")
    assert seen[:3] == [blob, str(path), blob]
    assert seen[3] is graph  # no serialized form: the backend exports the graph itself


def test_errors_name_the_file_and_the_input(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(MODEL, path)
    with pytest.raises(BackendError, match=rf"^{path}: input 'x' expects float\[n\], got int64"):
        run(path, [np.array([1, 2])], "onnxruntime")
    with pytest.raises(BackendError, match="runs on the CPU only, not on 'cuda'"):
        Runner(MODEL, "onnxruntime", device="cuda")
