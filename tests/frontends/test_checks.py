"""The validity checks before a model is run, converted or optimized: the ONNX checker, opset
range, ``If`` branch agreement and input types, each refusal naming how to skip it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import neffkit
from neffkit.cli import main
from neffkit.errors import FrontendError
from neffkit.frontends import checks
from neffkit.frontends.onnx import load
from tests.helpers import save_model
from tests.hostile_models import X2, _if_model, relu_model


def test_no_check_runs_a_checker_invalid_model(tmp_path, capfd) -> None:
    path = save_model(tmp_path / "ir1.onnx", relu_model(ir=1))
    assert main(["run", path]) == 2
    capfd.readouterr()
    assert main(["run", path, "--no-check", "-o", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as z:
        assert z["y"].dtype == np.float32
    (y,) = neffkit.run(path, X2, check=False)
    np.testing.assert_array_equal(y, [1.0, 0.0])
    assert "error" not in capfd.readouterr().err


def test_checker_errors_name_the_flag(tmp_path) -> None:
    path = save_model(tmp_path / "m.onnx", relu_model(opset=99))
    with pytest.raises(FrontendError, match=r"--no-check, or check=False"):
        neffkit.optimize(path)
    graph, _ = neffkit.optimize(path, check=False, verify=False)
    assert [n.op_type for n in graph] == ["Relu"]


def test_check_proto_from_a_file_bytes_or_a_proto(tmp_path) -> None:
    good = relu_model()
    path = save_model(tmp_path / "m.onnx", good)
    checks.check_proto(None, None, "m.onnx", path=path)
    checks.check_proto(None, good.SerializeToString(), "m.onnx")
    checks.check_proto(good, None, "m.onnx")
    bad = relu_model(ir=1)
    for proto, data in ((bad, None), (None, bad.SerializeToString())):
        with pytest.raises(FrontendError, match=r"^m.onnx: invalid ONNX model \(onnx checker: "):
            checks.check_proto(proto, data, "m.onnx")


@pytest.mark.parametrize(
    ("opset", "says"),
    [
        (onnx.defs.onnx_opset_version() + 1, "newer than the newest this onnx knows"),
        (checks.MIN_OPSET - 1, f"opsets before {checks.MIN_OPSET} are not supported"),
    ],
)
def test_opsets_outside_the_known_range_are_refused(opset: int, says: str) -> None:
    g = load(relu_model(opset=opset))
    with pytest.raises(FrontendError, match=f"m.onnx: imports ai.onnx opset {opset}.*{says}"):
        checks.check_opsets(g, "m.onnx")


def test_the_known_opsets_and_no_ai_onnx_import_pass() -> None:
    for opset in (checks.MIN_OPSET, onnx.defs.onnx_opset_version()):
        checks.check_opsets(load(relu_model(opset=opset)), "m.onnx")
    g = load(relu_model())
    g.opset_imports.pop("")
    checks.check_opsets(g, "m.onnx")


def _if_nodes(model: onnx.ModelProto) -> list:
    return [n for n in load(model).all_nodes() if n.op_type == "If"]


def test_if_branches_must_both_exist_and_agree_on_types() -> None:
    checks.check_if_nodes(_if_nodes(_if_model(TensorProto.FLOAT, TensorProto.FLOAT)), "m.onnx")
    with pytest.raises(FrontendError, match="node 'choose' \\(If\\) has no graph attribute "
                       "'else_branch'"):  # fmt: skip
        checks.check_if_nodes(_if_nodes(_if_model(TensorProto.FLOAT, None)), "m.onnx")
    with pytest.raises(FrontendError, match="output 0 is float in then_branch but int64"):
        checks.check_if_nodes(_if_nodes(_if_model(TensorProto.FLOAT, TensorProto.INT64)), "m")


def test_if_branches_with_other_output_counts_are_refused() -> None:
    m = _if_model(TensorProto.FLOAT, TensorProto.FLOAT)
    (else_branch,) = (a.g for a in m.graph.node[0].attribute if a.name == "else_branch")
    else_branch.node.append(helper.make_node("Identity", ["e"], ["e2"]))
    else_branch.output.append(helper.make_tensor_value_info("e2", TensorProto.FLOAT, [2]))
    with pytest.raises(FrontendError, match="then_branch has 1 outputs, else_branch 2"):
        checks.check_if_nodes(_if_nodes(m), "m.onnx")


def test_input_types_unknown_or_with_negative_dims_are_refused() -> None:
    checks.check_input_type(helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "n"]), "m")
    with pytest.raises(FrontendError, match="m: input 'x' has the unknown element type 999"):
        checks.check_input_type(helper.make_tensor_value_info("x", 999, [2]), "m")
    with pytest.raises(FrontendError, match=r"negative dimension in \[2, -1, 'n'\]"):
        checks.check_input_type(helper.make_tensor_value_info("x", 1, [2, -1, "n"]), "m")
    # not a tensor, or no shape: nothing to check
    checks.check_input_type(helper.make_tensor_sequence_value_info("s", 1, [2]), "m")
    checks.check_input_type(helper.make_tensor_value_info("x", TensorProto.FLOAT, None), "m")


def test_negative_dims() -> None:
    assert checks.negative_dims(TensorProto(dims=[2, -1]))
    assert not checks.negative_dims(TensorProto(dims=[2, 0]))
    assert not checks.negative_dims(TensorProto())


def test_an_unknown_rank_input_or_output_with_its_dtype_is_legal(tmp_path) -> None:
    # the checker asks for a shape on the main graph's inputs and outputs; the IR spec does not
    m = relu_model()
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.ClearField("shape")
    with pytest.raises(onnx.checker.ValidationError, match="'shape' of 'type' is required"):
        onnx.checker.check_model(m)
    checks.check_proto(m, None, "m.onnx")
    checks.check_proto(None, m.SerializeToString(), "m.onnx")
    path = save_model(tmp_path / "m.onnx", m)
    assert load(path, check=True).inputs[0].type.rank is None
    (y,) = neffkit.run(path, X2)
    np.testing.assert_array_equal(y, [1.0, 0.0])
    # without the element type, or with another fault, it is still refused
    m.graph.input[0].type.tensor_type.elem_type = 0
    with pytest.raises(FrontendError, match="invalid ONNX model"):
        checks.check_proto(m, None, "m.onnx")
    bad = relu_model(ir=1)
    bad.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(FrontendError, match="invalid ONNX model"):
        checks.check_proto(bad, None, "m.onnx")
