"""Arithmetic rules: involutions, idempotent Relu, neutral operands (x * 1, x + 0, ...)."""

from __future__ import annotations

import pytest

from neffkit.passes import PassContext
from neffkit.passes.simplify import Simplify
from neffkit.testing.text import model_text

from .helpers import ONE, ZERO, check, model


def test_neg_neg_cancels() -> None:
    assert check(model("a = Neg(x)\nb = Neg(a)\ny = Relu(b)"), model("y = Relu(x)")).changed


def test_not_not_cancels() -> None:
    sig = "(bool[2,3] x) => (bool[2,3] y)"
    assert check(
        model("a = Not(x)\nb = Not(a)\ny = Xor(b, x)", sig), model("y = Xor(x, x)", sig)
    ).changed


def test_relu_relu_fuses() -> None:
    assert check(model("a = Relu(x)\ny = Relu(a)"), model("y = Relu(x)")).changed


@pytest.mark.parametrize(
    ("sig", "body"),
    [
        ("(float[2,3] x) => (float[2,3] y)", "a = Abs(x)\ny = Neg(a)"),
        ("(bool[2,3] x) => (bool[2,3] y)", "a = Xor(x, x)\ny = Not(a)"),
        ("(float[2,3] x) => (float[2,3] y)", "a = Sigmoid(x)\ny = Relu(a)"),
    ],
)
def test_involution_of_another_op_kept(sig: str, body: str) -> None:
    assert not check(model(body, sig)).changed


def test_double_neg_to_output_becomes_identity() -> None:
    assert check(model("a = Neg(x)\ny = Neg(a)"), model("y = Identity(x)")).changed


@pytest.mark.parametrize(
    "expr",
    [
        f"{ONE}\nt = Mul(x, one)",
        f"{ONE}\nt = Mul(one, x)",
        f"{ZERO}\nt = Add(x, zero)",
        f"{ZERO}\nt = Add(zero, x)",
        f"{ZERO}\nt = Sub(x, zero)",
        f"{ONE}\nt = Div(x, one)",
        f"{ONE}\nt = Pow(x, one)",
        "e = Constant<value = int64 {1}>()\nt = Pow(x, e)",
        "one = Constant<value_float = 1.0>()\nt = Mul(x, one)",
        "one = Constant<value = float[3] {1, 1, 1}>()\nt = Mul(x, one)",
        "one = Constant<value = float[1,3] {1, 1, 1}>()\nt = Mul(x, one)",
        "z = Constant<value = float[2,3] {0, 0, 0, 0, 0, 0}>()\nt = Add(z, x)",
    ],
)
def test_neutral_operand_removed(expr: str) -> None:
    assert check(model(f"{expr}\ny = Relu(t)"), model("y = Relu(x)")).changed


def test_integer_add_zero_removed() -> None:
    sig = "(int64[2,3] x) => (int64[2,3] y)"
    body = "z = Constant<value = int64 {0}>()\nt = Add(x, z)\ny = Neg(t)"
    assert check(model(body, sig), model("y = Neg(x)", sig)).changed


@pytest.mark.parametrize(
    ("sig", "body"),
    [
        (
            "(float[3] x) => (float[2,3] y)",
            "one = Constant<value = float[2,3] {1,1,1,1,1,1}>()\ny = Mul(x, one)",
        ),
        (
            "(float[N] x) => (float[3] y)",
            "one = Constant<value = float[3] {1, 1, 1}>()\ny = Mul(x, one)",
        ),
        ("(float x) => (float y)", "one = Constant<value = float[1] {1}>()\ny = Mul(x, one)"),
        ("(float[2,3] x) => (float[2,3] y)", f"{ZERO}\ny = Sub(zero, x)"),
        ("(float[2,3] x) => (float[2,3] y)", f"{ONE}\ny = Div(one, x)"),
        (
            "(float[2,3] x) => (float[2,3] y)",
            "two = Constant<value = float {2.0}>()\ny = Mul(x, two)",
        ),
        ("(float[2,3] x) => (float[2,3] y)", "h = Constant<value = float {1.0}>()\ny = Add(x, h)"),
    ],
)
def test_neutral_operand_kept(sig: str, body: str) -> None:
    assert not check(model(body, sig)).changed


def test_keep_signed_zeros_option() -> None:
    p = Simplify(keep_signed_zeros=True)
    assert not check(model(f"{ZERO}\nt = Add(x, zero)\ny = Relu(t)"), simplify=p).changed
    nz = "nz = Constant<value = float {-0.0}>()"
    assert check(
        model(f"{nz}\nt = Add(x, nz)\ny = Relu(t)"), model("y = Relu(x)"), simplify=p
    ).changed
    assert check(
        model(f"{ZERO}\nt = Sub(x, zero)\ny = Relu(t)"), model("y = Relu(x)"), simplify=p
    ).changed


def test_overridable_initializer_is_not_a_constant() -> None:
    sig = "(float[2,3] x, float[3] one) => (float[2,3] y)"
    text = f"{sig} <float[3] one = {{1, 1, 1}}> {{\nt = Mul(x, one)\ny = Relu(t)\n}}"
    before = model_text(f"m {text}")
    assert not check(before, ctx=PassContext(keep_overridable_inputs=True)).changed
    after = before.replace("t = Mul(x, one)\ny = Relu(t)", "y = Relu(x)")
    assert check(before, after, ctx=PassContext(keep_overridable_inputs=False)).changed
