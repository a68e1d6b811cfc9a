"""Torch lowerings of quantization ops (neffkit/backends/torch/ops/quantization.py): the ONNX node
conformance cases of its ops and their variants (see ``harness``).
"""

from __future__ import annotations

import pytest

from tests.backends.torch.ops import harness

# the ops ops/quantization.py lowers
OPS = (
    "ConvInteger DequantizeLinear DynamicQuantizeLinear MatMulInteger QLinearConv QLinearMatMul "
    "QuantizeLinear"
).split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("quantization") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


def test_conformance_modules_script() -> None:
    """Modules lowered from a sample of the conformance cases script and give the same results."""
    harness.check_nn_modules_script(OPS)
