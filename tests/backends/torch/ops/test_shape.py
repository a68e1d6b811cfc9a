"""Torch lowerings of shape ops (neffkit/backends/torch/ops/shape.py): the ONNX node conformance
cases of its ops and their variants (see ``harness``), and hand-written models.
"""

from __future__ import annotations

import onnx
import onnx.parser
import pytest
import torch

import neffkit.backends.torch as tb
from neffkit.frontends.onnx import load
from tests.backends.torch.ops import harness

# the ops ops/shape.py lowers
OPS = ("Expand Flatten Identity Reshape Shape Size Squeeze Unsqueeze").split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("shape") == sorted(OPS)


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


_DYNAMIC_RESHAPE = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 3, 4] x) => (float[N, 12] y) {
    s = Shape(x)
    zero = Constant<value = int64 {0}>()
    n = Gather<axis = 0>(s, zero)
    axes = Constant<value = int64[1] {0}>()
    n1 = Unsqueeze(n, axes)
    rest = Constant<value = int64[1] {-1}>()
    target = Concat<axis = 0>(n1, rest)
    y = Reshape(x, target)
}
"""


def _dynamic_reshape_model() -> onnx.ModelProto:
    return onnx.parser.parse_model(_DYNAMIC_RESHAPE)


def test_runtime_shape_reshape_runs_and_scripts() -> None:
    g = load(_dynamic_reshape_model())
    gm = tb.compile(g)
    scripted = torch.jit.script(gm)
    for n in (1, 5):
        x = torch.randn(n, 3, 4)
        want = x.reshape(n, 12)
        assert torch.equal(gm(x)[0], want)
        assert torch.equal(scripted(x)[0], want)


_STATIC_MODEL = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[1, 150528] x) => (y, z, w) {
    s = Constant<value = int64[4] {1, 3, 224, 224}>()
    y = Reshape(x, s)
    starts = Constant<value = int64[1] {1}>()
    ends = Constant<value = int64[1] {3}>()
    axes = Constant<value = int64[1] {-1}>()
    z = Slice(y, starts, ends, axes)
    p = Constant<value = int64[8] {0, 0, 1, 1, 0, 0, 1, 1}>()
    w = Pad(y, p)
}
"""


def test_constant_shapes_emit_static_lists() -> None:
    gm = tb.compile(load(onnx.parser.parse_model(_STATIC_MODEL)))
    code = gm.code
    assert ".reshape([1, 3, 224, 224])" in code
    assert "slice(1, 3, None)" in code
    assert "constant_pad_nd(" in code and "[1, 1, 1, 1]" in code
    assert "int_list" not in code and "slice_dynamic" not in code
    x = torch.randn(1, 150528)
    y, z, w = torch.jit.script(gm)(x)
    assert torch.equal(y, x.reshape(1, 3, 224, 224))
    assert torch.equal(z, y[..., 1:3])
    assert w.shape == (1, 3, 226, 226)


def test_runtime_shape_reads_sizes_not_the_shape_tensor() -> None:
    # Shape -> Gather -> Concat is followed while lowering: x.size(0), never int_list(tensor)
    code = tb.compile(load(_dynamic_reshape_model())).code
    assert "x.size(0)" in code and "int_list" not in code


def test_shape_given_as_input_uses_helper() -> None:
    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[2, 6] x, int64[2] s) => (float[3, 4] y) {
            y = Reshape(x, s)
        }
        """
    )
    gm = tb.compile(load(model))
    assert "int_list" in gm.code
    x = torch.randn(2, 6)
    assert torch.equal(gm(x, torch.tensor([3, 4]))[0], x.reshape(3, 4))
