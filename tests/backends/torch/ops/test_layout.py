"""Torch lowerings of layout ops (neffkit/backends/torch/ops/layout.py): the ONNX node conformance
cases of its ops and their variants (see ``harness``).
"""

from __future__ import annotations

import pytest

from tests.backends.torch.ops import harness

# the ops ops/layout.py lowers
OPS = ("CenterCropPad Concat DepthToSpace Pad Slice SpaceToDepth Split Tile Transpose").split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("layout") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


@pytest.mark.parametrize(("case", "form"), harness.constant_input_params(OPS))
def test_conformance_with_constant_inputs(case: harness.Case, form: str) -> None:
    harness.check_constant_inputs(case, form)


@pytest.mark.parametrize(("case", "form", "const"), harness.scripted_params(OPS))
def test_scripted_case(case: harness.Case, form: str, const: bool) -> None:
    harness.check_scripted(case, form, const)


def test_conformance_modules_script() -> None:
    """Modules lowered from a sample of the conformance cases script and give the same results."""
    harness.check_nn_modules_script(OPS)


@pytest.mark.parametrize(("form", "edge", "how"), harness.edge_params(OPS))
def test_edge_case_matches_reference(form: str, edge: tuple, how: str) -> None:
    harness.check_edge(form, edge, how)


@pytest.mark.parametrize(("op", "form"), harness.required_params(OPS))
def test_required_op_has_cases(op: str, form: str) -> None:
    harness.check_required(op, form)
