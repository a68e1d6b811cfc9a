"""Torch lowerings of normalizations (neffkit/backends/torch/ops/normalization.py): the ONNX node
conformance cases of its ops and their variants (see ``harness``), and hand-written models.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

import neffkit.backends.torch as tb
from neffkit.frontends.onnx import load
from tests.backends.torch.ops import harness
from tests.backends.torch.ops.harness import model_of, rand

# the ops ops/normalization.py lowers
OPS = (
    "BatchNormalization GroupNormalization InstanceNormalization LRN LayerNormalization "
    "LpNormalization MeanVarianceNormalization RMSNormalization"
).split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("normalization") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


def test_conformance_modules_script() -> None:
    """Modules lowered from a sample of the conformance cases script and give the same results."""
    harness.check_nn_modules_script(OPS)


@pytest.mark.parametrize(("op", "form"), harness.required_params(OPS))
def test_required_op_has_cases(op: str, form: str) -> None:
    harness.check_required(op, form)


def test_lrn_even_size_matches_spec() -> None:
    # torch's local_response_norm centres even windows the other way (and onnxruntime only
    # takes odd sizes): compare with the spec's formula, as the ONNX test generator writes it
    size, alpha, beta, bias = 4, 0.01, 0.6, 1.5
    model = model_of(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 7, 3, 3] x) => (y) {{
            y = LRN <size = {size}, alpha = {alpha}, beta = {beta}, bias = {bias}> (x)
        }}""")
    x = rand(2, 7, 3, 3)
    sq = np.zeros_like(x)
    for c in range(x.shape[1]):
        lo = max(0, c - (size - 1) // 2)
        hi = min(x.shape[1], c + -(-(size - 1) // 2) + 1)
        sq[:, c] = (x[:, lo:hi] ** 2).sum(1)
    want = x / (bias + alpha / size * sq) ** beta
    np.testing.assert_allclose(tb.run(load(model), [x])[0], want, rtol=1e-5, atol=1e-6)


def test_group_normalization_opset18_per_group_scale() -> None:
    model = model_of("""
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[2, 6, 3, 2] x, float[3] s, float[3] b) => (y) {
            y = GroupNormalization <num_groups = 3, epsilon = 0.001> (x, s, b)
        }""")
    inputs = [rand(2, 6, 3, 2), rand(3, seed=1), rand(3, seed=2)]
    want = ReferenceEvaluator(model).run(None, dict(zip("xsb", inputs)))[0]
    np.testing.assert_allclose(tb.run(load(model), inputs)[0], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, 2, -2])
def test_layer_norm_with_symbolic_leading_dims_is_one_torch_call(axis: int) -> None:
    # only the normalized dims must be static for F.layer_norm: a decoder step whose sequence
    # dim is symbolic gets the one fused call, not the statistics spelled out
    d = "4" if axis == -1 else "3, 4"
    model = model_of(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[B, T, 3, 4] x, float[{d}] s, float[{d}] b) => (y) {{
            y = LayerNormalization <axis = {axis}, epsilon = 0.001> (x, s, b)
        }}""")
    graph = load(model)
    gm = tb.compile(graph)
    targets = {getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes}
    assert "layer_norm" in targets and "layer_norm_stats" not in targets
    shape = (4,) if axis == -1 else (3, 4)
    for batch, steps in ((1, 2), (2, 5)):
        feeds = [rand(batch, steps, 3, 4), rand(*shape), rand(*shape)]
        want = ReferenceEvaluator(model).run(None, dict(zip(("x", "s", "b"), feeds)))[0]
        np.testing.assert_allclose(tb.run(graph, feeds)[0], want, rtol=1e-5, atol=1e-5)
