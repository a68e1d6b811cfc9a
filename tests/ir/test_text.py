"""The text form (ONNX textual syntax) round-trips through the IR."""

from __future__ import annotations

import pytest

from neffkit.errors import FrontendError
from neffkit.ir.text import normalize, parse, print_body, print_graph

MODELS = [
    """
    <ir_version: 8, opset_import: ["" : 17]>
    m (float[N, 4] x, float[4, 3] w) => (float[N, 3] y) {
        h = MatMul(x, w)
        y = Relu(h)
    }
    """,
    """
    <ir_version: 8, opset_import: ["" : 17]>
    m (float[2, 3] x) => (float[3, 2] y, int64[2] s) {
        t = Transpose<perm = [1, 0]>(x)
        y = Identity(t)
        s = Shape(t)
    }
    """,
    """
    <ir_version: 8, opset_import: ["" : 17]>
    m (int64 n, bool c, float[1] x) => (float[1] out) {
        out = Loop(n, c, x) <body = b (int64 i, bool ci, float[1] v) => (bool co, float[1] w) {
            co = Identity(ci)
            w = Add(v, x)
        }>
    }
    """,
]


@pytest.mark.parametrize("text", MODELS)
def test_text_round_trip_is_the_identity(text: str) -> None:
    once = print_graph(parse(text))
    twice = print_graph(parse(once))
    assert once == twice
    assert normalize(text) == print_body(parse(once))


def test_names_stay_readable_and_ssa_across_scopes() -> None:
    body = print_body(parse(MODELS[2]))
    assert "out = Loop (n, c, x)" in body
    assert "w = Add (v, x)" in body


def test_parse_error_is_a_frontend_error() -> None:
    with pytest.raises(FrontendError, match="cannot parse"):
        parse("<ir_version: 8> m (float x) => (float y) { y = }")
