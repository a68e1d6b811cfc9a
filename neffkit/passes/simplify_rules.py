"""The ``simplify`` rule catalogue: small named rules, bucketed by op type in ``RULES``.

A rule is ``rule(node, rw) -> bool``: it looks at ``node`` (an ONNX-domain node of the op its
bucket names), and when its pattern matches it rewrites through the ``Rewriter`` ``rw`` and
returns True; otherwise it changes nothing and returns False. Each rule checks the ONNX
semantics of the opset in use (``rw.opset``). Fusions (BatchNormalization folding,
MatMul + Add -> Gemm) and the Cast exactness table live in ``simplify_fusions``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from neffkit.ir.core import Node, Value
from neffkit.ir.tensor import onnx_dtype
from neffkit.passes.simplify import Rewriter, Rule, int_list, producer
from neffkit.passes.simplify_fusions import (
    drop_same_type_cast,
    fold_add_into_batchnorm,
    fold_add_into_conv,
    fold_add_into_gemm,
    fold_batchnorm_into_conv,
    fold_batchnorm_into_gemm,
    fold_input_scale_into_weights,
    fold_mul_into_batchnorm,
    fold_mul_into_conv,
    fold_mul_into_gemm,
    fold_mul_into_matmul,
    fuse_casts,
    fuse_matmul_add,
)
from neffkit.passes.simplify_rows import flatten_row_region
from neffkit.passes.simplify_shapes import (
    constant_reshape_target,
    fold_gather_of_shape,
    fuse_squeezes,
    fuse_unsqueezes,
)


class _Absent:
    """Marks an optional operand (attribute or input) that the node does not give."""


ABSENT = _Absent()


def ints_operand(
    node: Node, rw: Rewriter, attr: str, index: int, since: int
) -> list[int] | None | _Absent:
    """An int-list operand that is attribute ``attr`` before opset ``since`` and input
    ``index`` from it on: its values, ``ABSENT`` when not given, None when not constant."""
    if rw.opset < since:
        a = node.attributes.get(attr)
        return ABSENT if a is None else [int(x) for x in a.value]
    if index >= len(node.inputs) or node.inputs[index] is None:
        return ABSENT
    return int_list(rw.const(node.inputs[index]))


def _used(v: Value) -> bool:
    return v.num_uses > 0 or v.is_graph_output


# -- copies --------------------------------------------------------------------------------------


# Identity(x) -> x
def drop_identity(node: Node, rw: Rewriter) -> bool:
    x = node.inputs[0] if node.inputs else None
    out = node.outputs[0]
    if x is None or not rw.can_replace(out, x):
        return False  # a graph output that needs its own node stays an Identity
    rw.replace(out, x)
    return True


# Dropout(x) -> x   (inference: is_test / training_mode false / ratio 0; mask unread)
def drop_dropout(node: Node, rw: Rewriter) -> bool:
    x = node.inputs[0] if node.inputs else None
    out = node.outputs[0]
    if x is None or not _used(out) or any(_used(m) for m in node.outputs[1:]):
        return False
    if not _dropout_is_identity(node, rw):
        return False
    rw.replace(out, x)
    return True


def _dropout_is_identity(node: Node, rw: Rewriter) -> bool:
    if rw.opset < 7:
        return node.attr("is_test", 0) != 0 or node.attr("ratio", 0.5) == 0
    if rw.opset < 12:
        return True  # opsets 7-11 have no training flag: inference copies the input
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is None:
        return True
    flag = rw.const(training)
    if flag is not None and flag.size == 1 and not bool(flag.reshape(-1)[0]):
        return True
    ratio = rw.const(node.inputs[1]) if len(node.inputs) > 1 else None
    return ratio is not None and ratio.size == 1 and float(ratio.reshape(-1)[0]) == 0.0


# Concat(x) -> x
def drop_single_concat(node: Node, rw: Rewriter) -> bool:
    if len(node.inputs) != 1 or node.inputs[0] is None:
        return False
    rw.replace(node.outputs[0], node.inputs[0])
    return True


# -- involutions ------------------------------------------------------------------------------


def _cancel_pair(node: Node, rw: Rewriter) -> bool:
    inner = producer(node.inputs[0], node.op_type)
    if inner is None or inner.inputs[0] is None:
        return False
    rw.replace(node.outputs[0], inner.inputs[0])
    return True


# Neg(Neg(x)) -> x
def cancel_neg_neg(node: Node, rw: Rewriter) -> bool:
    return _cancel_pair(node, rw)


# Not(Not(x)) -> x
def cancel_not_not(node: Node, rw: Rewriter) -> bool:
    return _cancel_pair(node, rw)


# Relu(Relu(x)) -> Relu(x)
def fuse_relu_relu(node: Node, rw: Rewriter) -> bool:
    inner = producer(node.inputs[0], "Relu")
    if inner is None or inner.inputs[0] is None:
        return False
    rw.set_input(node, 0, inner.inputs[0])
    return True


# -- Transpose ----------------------------------------------------------------------------------


def _perm(node: Node, rw: Rewriter) -> list[int] | None:
    p = node.attr("perm")
    if p is not None:
        return [int(i) for i in p]
    r = rw.rank(node.inputs[0])
    return None if r is None else list(range(r - 1, -1, -1))  # no perm: reverse the dims


# Transpose(Transpose(x, p1), p2) -> Transpose(x, p1[p2]), or x when that is the identity
def fuse_transposes(node: Node, rw: Rewriter) -> bool:
    inner = producer(node.inputs[0], "Transpose")
    if inner is None or inner.inputs[0] is None:
        return False
    p1 = _perm(inner, rw)
    p2 = _perm(node, rw)
    if p1 is None or p2 is None or len(p1) != len(p2) or sorted(p2) != list(range(len(p2))):
        return False
    q = [p1[j] for j in p2]
    x = inner.inputs[0]
    if q == list(range(len(q))):
        rw.replace(node.outputs[0], x)
    else:
        node.set_attr("perm", q)
        rw.set_input(node, 0, x)
    return True


# Transpose<perm=[0, 1, ...]>(x) -> x
def drop_identity_transpose(node: Node, rw: Rewriter) -> bool:
    p = _perm(node, rw)
    if p is None or p != list(range(len(p))) or node.inputs[0] is None:
        return False
    rw.replace(node.outputs[0], node.inputs[0])
    return True


# -- Reshape, Squeeze, Unsqueeze ----------------------------------------------------------------

_RESHAPE_LIKE = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


# Reshape(Reshape|Flatten|Squeeze|Unsqueeze(x), s) -> Reshape(x, s)   (s copies no dim: no 0)
def fuse_reshape_chain(node: Node, rw: Rewriter) -> bool:
    if rw.opset < 5 or len(node.inputs) < 2:
        return False  # the shape is an attribute before opset 5
    t = node.inputs[0]
    inner = t.producer if t is not None else None
    if inner is None or inner.domain != "" or inner.op_type not in _RESHAPE_LIKE:
        return False
    x = inner.inputs[0] if inner.inputs else None
    s = int_list(rw.const(node.inputs[1]))
    if x is None or s is None:
        return False
    if 0 in s and not node.attr("allowzero", 0):
        return False  # a 0 copies a dim of the intermediate shape
    rw.set_input(node, 0, x)
    return True


# Reshape(x, s) -> x   (s resolves to x's own shape)
def drop_same_shape_reshape(node: Node, rw: Rewriter) -> bool:
    if rw.opset < 5 or len(node.inputs) < 2 or node.inputs[0] is None:
        return False
    x = node.inputs[0]
    s = int_list(rw.const(node.inputs[1]))
    xs = rw.shape(x)
    if s is None or xs is None or len(s) != len(xs):
        return False
    allowzero = bool(node.attr("allowzero", 0))
    inferred = -1
    for i, (d, want) in enumerate(zip(xs, s)):
        if want == 0 and not allowzero:
            continue  # copies x's dim
        if want == -1 and inferred < 0:
            inferred = i
            continue
        if not isinstance(d, int) or d != want:
            return False
    if inferred >= 0:
        # -1 takes what is left of the element count: x's own dim, when the rest is nonzero
        rest = [d for i, d in enumerate(xs) if i != inferred]
        if not all(isinstance(d, int) and d > 0 for d in rest):
            return False
    rw.replace(node.outputs[0], x)
    return True


def _axes(node: Node, rw: Rewriter) -> list[int] | None:
    """Squeeze/Unsqueeze axes: attribute before opset 13, input 1 from it; None if unknown."""
    axes = ints_operand(node, rw, "axes", 1, 13)
    return None if isinstance(axes, _Absent) else axes


# Squeeze(Unsqueeze(x, a), a) -> x;  Unsqueeze(Squeeze(x, a), a) -> x
def cancel_squeeze_unsqueeze(node: Node, rw: Rewriter) -> bool:
    other = "Unsqueeze" if node.op_type == "Squeeze" else "Squeeze"
    inner = producer(node.inputs[0], other)
    if inner is None or inner.inputs[0] is None:
        return False
    x = inner.inputs[0]
    a_out = _axes(node, rw)
    a_in = _axes(inner, rw)
    if not a_out or not a_in or len(set(a_out)) != len(a_out) or len(a_in) != len(a_out):
        return False
    if sorted(a_out) != sorted(a_in):
        # Both lists index the same rank R: the Unsqueeze's output = the Squeeze's input.
        r = rw.rank(x)
        if r is None:
            return False
        if node.op_type == "Squeeze":
            r += len(a_in)
        if r <= 0 or not all(-r <= a < r for a in a_out + a_in):
            return False
        if sorted(a % r for a in a_out) != sorted(a % r for a in a_in):
            return False
    rw.replace(node.outputs[0], x)
    return True


# -- neutral operands -----------------------------------------------------------------------------


def keeps_shape(rw: Rewriter, x: Value, other: tuple[int, ...]) -> bool:
    """True when broadcasting ``x`` against a tensor of shape ``other`` leaves x's shape."""
    if len(other) == 0:
        return True
    xs = rw.shape(x)
    if xs is None or len(other) > len(xs):
        return False
    for od, xd in zip(reversed(other), reversed(xs)):
        if od != 1 and not (isinstance(xd, int) and xd == od):
            return False
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


# x * 1 -> x;  1 * x -> x
def drop_mul_one(node: Node, rw: Rewriter) -> bool:
    return _drop_neutral(node, rw, (1, 0), _ones)


# x + 0 -> x;  0 + x -> x   (float: -0.0 + 0 is +0.0; exact with keep-signed-zeros for -0 only)
def drop_add_zero(node: Node, rw: Rewriter) -> bool:
    def zero(c: np.ndarray) -> bool:
        if not np.all(c == 0):
            return False
        return not (rw.keep_signed_zeros and c.dtype.kind == "f") or bool(np.all(np.signbit(c)))

    return _drop_neutral(node, rw, (1, 0), zero)


# x - 0 -> x   (x - (+0.0) is exact; x - (-0.0) turns -0.0 into +0.0)
def drop_sub_zero(node: Node, rw: Rewriter) -> bool:
    def zero(c: np.ndarray) -> bool:
        if not np.all(c == 0):
            return False
        return not (rw.keep_signed_zeros and c.dtype.kind == "f") or not np.any(np.signbit(c))

    return _drop_neutral(node, rw, (1,), zero)


# x / 1 -> x
def drop_div_one(node: Node, rw: Rewriter) -> bool:
    return _drop_neutral(node, rw, (1,), _ones)


# Pow(x, 1) -> x
def drop_pow_one(node: Node, rw: Rewriter) -> bool:
    return _drop_neutral(node, rw, (1,), _ones)


# -- no-op data movement ---------------------------------------------------------------------------


# Slice(x, starts=0, ends>=dim, steps=1) -> x
def drop_noop_slice(node: Node, rw: Rewriter) -> bool:
    x = node.inputs[0] if node.inputs else None
    xs = rw.shape(x)
    if x is None or xs is None:
        return False
    if rw.opset < 10:
        starts, ends = node.attr("starts"), node.attr("ends")
        axes: object = node.attr("axes", ABSENT)
        steps: object = ABSENT
    else:
        ins = list(node.inputs) + [None] * (5 - len(node.inputs))
        starts, ends = int_list(rw.const(ins[1])), int_list(rw.const(ins[2]))
        axes = ABSENT if ins[3] is None else int_list(rw.const(ins[3]))
        steps = ABSENT if ins[4] is None else int_list(rw.const(ins[4]))
    if starts is None or ends is None or axes is None or steps is None:
        return False
    starts, ends = list(starts), list(ends)
    axes = list(range(len(starts))) if isinstance(axes, _Absent) else list(axes)
    steps = [1] * len(starts) if isinstance(steps, _Absent) else list(steps)
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        return False
    rank = len(xs)
    seen: set[int] = set()
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = a + rank if a < 0 else a
        if not 0 <= a < rank or a in seen or st != 1:
            return False
        seen.add(a)
        d = xs[a]
        if not isinstance(d, int):
            return False
        s = min(max(s + d if s < 0 else s, 0), d)
        e = min(max(e + d if e < 0 else e, 0), d)
        if s != 0 or e != d:
            return False
    rw.replace(node.outputs[0], x)
    return True


# Pad(x, pads=0) -> x
def drop_noop_pad(node: Node, rw: Rewriter) -> bool:
    x = node.inputs[0] if node.inputs else None
    if rw.opset < 11:
        pads = node.attr("pads", node.attr("paddings"))  # "paddings" in opset 1
        pads = None if pads is None else [int(p) for p in pads]
    else:
        pads = int_list(rw.const(node.inputs[1])) if len(node.inputs) > 1 else None
    if x is None or pads is None or any(p != 0 for p in pads):
        return False
    rw.replace(node.outputs[0], x)
    return True


# Expand(x, shape) -> x   (broadcasting x to shape leaves x's shape)
def drop_noop_expand(node: Node, rw: Rewriter) -> bool:
    if rw.opset < 8 or len(node.inputs) != 2 or node.inputs[0] is None:
        return False
    target = int_list(rw.const(node.inputs[1]))
    if target is None or not keeps_shape(rw, node.inputs[0], tuple(target)):
        return False
    rw.replace(node.outputs[0], node.inputs[0])
    return True


# Tile(x, repeats=1) -> x
def drop_noop_tile(node: Node, rw: Rewriter) -> bool:
    if rw.opset < 6 or len(node.inputs) != 2 or node.inputs[0] is None:
        return False  # opset 1 Tile takes (input, tiles, axis)
    repeats = int_list(rw.const(node.inputs[1]))
    if repeats is None or any(r != 1 for r in repeats):
        return False
    rw.replace(node.outputs[0], node.inputs[0])
    return True


# Where(c, a, b) -> b when c is all false; -> a when c is all true   (a / b has the result's shape)
def select_constant_where(node: Node, rw: Rewriter) -> bool:
    if len(node.inputs) != 3 or any(v is None for v in node.inputs):
        return False
    c = rw.const(node.inputs[0], _NEUTRAL_MAX_BYTES)
    if c is None or c.dtype != np.bool_ or c.size == 0:
        return False
    if np.all(c):
        keep, other = node.inputs[1], node.inputs[2]
    elif not np.any(c):
        keep, other = node.inputs[2], node.inputs[1]
    else:
        return False
    other_shape = rw.static_shape(other)
    if other_shape is None or not rw.can_replace(node.outputs[0], keep):
        return False
    if not keeps_shape(rw, keep, tuple(c.shape)) or not keeps_shape(rw, keep, other_shape):
        return False
    rw.replace(node.outputs[0], keep)
    return True


RULES: dict[str, list[Rule]] = {
    "Identity": [drop_identity],
    "Dropout": [drop_dropout],
    "Concat": [drop_single_concat],
    "Neg": [cancel_neg_neg],
    "Not": [cancel_not_not],
    "Relu": [fuse_relu_relu],
    "Transpose": [fuse_transposes, drop_identity_transpose],
    "Reshape": [constant_reshape_target, fuse_reshape_chain, drop_same_shape_reshape],
    "Squeeze": [cancel_squeeze_unsqueeze, fuse_squeezes],
    "Unsqueeze": [cancel_squeeze_unsqueeze, fuse_unsqueezes],
    "Gather": [fold_gather_of_shape],
    "Cast": [fuse_casts, drop_same_type_cast],
    "Mul": [
        drop_mul_one,
        fold_mul_into_conv,
        fold_mul_into_gemm,
        fold_mul_into_matmul,
        fold_mul_into_batchnorm,
    ],
    "Add": [
        drop_add_zero,
        fuse_matmul_add,
        fold_add_into_conv,
        fold_add_into_gemm,
        fold_add_into_batchnorm,
    ],
    "Sub": [drop_sub_zero],
    "Div": [drop_div_one],
    "Pow": [drop_pow_one],
    "MatMul": [fold_input_scale_into_weights, flatten_row_region],
    "Gemm": [fold_input_scale_into_weights],
    "Slice": [drop_noop_slice],
    "Pad": [drop_noop_pad],
    "Expand": [drop_noop_expand],
    "Tile": [drop_noop_tile],
    "Where": [select_constant_where],
    "BatchNormalization": [fold_batchnorm_into_conv, fold_batchnorm_into_gemm],
}
