"""What the tests share and a user of neffkit would not need: saving models, the CLI's error
line, and a set of deliberately broken passes (``registered_pass`` in tests/conftest.py
registers one for a test)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
import onnx.parser
import pytest

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import Tensor
from neffkit.passes import Pass, PassContext, PassResult

#: Two outputs, a MatMul with a constant weight and an elementwise branch (the CLI tests' model).
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


def save_model(
    path: str | os.PathLike[str],
    model: str | onnx.ModelProto = MODEL,
    *,
    external: str | None = None,
) -> str:
    """Saves ``model`` (ONNX text or a ModelProto) to ``path``; returns the path as a string.

    ``external`` names the file beside it that gets every tensor (size threshold 0).
    """
    proto = onnx.parser.parse_model(model) if isinstance(model, str) else model
    if external is None:
        onnx.save(proto, str(path))
    else:
        onnx.save(
            proto, str(path), save_as_external_data=True, location=external, size_threshold=0
        )
    return str(path)


def error_line(capture: pytest.CaptureFixture[str]) -> str:
    """The one ``neffkit: error: ...`` line on stderr (asserts exactly one, and no traceback)."""
    err = capture.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("neffkit: error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- deliberately broken passes, each by one property ---------------------------------------------


@dataclass(frozen=True)
class DoNothing(Pass):
    """Correct and useless: never fires."""

    name: ClassVar[str] = "test-do-nothing"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        return PassResult(False)


@dataclass(frozen=True)
class ClaimsChange(Pass):
    """Says it changed the graph but did not."""

    name: ClassVar[str] = "test-claims-change"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        return PassResult(True)


@dataclass(frozen=True)
class HidesChange(Pass):
    """Adds a dead Identity node and says nothing changed."""

    name: ClassVar[str] = "test-hides-change"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        x = graph.inputs[0]
        graph.append(Node("Identity", [x], outputs=[Value("dead", x.type)]))
        return PassResult(False)


@dataclass(frozen=True)
class GrowsForever(Pass):
    """Wraps the first output in an Identity on every run: never a fixed point."""

    name: ClassVar[str] = "test-grows-forever"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        y = graph.outputs[0]
        node = graph.append(Node("Identity", [y], outputs=[Value("", y.type)]))
        graph.replace_output(y, node.outputs[0])
        return PassResult(True, {"added": 1})


@dataclass(frozen=True)
class KeepsGrowing(GrowsForever):
    """:class:`GrowsForever` that says so (not idempotent): only an iteration cap stops it."""

    name: ClassVar[str] = "test-keeps-growing"
    idempotent: ClassVar[bool] = False


@dataclass(frozen=True)
class BreaksUseLists(Pass):
    """Removes the producer of an output without replacing its uses."""

    name: ClassVar[str] = "test-breaks-ir"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        producer = graph.outputs[0].producer
        if producer is None:
            return PassResult(False)
        graph.remove(producer, safe=False)
        return PassResult(True)


@dataclass(frozen=True)
class BadAttribute(Pass):
    """Gives the first node an attribute its op does not have (the ONNX checker refuses it)."""

    name: ClassVar[str] = "test-bad-attribute"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        node = next(iter(graph))
        node.set_attr("no_such_attribute", 1)
        return PassResult(True)


@dataclass(frozen=True)
class Raises(Pass):
    """Crashes."""

    name: ClassVar[str] = "test-raises"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        raise RuntimeError("boom")


@dataclass(frozen=True)
class SwapSubOperands(Pass):
    """Wrong numbers: ``Sub(a, b) -> Sub(b, a)`` (and Div) when ``b`` is computed after ``a``
    (graph inputs and constants count as first), so a second run swaps nothing back."""

    name: ClassVar[str] = "test-swap-sub"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        swapped = 0
        for g in graph.all_graphs():
            order = {v: i for i, n in enumerate(g) for v in n.outputs}
            for node in g:
                a, b = (node.inputs + (None, None))[:2]
                if node.op_type not in ("Sub", "Div") or a is None or b is None:
                    continue
                if order.get(b, -1) > order.get(a, -1):
                    node.set_inputs([b, a])  # Sub(a, b) -> Sub(b, a): wrong on purpose
                    swapped += 1
        return PassResult(swapped > 0, {"swapped": swapped})


@dataclass(frozen=True)
class NegToRelu(Pass):
    """Wrong numbers: Neg(x) -> Relu(x); ``lie`` reports no change, ``every_time`` always does."""

    name: ClassVar[str] = "test-neg-to-relu"
    lie: bool = False
    every_time: bool = False

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        n = 0
        for node in graph:
            if node.op_type == "Neg":
                node.op_type = "Relu"
                n += 1
        return PassResult((n > 0 and not self.lie) or self.every_time)


@dataclass(frozen=True)
class Nudge(Pass):
    """Slightly wrong numbers: a float32 initializer of whole numbers gets ``delta`` added (so
    a second run finds none). 0.1 on values near 100 is outside float32's rtol 1e-4."""

    name: ClassVar[str] = "test-nudge"
    delta: float = 0.1

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        changed = False
        for v in graph.initializers.values():
            a = v.const.numpy() if v.const is not None else None
            if a is not None and a.dtype == np.float32 and np.all(a == np.round(a)):
                v.const = Tensor(a + np.float32(self.delta), v.const.name)
                graph.version += 1
                changed = True
        return PassResult(changed)
