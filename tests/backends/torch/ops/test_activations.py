"""Torch lowerings of activation functions (neffkit/backends/torch/ops/activations.py): the ONNX
node conformance cases of its ops and their variants (see ``harness``), and hand-written models.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.backends.torch.ops import harness
from tests.backends.torch.ops.edge_cases import _F, _a
from tests.backends.torch.ops.harness import math_edge_model, run_and_compare

# the ops ops/activations.py lowers
OPS = (
    "Celu Elu Gelu HardSigmoid HardSwish Hardmax LeakyRelu LogSoftmax Mish PRelu Relu Selu "
    "Shrink Sigmoid Softmax Softplus Softsign SwiGLU Swish Tanh ThresholdedRelu"
).split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("activations") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


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


# Before opset 13 Softmax, LogSoftmax and Hardmax coerce the input to 2-D at ``axis``; the
# ONNX reference evaluator applies the opset-13 (single axis) semantics, onnxruntime does not.
OLD_SOFTMAX = [
    ("softmax_v11_axis1", 11, "y = Softmax<axis=1>(x)", "float[2,3,4] x", [_a(2, 3, 4) / 7]),
    ("logsoftmax_v11_axis0", 11, "y = LogSoftmax<axis=0>(x)", "float[2,3] x", [_a(2, 3) / 5]),
    (
        "hardmax_v11",
        11,
        "y = Hardmax<axis=1>(x)",
        "float[2,2,2] x",
        [np.array([[[1, 3], [3, 0]], [[0, 0], [0, 0]]], _F)],
    ),
]


@pytest.mark.parametrize(
    ("opset", "node", "decl", "inputs"),
    [e[1:] for e in OLD_SOFTMAX],
    ids=[e[0] for e in OLD_SOFTMAX],
)
def test_old_softmax_matches_onnxruntime(opset: int, node: str, decl: str, inputs: list) -> None:
    import onnxruntime as ort

    model = math_edge_model(opset, node, decl, ir_version=7)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": inputs[0]})
    run_and_compare(model, list(inputs), expected, 1e-5, 1e-6, script=True)
