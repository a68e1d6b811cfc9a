"""neffkit.verify: per-output comparison, tolerances, several input sets, .npz inputs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.parser
import pytest

import neffkit
from neffkit.errors import NeffkitError, NumericMismatchError
from neffkit.testing.text import model_text
from neffkit.verify import REL_ERR_FLOOR, VerificationReport, compare, default_tolerances, verify


def _model(const: str = "1.0, 2.0, 3.0", body: str = "y = Add(x, c)", out: str = "float[2,3] y"):
    n = const.count(",") + 1
    return onnx.parser.parse_model(
        model_text(f"""
        agraph (float[2,3] x) => ({out}, float[2,3] r) {{
            c = Constant<value = float[{n}] {{{const}}}>()
            {body}
            r = Relu(x)
        }}
        """, opset=18)
    )


ZEROS = {"x": np.zeros((2, 3), np.float32)}


def test_identical_models_agree() -> None:
    report = verify(_model(), _model())
    assert isinstance(report, VerificationReport)
    assert report.ok and not report.failures
    assert [o.name for o in report.outputs] == ["y", "r"]
    o = report.outputs[0]
    assert o.shape_match and o.dtype_match and o.max_abs_error == 0.0 and o.mismatches == 0
    assert (o.reference_shape, o.reference_dtype) == ((2, 3), "float32")
    assert (o.rtol, o.atol) == (1e-4, 1e-5)
    assert report.seed == 0 and report.input_sets == 2
    assert (report.backend, report.reference_backend) == ("torch", "onnxruntime")
    text = str(report)
    assert "OK" in text and "max abs" in text and "y" in text
    report.raise_if_failed()  # no error
    json.dumps(report.to_dict(), allow_nan=False)


def test_changed_constant_fails_with_the_right_error() -> None:
    report = verify(_model(), _model("1.0, 2.0, 3.5"), ZEROS)
    assert not report.ok
    y, r = report.outputs
    assert r.ok
    assert not y.ok and y.shape_match and y.dtype_match
    assert y.max_abs_error == pytest.approx(0.5)
    assert y.max_rel_error == pytest.approx(0.5 / 3)
    assert y.mismatches == 2 and y.elements == 6  # column 2 of both rows
    assert report.failures == [y]
    assert "FAIL" in str(report) and "MISMATCH" in str(report)
    with pytest.raises(NumericMismatchError, match="output 'y'.*max abs error 0.5"):
        report.raise_if_failed()
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["ok"] is False and d["outputs"][0]["max_abs_error"] == pytest.approx(0.5)


def test_tolerances_decide() -> None:
    loose = verify(_model(), _model("1.0, 2.0, 3.5"), ZEROS, atol=0.6)
    assert loose.ok and loose.outputs[0].atol == 0.6
    rel = verify(_model(), _model("1.0, 2.0, 3.5"), ZEROS, rtol=0.2, atol=0.0)
    assert rel.ok


def test_shape_mismatch_is_reported() -> None:
    wide = _model("1.0, 2.0, 3.0, 4.0", body="y = Identity(c)", out="float[4] y")
    report = verify(_model(), wide)
    y = report.outputs[0]
    assert not report.ok and not y.shape_match and y.max_abs_error is None
    assert (y.reference_shape, y.candidate_shape) == ((2, 3), (4,))
    assert "shape [4] != reference [2, 3]" in report.summary()


def test_dtype_mismatch_is_reported() -> None:
    cast = _model(body="s = Add(x, c)\n y = Cast<to = 11>(s)", out="double[2,3] y")
    report = verify(_model(), cast, backend="onnxruntime")
    y = report.outputs[0]
    assert not y.ok and y.shape_match and not y.dtype_match
    assert (y.reference_dtype, y.candidate_dtype) == ("float32", "float64")
    assert y.max_abs_error == 0.0  # the values still agree


def test_several_input_sets_report_the_worst() -> None:
    relu = _model(body="y = Relu(x)")
    ident = _model(body="y = Identity(x)")
    sets = [
        {"x": np.ones((2, 3), np.float32)},
        {"x": np.full((2, 3), -2.0, np.float32)},
        {"x": np.full((2, 3), 0.5, np.float32)},
    ]
    report = verify(relu, ident, sets)
    assert report.input_sets == 3 and report.seed is None
    y = report.outputs[0]
    assert not y.ok and y.max_abs_error == 2.0 and y.worst_set == 1
    assert y.mismatches == 6 and y.elements == 18
    assert verify(relu, relu, sets).ok


def test_npz_inputs(tmp_path) -> None:
    path = tmp_path / "in.npz"
    np.savez(path, x=np.full((2, 3), -1.0, np.float32))
    report = verify(_model(body="y = Relu(x)"), _model(body="y = Identity(x)"), str(path))
    assert report.outputs[0].max_abs_error == 1.0
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 3), np.float32))
    with pytest.raises(NeffkitError, match=r"bad.npz: input 'x' expects shape"):
        verify(_model(), _model(), bad)
    positional = tmp_path / "pos.npz"
    np.savez(positional, np.zeros((2, 3), np.float32))  # arr_0
    assert verify(_model(), _model(), positional).ok


def test_models_as_paths_graphs_and_backends(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    graph = neffkit.load(path)
    report = verify(str(path), graph, backend="onnxruntime", reference_backend="torch")
    assert report.ok and report.reference == str(path)
    assert (report.backend, report.reference_backend) == ("onnxruntime", "torch")
    assert neffkit.verify(path, _model()).ok  # the top-level name works after the import


def test_output_count_mismatch_is_a_problem() -> None:
    one = onnx.parser.parse_model(
        model_text("""
        agraph (float[2,3] x) => (float[2,3] y) { y = Identity(x) }
        """, opset=18)
    )
    report = verify(_model(body="y = Identity(x)"), one)
    assert not report.ok
    assert report.problems == ["the candidate has 1 outputs, the reference 2"]
    assert report.outputs[1].note == "missing from the candidate"


def test_torchscript_module_as_candidate() -> None:
    from neffkit.backends.torch import to_torchscript

    module, how = to_torchscript(neffkit.load(_model()))
    report = verify(_model(), module)
    assert report.ok and report.backend == "torch.jit"


# -- compare ----------------------------------------------------------------------------------


def test_nan_and_inf_in_the_same_place_are_equal() -> None:
    a = np.array([np.nan, 1.0, np.inf, -np.inf], np.float32)
    assert compare(a, a.copy()).ok
    b = a.copy()
    b[0] = 0.0
    c = compare(a, b)
    assert not c.ok and c.mismatches == 1 and c.max_abs_error == float("inf")
    b = a.copy()
    b[2] = -np.inf
    assert compare(a, b).mismatches == 1
    json.dumps(c.to_dict(), allow_nan=False)


def test_relative_error_ignores_near_zero_references() -> None:
    ref = np.array([0.0, REL_ERR_FLOOR / 10, 2.0], np.float32)
    got = np.array([1e-6, 0.0, 2.0002], np.float32)
    c = compare(ref, got)
    assert c.max_rel_error == pytest.approx(1e-4, rel=1e-3)
    assert c.max_abs_error == pytest.approx(2e-4, rel=1e-3)


def test_default_tolerances_per_dtype() -> None:
    assert default_tolerances(np.float32) == (1e-4, 1e-5)
    r16, a16 = default_tolerances(np.float16)
    assert r16 > 1e-4 and a16 > 1e-5
    assert default_tolerances(np.int64) == (0.0, 0.0)
    assert default_tolerances(np.bool_) == (0.0, 0.0)
    ints = np.array([1, 2, 3])
    assert not compare(ints, ints + np.array([0, 0, 1])).ok
    assert compare(ints, ints + np.array([0, 0, 1]), atol=1).ok
    bools = np.array([True, False])
    assert not compare(bools, ~bools, atol=1).ok  # bools are always exact
    half = np.array([1.0, 2.0], np.float16)
    assert compare(half, half + np.float16(1e-3)).ok


def test_inputs_go_by_position_when_the_candidate_renamed_them() -> None:
    renamed = onnx.parser.parse_model(
        model_text("""
        agraph (float[2,3] inp) => (float[2,3] y, float[2,3] r) {
            c = Constant<value = float[3] {1.0, 2.0, 3.0}>()
            y = Add(inp, c)
            r = Relu(inp)
        }
        """, opset=18)
    )
    assert verify(_model(), renamed, seed=4).ok
