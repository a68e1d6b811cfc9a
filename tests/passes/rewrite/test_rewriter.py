"""The ``Rewriter``'s facts: shapes derived through producers for values that declare none,
constants (never an input the caller may feed), dtypes; and edits that requeue what they
touch."""

from __future__ import annotations

import numpy as np
import pytest

from neffkit.ir.text import parse
from neffkit.passes import PassContext
from neffkit.passes.rewrite.rewriter import Rewriter
from neffkit.testing.text import model_text


def _rewriter(sig: str, body: str, inits: str = "") -> tuple[Rewriter, dict]:
    g = parse(model_text(f"m {sig} {'<' + inits + '>' if inits else ''} {{\n{body}\n}}"))
    values = {v.name: v for n in g for v in n.outputs}
    return Rewriter(g, PassContext()), values


@pytest.mark.parametrize(
    ("sig", "body", "want"),
    [
        ("(float[N,3] x, float[3] b) => (float[N,3] y)", "t = Add(x, b)\ny = Relu(t)", ("N", 3)),
        ("(float[2,3] x) => (float[3,2] y)", "t = Transpose(x)\ny = Relu(t)", (3, 2)),
        ("(float[B,2,3] x, float[3,5] w) => (float[B,2,5] y)", "t = MatMul(x, w)\ny = Relu(t)",
         ("B", 2, 5)),
        ("(float[4,3] x, float[5,3] w) => (float[4,5] y)", "t = Gemm<transB=1>(x, w)\ny = Relu(t)",
         (4, 5)),
        ("(float[2,3,4] x) => (float[2,12] y)",
         "s = Constant<value = int64[2] {0, -1}>()\nt = Reshape(x, s)\ny = Relu(t)", (2, 12)),
        ("(float[2,3] x, float[4] b) => (float[2,3] y)", "t = Add(x, b)\ny = Relu(t)", None),
    ],
)  # fmt: skip
def test_shapes_are_derived_through_producers(sig: str, body: str, want: tuple | None) -> None:
    rw, values = _rewriter(sig, body)
    t = values["t"]
    assert t.shape is None  # nothing declared: derived
    assert rw.shape(t) == want
    assert rw.rank(t) == (None if want is None else len(want))


def test_static_shape_forget_shape_and_dtype() -> None:
    rw, values = _rewriter("(float[N,3] x) => (float[N,3] y)", "t = Cast<to=11>(x)\ny = Relu(t)")
    t = values["t"]
    assert rw.shape(t) == ("N", 3) and rw.static_shape(t) is None
    assert rw.dtype(t) == 11  # a Cast's target
    rw.forget_shape(t)
    assert rw.shape(t) == ("N", 3)


def test_an_initializer_the_caller_may_feed_is_no_constant() -> None:
    text = model_text(
        "m (float[2] x, float[2] c) => (float[2] y) <float[2] c = {1, 2}> { y = Add(x, c) }"
    )
    g = parse(text)
    c = next(iter(g)).inputs[1]
    kept = Rewriter(g, PassContext(keep_overridable_inputs=True))
    assert kept.is_overridable(c) and kept.const(c) is None and kept.const_layout(c) is None
    free = Rewriter(g, PassContext(keep_overridable_inputs=False))
    assert not free.is_overridable(c)
    np.testing.assert_array_equal(free.const(c), [1, 2])
    assert free.const(c, max_bytes=4) is None  # bigger than asked for: not read in


def test_replace_requeues_the_readers_and_removes_what_dies() -> None:
    rw, values = _rewriter("(float[2] x) => (float[2] y)", "a = Neg(x)\nb = Neg(a)\ny = Relu(b)")
    b = values["b"]
    relu = b.users[0]
    rw.replace(b, rw.root.inputs[0])
    assert relu in rw.touched
    rw.sweep(b.producer)
    assert [n.op_type for n in rw.root] == ["Relu"] and rw.dead_nodes == 2
