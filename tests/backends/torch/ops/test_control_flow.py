"""Torch lowerings of control flow (neffkit/backends/torch/ops/control_flow.py): the ONNX node
conformance cases of its ops and their variants (see ``harness``).
"""

from __future__ import annotations

import pytest

from tests.backends.torch.ops import harness

# the ops ops/control_flow.py lowers
OPS = ("If Loop Scan").split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("control_flow") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


@pytest.mark.parametrize(("case", "form", "const"), harness.scripted_params(OPS))
def test_scripted_case(case: harness.Case, form: str, const: bool) -> None:
    harness.check_scripted(case, form, const)
