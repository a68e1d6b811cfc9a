"""Torch lowerings of tensor generators (neffkit/backends/torch/ops/generators.py): the ONNX node
conformance cases of its ops and their variants (see ``harness``).
"""

from __future__ import annotations

import pytest

from tests.backends.torch.ops import harness

# the ops ops/generators.py lowers
OPS = ("Constant ConstantOfShape EyeLike Range").split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("generators") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


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
