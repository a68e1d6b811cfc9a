"""The IR's text form: ONNX's own textual syntax, through ``onnx.parser`` / ``onnx.printer``.

Tests state a graph before and after a pass as text::

    g = parse('''
        <ir_version: 8, opset_import: ["" : 17]>
        m (float[2] x) => (float[2] y) { y = Relu(x) }
    ''')
    assert print_graph(g) == ...
"""

from __future__ import annotations

import onnx
import onnx.parser
import onnx.printer

from neffkit.errors import FrontendError
from neffkit.ir.core import Graph
from neffkit.ir.serde import decode_model, to_onnx


def parse(text: str) -> Graph:
    """Parses a model (``<...> name (inputs) => (outputs) {...}``) or a bare graph."""
    src = text.strip()
    try:
        if src.startswith("<"):
            model = onnx.parser.parse_model(src)
        else:
            graph = onnx.parser.parse_graph(src)
            model = onnx.helper.make_model(graph)
    except onnx.parser.ParseError as e:
        raise FrontendError(f"cannot parse the text form: {e}") from e
    return decode_model(model)


def print_graph(graph: Graph) -> str:
    """The model in ONNX text syntax; names are made unique and deterministic by the exporter."""
    return onnx.printer.to_text(to_onnx(graph))


def print_body(graph: Graph) -> str:
    """Only the graph part of the text (no model header), handy in assertions."""
    return onnx.printer.to_text(to_onnx(graph).graph)


def normalize(text: str) -> str:
    """Canonical text of a model or graph given as text (parse, then print the graph part)."""
    return print_body(parse(text))
