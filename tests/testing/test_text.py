"""``model_text`` writes the header once for every test model text."""

from __future__ import annotations

import onnx.parser

import neffkit.testing
from neffkit.ir.text import parse
from neffkit.testing.text import header, model_text

GRAPH = "m (float[2] x) => (float[2] y) { y = Neg(x) }"


def test_the_default_header_parses_with_the_graph() -> None:
    text = model_text(GRAPH)
    assert text == '<ir_version: 8, opset_import: ["" : 17]>\n' + GRAPH
    proto = onnx.parser.parse_model(text)
    assert proto.ir_version == 8 and [(o.domain, o.version) for o in proto.opset_import] == [
        ("", 17)
    ]
    assert [n.op_type for n in parse(text)] == ["Neg"]
    assert neffkit.testing.model_text is model_text


def test_opset_ir_version_and_other_domains() -> None:
    text = model_text(GRAPH, opset=18, ir_version=9, domains={"com.example": 1})
    proto = onnx.parser.parse_model(text)
    assert proto.ir_version == 9
    assert {o.domain: o.version for o in proto.opset_import} == {"": 18, "com.example": 1}
    assert header(opset=13) == '<ir_version: 8, opset_import: ["" : 13]>\n'


def test_an_indented_block_is_dedented() -> None:
    block = """
        m (float[2] x) => (float[2] y) {
            y = Neg(x)
        }
    """
    assert model_text(block).splitlines()[1:] == [
        "m (float[2] x) => (float[2] y) {",
        "    y = Neg(x)",
        "}",
    ]
