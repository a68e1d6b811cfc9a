"""Torch lowerings of reductions (neffkit/backends/torch/ops/reduction.py): the ONNX node
conformance cases of its ops and their variants (see ``harness``).
"""

from __future__ import annotations

import pytest

from tests.backends.torch.ops import harness

# the ops ops/reduction.py lowers
OPS = (
    "ArgMax ArgMin CumProd CumSum ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax "
    "ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare"
).split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("reduction") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


@pytest.mark.parametrize(("case", "form"), harness.other_data_params(OPS))
def test_conformance_of_other_data(
    case: harness.Case, form: str, request: pytest.FixtureRequest
) -> None:
    harness.check_other_data(case, form, request)


@pytest.mark.parametrize(("case", "form"), harness.constant_input_params(OPS))
def test_conformance_with_constant_inputs(case: harness.Case, form: str) -> None:
    harness.check_constant_inputs(case, form)


@pytest.mark.parametrize(("case", "form", "const"), harness.scripted_params(OPS))
def test_scripted_case(case: harness.Case, form: str, const: bool) -> None:
    harness.check_scripted(case, form, const)


@pytest.mark.parametrize(("form", "edge", "how"), harness.edge_params(OPS))
def test_edge_case_matches_reference(form: str, edge: tuple, how: str) -> None:
    harness.check_edge(form, edge, how)


@pytest.mark.parametrize(("op", "form"), harness.required_params(OPS))
def test_required_op_has_cases(op: str, form: str) -> None:
    harness.check_required(op, form)
