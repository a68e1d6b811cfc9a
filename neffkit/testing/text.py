"""``model_text``: the ONNX text of a model from its graph alone, the header written once.

Pass tests state graphs as text (``m (float[2] x) => (float[2] y) { y = Neg(x) }``); the
``<ir_version, opset_import>`` header every such text needs is the same line in every test,
so it is made here::

    model_text("m (float[2] x) => (float[2] y) { y = Neg(x) }", opset=18)
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

#: The opset and IR version a test model gets unless it asks for others.
DEFAULT_OPSET = 17
DEFAULT_IR_VERSION = 8


def model_text(
    graph: str,
    *,
    opset: int = DEFAULT_OPSET,
    ir_version: int = DEFAULT_IR_VERSION,
    domains: Mapping[str, int] | None = None,
) -> str:
    """``graph`` (``name (inputs) => (outputs) <initializers> { nodes }``) with the header.

    ``domains`` adds opset imports of other domains (``{"com.example": 1}``). The graph text
    is dedented, so a triple-quoted block may keep its indentation.
    """
    return header(opset=opset, ir_version=ir_version, domains=domains) + textwrap.dedent(
        graph
    ).strip("\n")


def header(
    *,
    opset: int = DEFAULT_OPSET,
    ir_version: int = DEFAULT_IR_VERSION,
    domains: Mapping[str, int] | None = None,
) -> str:
    """The ``<ir_version: .., opset_import: [..]>`` line a model text starts with (and ``\\n``)."""
    imports = [f'"" : {opset}'] + [f'"{d}" : {v}' for d, v in (domains or {}).items()]
    return f"<ir_version: {ir_version}, opset_import: [{', '.join(imports)}]>\n"
