"""Torch lowerings of layout ops (neffkit/backends/torch/ops/layout.py): the ONNX node conformance
cases of its ops and their variants (see ``harness``).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

import neffkit.backends.torch as tb
from neffkit.frontends.onnx import load
from tests.backends.torch.ops import harness
from tests.backends.torch.ops.harness import model_of, rand

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


def test_constant_pad_traces_as_constant_pad_nd() -> None:
    # the name accelerator op lists carry (Neuron's Inf1 list has constant_pad_nd, not the
    # composite aten::pad that F.pad traces as), for float and int tensors alike
    import torch

    for dtype, value in (("float", "1.5"), ("int64", "2")):
        model = model_of(f"""
            <ir_version: 8, opset_import: ["" : 18]>
            g ({dtype}[2, 3] x) => (y) <int64[4] p = {{0, 1, 1, 0}}, {dtype} v = {{{value}}}> {{
                y = Pad <mode = "constant"> (x, p, v)
            }}""")
        graph = load(model)
        x = (rand(2, 3) * 10).astype("float32" if dtype == "float" else "int64")
        traced = torch.jit.trace(tb.compile(graph), (torch.from_numpy(x),))
        kinds = {n.kind() for n in traced.inlined_graph.nodes()}
        assert "aten::constant_pad_nd" in kinds and "aten::pad" not in kinds
        want = ReferenceEvaluator(model).run(None, {"x": x})[0]
        np.testing.assert_array_equal(tb.run(graph, [x])[0], want)
