"""ONNX -> IR -> ONNX over the onnx package's backend-test material: checker and numbers hold."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from neffkit.backends import onnxruntime as ort_backend
from neffkit.backends.onnx import to_onnx
from neffkit.errors import BackendError
from neffkit.frontends.onnx import load
from neffkit.testing.onnx_cases import Case, all_model_paths, model_dir_cases, node_cases


def _checks(model: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception:  # noqa: BLE001 - any checker failure means "the original is not valid"
        return False
    return True


def _same(a: object, b: object) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _roundtrip_holds(case: Case) -> None:
    original = case.load_model()
    result = to_onnx(load(original))
    if _checks(original):
        onnx.checker.check_model(result, full_check=True)
    for inputs, _ in case.data_sets[:1]:
        try:
            want = ort_backend.run(original, inputs)
        except BackendError:
            continue  # onnxruntime cannot run the original: nothing to compare against
        got = ort_backend.run(result, inputs)
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert _same(g, w), f"{case.name}: output {i} differs after the round trip"


def test_every_node_case_round_trips() -> None:
    failures = []
    for case in node_cases():
        try:
            _roundtrip_holds(case)
        except Exception as e:  # noqa: BLE001 - collect them all for one readable report
            failures.append(f"{case.name}: {type(e).__name__}: {str(e)[:200]}")
    assert not failures, f"{len(failures)} node cases failed:\n" + "\n".join(failures[:30])


@pytest.mark.parametrize("case", model_dir_cases(), ids=lambda c: c.name)
def test_shipped_model_round_trips(case: Case) -> None:
    _roundtrip_holds(case)


def test_every_shipped_onnx_file_loads_and_checks() -> None:
    paths = all_model_paths()
    assert len(paths) > 100
    for path in paths:
        original = onnx.load(path)
        result = to_onnx(load(path))
        if _checks(original):
            onnx.checker.check_model(result, full_check=True)
        assert len(result.graph.node) == len(original.graph.node), path
