"""Torch lowerings of convolutions (neffkit/backends/torch/ops/conv.py): the ONNX node conformance
cases of its ops and their variants (see ``harness``), and hand-written models.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import numpy_helper

import neffkit.backends.onnxruntime as ort_backend
import neffkit.backends.torch as tb
from neffkit.frontends.onnx import load
from tests.backends.torch.ops import harness
from tests.backends.torch.ops.harness import agree, model_of, rand

# the ops ops/conv.py lowers
OPS = ("Col2Im Conv ConvTranspose DeformConv").split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("conv") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


def test_conformance_modules_script() -> None:
    """Modules lowered from a sample of the conformance cases script and give the same results."""
    harness.check_nn_modules_script(OPS)


@pytest.mark.parametrize(("op", "form"), harness.required_params(OPS))
def test_required_op_has_cases(op: str, form: str) -> None:
    harness.check_required(op, form)


def test_depthwise_conv1d_matches_onnxruntime() -> None:
    model = model_of("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 16, 50] x, float[16, 1, 15] w, float[16] b) => (float[2, 16, 50] y) {
            y = Conv <group = 16, pads = [7, 7]> (x, w, b)
        }""")
    code = agree(model, [rand(2, 16, 50), rand(16, 1, 15, seed=1), rand(16, seed=2)])
    assert "torch.conv1d(x, w, b, [1], [7], [1], 16)" in code


def test_conv2d_asymmetric_pads_matches_onnxruntime() -> None:
    model = model_of("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 3, 11, 9] x, float[4, 3, 3, 2] w) => (y) {
            y = Conv <pads = [0, 1, 2, 0], strides = [2, 1], dilations = [1, 2]> (x, w)
        }""")
    code = agree(model, [rand(1, 3, 11, 9), rand(4, 3, 3, 2, seed=1)])
    assert "torch.nn.functional.pad(x, [1, 0, 0, 2])" in code


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_conv_auto_pad_on_runtime_shapes(auto_pad: str) -> None:
    # symbolic spatial dims: the pads are computed at run time by pad_same
    model = model_of(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 2, H, W] x, float[3, 2, 3, 4] w) => (y) {{
            y = Conv <auto_pad = "{auto_pad}", strides = [2, 3]> (x, w)
        }}""")
    code = agree(model, [rand(2, 2, 9, 10), rand(3, 2, 3, 4, seed=1)])
    assert "pad_same" in code


def test_conv_transpose_on_runtime_shapes() -> None:
    model = model_of("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 2, H, W] x, float[2, 3, 3, 3] w, float[3] b) => (y) {
            y = ConvTranspose <strides = [3, 2], output_shape = [10, 8]> (x, w, b)
        }""")
    code = agree(model, [rand(1, 2, 3, 3), rand(2, 3, 3, 3, seed=1), rand(3, seed=2)])
    assert "convtranspose_fit" in code


def test_conv_transpose_asymmetric_pads_and_group() -> None:
    model = model_of("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4, 5, 6] x, float[4, 3, 3, 2] w, float[6] b) => (y) {
            y = ConvTranspose <strides = [2, 2], pads = [1, 0, 0, 1], group = 2,
                               output_padding = [1, 0]> (x, w, b)
        }""")
    agree(model, [rand(1, 4, 5, 6), rand(4, 3, 3, 2, seed=1), rand(6, seed=2)])


def test_conv_gemm_model_scripts() -> None:
    """A small conv + pool + gemm model: torch.jit.script of the compiled module gives the same
    outputs as eager torch and onnxruntime."""
    model = model_of("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 3, 16, 16] x) => (y) {
            c = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (x, w, b)
            r = Relu (c)
            p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
            f = Flatten (p)
            y = Gemm <transB = 1, alpha = 0.5> (f, fc_w, fc_b)
        }""")
    rng = np.random.default_rng(3)
    for name, shape in [("w", (8, 3, 3, 3)), ("b", (8,)), ("fc_w", (10, 128)), ("fc_b", (10,))]:
        model.graph.initializer.append(
            numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        )
    x = rand(2, 3, 16, 16)
    graph = load(model)
    scripted = torch.jit.script(tb.compile(graph))
    eager = tb.run(graph, [x])
    got = tb.run(graph, [x], module=scripted)
    want = ort_backend.run(model, [x])
    np.testing.assert_allclose(got[0], eager[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)
