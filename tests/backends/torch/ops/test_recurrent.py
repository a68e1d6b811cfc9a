"""Torch lowerings of recurrent ops (neffkit/backends/torch/ops/recurrent.py): the ONNX node
conformance cases of its ops and their variants (see ``harness``), and hand-written models.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.backends.torch.ops import harness
from tests.backends.torch.ops.harness import agree, model_of, rand

# the ops ops/recurrent.py lowers
OPS = ("GRU LSTM RNN").split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("recurrent") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


def test_conformance_modules_script() -> None:
    """Modules lowered from a sample of the conformance cases script and give the same results."""
    harness.check_nn_modules_script(OPS)


def test_recurrent_with_sequence_lens_matches_onnxruntime() -> None:
    t, b, i, h = 5, 3, 4, 6
    model = model_of(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[{t}, {b}, {i}] x, int32[{b}] lens, float[2, {4 * h}, {i}] lw,
           float[2, {4 * h}, {h}] lr, float[2, {3 * h}, {i}] gw, float[2, {3 * h}, {h}] gr)
           => (ly, lh, lc, gy, gh) {{
            ly, lh, lc = LSTM <hidden_size = {h}, direction = "bidirectional"> (x, lw, lr, , lens)
            gy, gh = GRU <hidden_size = {h}, direction = "bidirectional",
                          linear_before_reset = 0> (x, gw, gr, , lens)
        }}""")
    inputs = [
        rand(t, b, i),
        np.array([5, 2, 3], dtype=np.int32),
        rand(2, 4 * h, i, seed=1) * 0.5,
        rand(2, 4 * h, h, seed=2) * 0.5,
        rand(2, 3 * h, i, seed=3) * 0.5,
        rand(2, 3 * h, h, seed=4) * 0.5,
    ]
    agree(model, inputs)
