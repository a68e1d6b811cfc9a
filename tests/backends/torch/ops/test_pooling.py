"""Torch lowerings of pooling (neffkit/backends/torch/ops/pooling.py): the ONNX node conformance
cases of its ops and their variants (see ``harness``), and hand-written models.
"""

from __future__ import annotations

import pytest

from tests.backends.torch.ops import harness
from tests.backends.torch.ops.harness import agree, model_of, rand

# the ops ops/pooling.py lowers
OPS = ("AveragePool GlobalAveragePool GlobalLpPool GlobalMaxPool LpPool MaxPool MaxUnpool").split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("pooling") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


def test_conformance_modules_script() -> None:
    """Modules lowered from a sample of the conformance cases script and give the same results."""
    harness.check_nn_modules_script(OPS)


@pytest.mark.parametrize(("op", "form"), harness.required_params(OPS))
def test_required_op_has_cases(op: str, form: str) -> None:
    harness.check_required(op, form)


@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_indices_on_runtime_shapes(storage_order: int) -> None:
    model = model_of(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, C, H, W] x) => (y, i) {{
            y, i = MaxPool <kernel_shape = [3, 2], strides = [2, 2], auto_pad = "SAME_UPPER",
                            storage_order = {storage_order}> (x)
        }}""")
    code = agree(model, [rand(2, 3, 7, 8)])
    assert "pool_nd" in code


def test_pools_with_asymmetric_pads_and_ceil_mode() -> None:
    model = model_of("""
        <ir_version: 8, opset_import: ["" : 19]>
        g (float[1, 2, 9, 10] x) => (a, m, l, gl) {
            a = AveragePool <kernel_shape = [3, 3], strides = [2, 2], pads = [1, 0, 2, 1],
                             ceil_mode = 1, dilations = [2, 1]> (x)
            m = MaxPool <kernel_shape = [3, 3], strides = [2, 2], pads = [0, 1, 1, 0],
                         ceil_mode = 1> (x)
            l = LpPool <kernel_shape = [2, 2], strides = [2, 2], p = 3> (x)
            gl = GlobalLpPool <p = 3> (x)
        }""")
    agree(model, [rand(1, 2, 9, 10)])
