"""What the tests of the ``neffkit`` command share: a small model and the error-line check."""

from __future__ import annotations

import onnx
import onnx.parser
import pytest

#: Two outputs, a MatMul with a constant weight and an elementwise branch.
MODEL = """
<ir_version: 8, opset_import: ["" : 18]>
agraph (float[2,3] x) => (float[2,4] y, float[2,3] z) {
    w = Constant<value = float[3,4] {1.0, 0.5, -1.0, 2.0, 0.0, 1.0,
                                     1.5, -0.5, 2.0, -2.0, 0.5, 1.0}>()
    m = MatMul(x, w)
    y = Relu(m)
    c = Constant<value = float[3] {1.0, 2.0, 3.0}>()
    s = Add(x, c)
    z = Mul(s, x)
}
"""


def save_model(path, text: str = MODEL) -> str:
    """Saves the model of ONNX text ``text`` to ``path``; returns the path as a string."""
    onnx.save(onnx.parser.parse_model(text), path)
    return str(path)


def error_line(capsys: pytest.CaptureFixture) -> str:
    """The one ``neffkit: error: ...`` line on stderr (asserts there is exactly one)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("neffkit: error: ")
    return err[0]
