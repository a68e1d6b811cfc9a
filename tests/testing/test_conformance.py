"""Conformance runs: comparing one output as the ONNX backend-test runner does, judging a case
through any runner (passed / failed / error), leaving out what the spec leaves undefined, and
choosing the cases the torch backend can be held to."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

from neffkit.testing.conformance import (
    Outcome,
    all_ops_lowered,
    compare,
    compare_value,
    main,
    model_ops,
    neffkit_torch_runner,
    plain_node_cases,
    run_case,
    spec_defined_outputs,
    torch_representable,
)
from neffkit.testing.onnx_cases import Case, is_plain_tensor_case


def _relu_case(expected: np.ndarray | None = None) -> Case:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    y = np.maximum(x, 0) if expected is None else expected
    return Case("relu", model, [([x], [y])], op_types=("Relu",))


# -- compare ---------------------------------------------------------------------------------


def test_compare_is_empty_on_a_match_within_tolerance() -> None:
    ref = np.array([1.0, np.nan], np.float32)
    assert compare(ref, ref + np.float32(1e-6), rtol=1e-3, atol=0) == ""  # NaN == NaN here


@pytest.mark.parametrize(
    ("got", "says"),
    [
        (np.array([1.0, 2.0], np.float64), "dtype float64 != expected float32"),
        (np.array([1.0], np.float32), "shape (1,) != expected (2,)"),
    ],
)
def test_compare_names_a_dtype_or_shape_difference(got: np.ndarray, says: str) -> None:
    assert compare(np.array([1.0, 2.0], np.float32), got, 1e-3, 0) == says


def test_compare_reports_values_beyond_tolerance() -> None:
    assert compare(np.array([1.0, 2.0]), np.array([1.0, 2.1]), rtol=1e-3, atol=0)
    assert compare(np.array([1.0, 2.0]), np.array([1.0, 2.1]), rtol=0.1, atol=0) == ""


def test_compare_handles_exotic_float_dtypes() -> None:
    ref = np.array([1, 2], ml_dtypes.bfloat16)
    assert compare(ref, ref.copy(), 1e-3, 0) == ""
    assert compare(ref, np.array([1, 4], ml_dtypes.bfloat16), 1e-3, 0)


def test_compare_object_arrays_exactly() -> None:
    ref = np.array(["a", "b"], dtype=object)
    assert compare(ref, ref.copy(), 1e-3, 0) == ""
    assert compare(ref, np.array(["a", "c"], dtype=object), 1e-3, 0) == "values differ"


def test_compare_leaves_out_undefined_elements() -> None:
    ref = np.array([1, 2, 3], np.int8)
    got = np.array([1, 99, 3], np.int8)
    assert compare(ref, got, 0, 0)
    assert compare(ref, got, 0, 0, defined=np.array([True, False, True])) == ""


def test_compare_value_walks_sequences_and_optionals() -> None:
    a = np.ones(2, np.float32)
    assert compare_value([a, a], [a, a], 1e-3, 0) == ""
    assert compare_value(None, None, 1e-3, 0) == ""
    assert compare_value(None, a, 1e-3, 0) == "empty optional expected"
    assert compare_value(a, None, 1e-3, 0) == "empty optional returned"
    assert compare_value([a], a, 1e-3, 0) == "a sequence on one side only"
    assert compare_value([a], [a, a], 1e-3, 0) == "sequence of 2 elements != expected 1"
    assert compare_value([a, a], [a, a + 1], 1e-3, 0).startswith("element 1: ")


# -- run_case --------------------------------------------------------------------------------


def test_run_case_passes_a_runner_that_computes_the_expected_outputs() -> None:
    outcome = run_case(_relu_case(), lambda model, inputs: [np.maximum(inputs[0], 0)])
    assert outcome == Outcome("relu", ("Relu",), "passed")


def test_run_case_fails_wrong_numbers_naming_the_output() -> None:
    outcome = run_case(_relu_case(), lambda model, inputs: [inputs[0]])
    assert outcome.status == "failed" and outcome.message.startswith("output 0: ")


def test_run_case_fails_a_wrong_number_of_outputs() -> None:
    outcome = run_case(_relu_case(), lambda model, inputs: [])
    assert (outcome.status, outcome.message) == ("failed", "0 outputs, expected 1")


def test_run_case_turns_an_exception_into_an_error_outcome() -> None:
    def runner(model: object, inputs: list) -> list:
        raise RuntimeError("no lowering\nsecond line")

    outcome = run_case(_relu_case(), runner)
    assert (outcome.status, outcome.message) == ("error", "RuntimeError: no lowering")


def test_run_case_through_the_torch_backend() -> None:
    assert run_case(_relu_case(), neffkit_torch_runner).status == "passed"
    wrong = _relu_case(expected=np.zeros(3, np.float32))
    assert run_case(wrong, neffkit_torch_runner).status == "failed"


# -- which elements and cases count ----------------------------------------------------------


def _cast_case(to: int) -> Case:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=to)],
        "cast",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", to, [4])],
    )
    return Case("cast", helper.make_model(graph), op_types=("Cast",))


def test_a_float_to_int_cast_is_compared_only_where_the_spec_defines_it() -> None:
    x = np.array([np.nan, 1.5, 300.0, -np.inf], np.float32)
    expected = [np.zeros(4, np.int8)]
    (defined,) = spec_defined_outputs(_cast_case(TensorProto.INT8), [x], expected)
    np.testing.assert_array_equal(defined, [False, True, False, False])


def test_other_cases_are_compared_everywhere() -> None:
    x = np.array([np.nan, 1.5, 300.0, -np.inf], np.float32)
    to_float = spec_defined_outputs(_cast_case(TensorProto.DOUBLE), [x], [x.astype(np.float64)])
    assert to_float[0] is not None and to_float[0].all()
    relu = _relu_case()
    assert spec_defined_outputs(relu, *relu.data_sets[0]) == [None]


def test_plain_node_cases_are_plain_and_of_the_asked_ops() -> None:
    cases = plain_node_cases(["Relu"])
    assert cases and all("Relu" in c.op_types and is_plain_tensor_case(c) for c in cases)
    assert "test_relu" in {c.name for c in cases}
    everything = plain_node_cases(torch_dtypes=True)
    assert len(everything) > len(cases) and all(torch_representable(c) for c in everything)


def test_torch_representable() -> None:
    a = np.ones(2, np.float32)
    assert torch_representable(Case("f", None, [([a], [a.astype(ml_dtypes.int4)])]))
    assert not torch_representable(Case("f6", None, [([a], [a.astype(ml_dtypes.float6_e2m3fn)])]))


def test_model_ops_reads_subgraphs_and_normalizes_the_onnx_domain() -> None:
    body = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["z"], domain="ai.onnx")],
        "then",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body),
            helper.make_node("Gelu", ["y"], ["w"], domain="com.example"),
        ],
        "m",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    assert model_ops(model) == {("", "If"), ("", "Neg"), ("com.example", "Gelu")}
    assert not all_ops_lowered(model)
    assert all_ops_lowered(_relu_case().model)


def test_main_prints_the_pass_rate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["Relu"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    n = len(plain_node_cases(["Relu"]))
    assert last.startswith(f"{n}/{n} passed (100.0%)"), last
