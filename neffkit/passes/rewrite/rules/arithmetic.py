"""Arithmetic rules: involutions that cancel (``Neg(Neg(x))``), idempotent ops that fuse
(``Relu(Relu(x))``), and neutral constant operands (``x * 1``, ``x + 0``, ``Pow(x, 1)``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from neffkit.ir.core import Node
from neffkit.ir.tensor import onnx_dtype
from neffkit.passes.rewrite.patterns import keeps_shape, producer
from neffkit.passes.rewrite.registry import rule
from neffkit.passes.rewrite.rewriter import Rewriter


def _cancel_pair(node: Node, rw: Rewriter) -> bool:
    inner = producer(node.inputs[0], node.op_type)
    if inner is None or inner.inputs[0] is None:
        return False
    rw.replace(node.outputs[0], inner.inputs[0])
    return True


@rule("Neg")
def cancel_neg_neg(node: Node, rw: Rewriter) -> bool:
    """Neg(Neg(x)) -> x"""
    return _cancel_pair(node, rw)


@rule("Not")
def cancel_not_not(node: Node, rw: Rewriter) -> bool:
    """Not(Not(x)) -> x"""
    return _cancel_pair(node, rw)


@rule("Relu")
def fuse_relu_relu(node: Node, rw: Rewriter) -> bool:
    """Relu(Relu(x)) -> Relu(x)"""
    inner = producer(node.inputs[0], "Relu")
    if inner is None or inner.inputs[0] is None:
        return False
    rw.set_input(node, 0, inner.inputs[0])
    return True


_NEUTRAL_MAX_BYTES = 1 << 20  # neutral constants are small; a big weight is not read to check


def _drop_neutral(
    node: Node, rw: Rewriter, slots: tuple[int, ...], test: Callable[[np.ndarray], bool]
) -> bool:
    """Replaces ``node`` by its other operand when the constant in one of ``slots`` is neutral."""
    if len(node.inputs) != 2:
        return False
    for ci in slots:
        x = node.inputs[1 - ci]
        c = rw.const(node.inputs[ci], _NEUTRAL_MAX_BYTES)
        if x is None or c is None or c.dtype.kind not in "iuf":
            continue
        xt = rw.dtype(x)
        if node.op_type != "Pow" and xt is not None and xt != onnx_dtype(c.dtype):
            continue
        if not test(c) or not keeps_shape(rw, x, tuple(c.shape)):
            continue
        rw.replace(node.outputs[0], x)
        return True
    return False


def _ones(c: np.ndarray) -> bool:
    return bool(np.all(c == 1))


@rule("Mul")
def drop_mul_one(node: Node, rw: Rewriter) -> bool:
    """x * 1 -> x;  1 * x -> x"""
    return _drop_neutral(node, rw, (1, 0), _ones)


@rule("Add")
def drop_add_zero(node: Node, rw: Rewriter) -> bool:
    """x + 0 -> x;  0 + x -> x

    Float: -0.0 + 0 is +0.0; exact with keep-signed-zeros for -0 only.
    """

    def zero(c: np.ndarray) -> bool:
        if not np.all(c == 0):
            return False
        return not (rw.keep_signed_zeros and c.dtype.kind == "f") or bool(np.all(np.signbit(c)))

    return _drop_neutral(node, rw, (1, 0), zero)


@rule("Sub")
def drop_sub_zero(node: Node, rw: Rewriter) -> bool:
    """x - 0 -> x   (x - (+0.0) is exact; x - (-0.0) turns -0.0 into +0.0)"""

    def zero(c: np.ndarray) -> bool:
        if not np.all(c == 0):
            return False
        return not (rw.keep_signed_zeros and c.dtype.kind == "f") or not np.any(np.signbit(c))

    return _drop_neutral(node, rw, (1,), zero)


@rule("Div")
def drop_div_one(node: Node, rw: Rewriter) -> bool:
    """x / 1 -> x"""
    return _drop_neutral(node, rw, (1,), _ones)


@rule("Pow")
def drop_pow_one(node: Node, rw: Rewriter) -> bool:
    """Pow(x, 1) -> x"""
    return _drop_neutral(node, rw, (1,), _ones)
