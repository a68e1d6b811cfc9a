"""Torch lowerings of resize and grid sampling (neffkit/backends/torch/ops/resize.py): the ONNX
node conformance cases of its ops and their variants (see ``harness``), and hand-written models.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import neffkit.backends.torch as tb
from neffkit.frontends.onnx import load
from tests.backends.torch.ops import harness
from tests.backends.torch.ops.harness import rand

# the ops ops/resize.py lowers
OPS = ("AffineGrid GridSample Resize Upsample").split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("resize") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


def test_conformance_modules_script() -> None:
    """Modules lowered from a sample of the conformance cases script and give the same results."""
    harness.check_nn_modules_script(OPS)


@pytest.mark.parametrize(("op", "form"), harness.required_params(OPS))
def test_required_op_has_cases(op: str, form: str) -> None:
    harness.check_required(op, form)


def _resize_model(
    shape: tuple[int, ...], mode: str, coord: str, nearest: str, scales=None, sizes=None
) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array([], np.float32), "roi")]
    ins = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        ins.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        ins += ["", "sizes"]
    node = helper.make_node(
        "Resize",
        ins,
        ["y"],
        mode=mode,
        coordinate_transformation_mode=coord,
        nearest_mode=nearest,
    )
    g = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize("shape", [(1, 2, 5, 7), (2, 1, 4), (1, 1, 3, 4, 5)])
def test_resize_constant_scales_match_reference(shape: tuple[int, ...]) -> None:
    fast = 0
    x = rand(*shape)
    for mode, coord, nearest in [
        ("nearest", "asymmetric", "floor"),
        ("nearest", "half_pixel", "round_prefer_floor"),
        ("nearest", "half_pixel", "round_prefer_ceil"),
        ("nearest", "align_corners", "ceil"),
        ("linear", "half_pixel", "round_prefer_floor"),
        ("linear", "align_corners", "round_prefer_floor"),
        ("linear", "pytorch_half_pixel", "round_prefer_floor"),
        ("linear", "asymmetric", "round_prefer_floor"),
        ("cubic", "half_pixel", "round_prefer_floor"),
    ]:
        for f in (2.0, 3.0, 0.5, 1.5):
            spatial = [int(s * f) for s in shape[2:]]
            for model in (
                _resize_model(shape, mode, coord, nearest, scales=[1, 1] + [f] * (len(shape) - 2)),
                _resize_model(shape, mode, coord, nearest, sizes=list(shape[:2]) + spatial),
            ):
                want = ReferenceEvaluator(model).run(None, {"x": x})[0]
                graph = load(model)
                gm = tb.compile(graph)
                fast += "interpolate" in gm.code
                got = tb.run(graph, [x], module=gm)[0]
                assert got.shape == want.shape, (mode, coord, nearest, f)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert fast > 0  # the fast path was taken (and checked) for some of them
