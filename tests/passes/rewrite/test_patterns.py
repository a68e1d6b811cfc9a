"""Pattern helpers: matching a producer, int operands that were attributes before an opset,
broadcasting that keeps a shape, and new constant operands."""

from __future__ import annotations

import numpy as np

from neffkit.ir.core import Graph
from neffkit.ir.text import parse
from neffkit.passes import PassContext
from neffkit.passes.rewrite.patterns import (
    ABSENT,
    int_list,
    ints_operand,
    is_used,
    keeps_shape,
    producer,
    rebind,
)
from neffkit.passes.rewrite.rewriter import Rewriter
from neffkit.testing.text import model_text


def _graph(body: str, opset: int = 17, sig: str = "(float[2,1,3] x) => (float[2,3] y)") -> Graph:
    return parse(model_text(f"m {sig} {{\n{body}\n}}", opset=opset))


def test_producer_matches_an_onnx_op_of_the_type_only() -> None:
    g = _graph("n = Neg(x)\ny = Squeeze<axes=[1]>(n)", opset=11)
    neg, squeeze = list(g)
    assert producer(squeeze.inputs[0], "Neg") is neg
    assert producer(squeeze.inputs[0], "Abs") is None
    assert producer(neg.inputs[0], "Neg") is None  # a graph input has no producer
    assert producer(None, "Neg") is None
    assert is_used(neg.outputs[0]) and is_used(squeeze.outputs[0])


def test_ints_operand_reads_the_attribute_before_the_opset_and_the_input_from_it() -> None:
    old = _graph("y = Squeeze<axes=[1]>(x)", opset=11)
    (sq,) = list(old)
    assert ints_operand(sq, Rewriter(old, PassContext()), "axes", 1, 13) == [1]
    new = _graph("a = Constant<value = int64[1] {1}>()\ny = Squeeze(x, a)")
    sq = list(new)[1]
    rw = Rewriter(new, PassContext())
    assert ints_operand(sq, rw, "axes", 1, 13) == [1]
    none_given = _graph("y = Squeeze(x)")
    (sq,) = list(none_given)
    assert ints_operand(sq, Rewriter(none_given, PassContext()), "axes", 1, 13) is ABSENT
    assert int_list(np.array([[1, 2]], np.int64)) == [1, 2]
    assert int_list(np.array([1.0])) is None


def test_keeps_shape_and_rebind() -> None:
    g = _graph("y = Squeeze<axes=[1]>(x)", opset=11)
    rw = Rewriter(g, PassContext())
    x = g.inputs[0]
    assert keeps_shape(rw, x, (3,)) and keeps_shape(rw, x, (2, 1, 1))
    assert not keeps_shape(rw, x, (2, 2, 3))
    (sq,) = list(g)
    rebind(rw, sq, 1, np.array([1], np.int64), "_axes")  # appended: the node had one input
    assert [v.name for v in sq.inputs] == ["x", "y_axes"] and sq in rw.touched
