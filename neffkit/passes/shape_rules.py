"""Static type rules for common ONNX ops, used by ``shape-infer`` before onnx's inference.

Exporting a graph to protobuf, running ``onnx.shape_inference`` and reading the result back
costs about 15 us a node; these rules cost a fraction of that. They only handle the case
where every input the rule reads has a known dtype and a static shape, and they follow the
ONNX spec of the op (per opset where it changed). Anything else - a symbolic dim, an op or
opset not listed, an input that is not a constant where one is needed, inputs the op would
reject, and the few places where onnxruntime departs from the spec (a negative-step Slice to
a huge end, SAME padding with dilations) - gives ``None`` and the value is left for onnx's
inference, so a rule never has to guess. ``tests/passes/test_shape_rules.py`` checks them
against the onnx node tests' recorded outputs and onnx's inference.

A rule takes the node, the input types as ``(dtype, shape)`` tuples (``None`` for an omitted
input) and ``Facts`` (the default-domain opset, constant operands), and returns one
``(dtype, shape)`` per output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from onnx import TensorProto

from neffkit.ir.core import Node, Value
from neffkit.ir.tensor import Tensor
from neffkit.passes import shapes
from neffkit.passes.shapes import broadcast

Static = tuple[int, tuple[int, ...]]
InTypes = Sequence[Static | None]
Rule = Callable[[Node, InTypes, "Facts"], list[Static] | None]

RULES: dict[str, Rule] = {}

_BOOL = TensorProto.BOOL
_INT64 = TensorProto.INT64


class Facts:
    """What a rule reads besides the input types: the opset, and constant operands.

    ``overridable``: initializers that are also graph inputs a caller may feed with other
    values (IR v3 models, when the caller keeps them overridable): never read as constants.
    """

    __slots__ = ("opset", "overridable")

    def __init__(self, opset: int, overridable: frozenset[Value] | set[Value] = frozenset()):
        self.opset = opset
        self.overridable = overridable

    def ints(self, v: Value | None) -> list[int] | None:
        """The values of an integer constant operand (see ``const_ints``)."""
        return None if v in self.overridable else const_ints(v)

    def axis(self, a: int, rank: int) -> int | None:
        """A normalized axis; None when out of range or negative before opset 11."""
        return None if a < 0 and self.opset < 11 else _axis(a, rank)

    def axes(self, axes: list[int], rank: int) -> list[int] | None:
        """Normalized distinct axes; None when one is out of range, repeated, or negative
        before opset 11."""
        return None if self.opset < 11 and any(a < 0 for a in axes) else _axes(axes, rank)


def infer_node(node: Node, ins: InTypes, facts: Facts) -> list[Static] | None:
    """The static output types of ``node``, or None when no rule applies or knows them."""
    rule = RULES.get(node.op_type)
    if rule is None or node.domain != "":
        return None
    out = rule(node, ins, facts)
    if out is None or len(out) != len(node.outputs):
        return None
    return out


# -- helpers ----------------------------------------------------------------------------------


def const_ints(v: Value | None) -> list[int] | None:
    """The values of an integer constant (initializer or ``Constant`` node), flattened."""
    if v is None:
        return None
    arr: np.ndarray | None = None
    if v.const is not None:
        if v.const.dtype not in (TensorProto.INT64, TensorProto.INT32) or v.const.size > 64:
            return None
        arr = v.const.numpy()
    else:
        p = v.producer
        if p is None or p.op_type != "Constant" or p.domain != "" or len(p.attributes) != 1:
            return None
        (a,) = p.attributes.values()
        if a.ref:
            return None
        if a.name == "value" and isinstance(a.value, Tensor):
            if a.value.dtype not in (TensorProto.INT64, TensorProto.INT32) or a.value.size > 64:
                return None
            arr = a.value.numpy()
        elif a.name == "value_ints":
            return [int(x) for x in a.value]
        elif a.name == "value_int":
            return [int(a.value)]
        else:
            return None
    return [int(x) for x in arr.reshape(-1)]


def _axis(a: int, rank: int) -> int | None:
    """Normalizes a possibly negative axis; None when out of range."""
    if a < 0:
        a += rank
    return a if 0 <= a < rank else None


def _axes(axes: list[int], rank: int) -> list[int] | None:
    """Normalized distinct axes, or None when one is out of range or repeated."""
    out = [_axis(a, rank) for a in axes]
    if any(a is None for a in out) or len(set(out)) != len(out):
        return None
    return out  # type: ignore[return-value]


def _prod(dims: Sequence[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _rule(*ops: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for op in ops:
            RULES[op] = fn
        return fn

    return deco


# -- elementwise ------------------------------------------------------------------------------

_SAME_TYPE = (
    "Abs Acos Acosh Asin Asinh Atan Atanh Ceil Celu Cos Cosh Elu Erf Exp Floor Gelu HardSigmoid "
    "HardSwish Hardmax Identity LeakyRelu Log LogSoftmax LpNormalization LRN "
    "MeanVarianceNormalization Mish Neg Not BitwiseNot Reciprocal Relu Round Selu Shrink Sigmoid "
    "Sign Sin Sinh Softmax Softplus Softsign Sqrt Tan Tanh ThresholdedRelu Clip "
    "InstanceNormalization"
).split()


@_rule(*_SAME_TYPE)
def _same(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    # before -> after: y = Relu(x: float[2,3])  ->  y: float[2,3]
    return [ins[0]] if ins and ins[0] is not None else None


@_rule("IsNaN", "IsInf")
def _predicate(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    return [(_BOOL, ins[0][1])] if ins and ins[0] is not None else None


@_rule("Dropout")
def _dropout(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    # y, mask = Dropout(x: float[4])  ->  y: float[4], mask: bool[4] (opset >= 10)
    if not ins or ins[0] is None:
        return None
    x = ins[0]
    if len(node.outputs) == 1:
        return [x]
    return [x, (_BOOL, x[1])] if cx.opset >= 10 else None


@_rule("BatchNormalization", "LayerNormalization")
def _normalization(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    # only the inference form with one output (the statistics outputs vary by opset)
    if len(node.outputs) != 1 or not ins or ins[0] is None:
        return None
    return [ins[0]]


_BINARY_SAME = "Add Sub Mul Div Pow Mod BitShift BitwiseAnd BitwiseOr BitwiseXor And Or Xor"
_VARIADIC = "Max Min Sum Mean"
_COMPARE = "Equal Greater Less GreaterOrEqual LessOrEqual"


@_rule(*_BINARY_SAME.split(), *_VARIADIC.split(), *_COMPARE.split())
def _broadcasting(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    # before -> after: z = Add(x: float[2,1], y: float[3]) -> z: float[2,3]
    # opset < 7: a legacy "broadcast" attribute with its own semantics; Max/Min/Sum/Mean
    # broadcast from opset 8. Both left to onnx.
    if cx.opset < (8 if node.op_type in _VARIADIC else 7) or not ins or any(t is None for t in ins):
        return None
    shape = broadcast(*(t[1] for t in ins))  # type: ignore[index]
    if shape is None:
        return None
    dtype = _BOOL if node.op_type in _COMPARE else ins[0][0]  # type: ignore[index]
    return [(dtype, shape)]


@_rule("Where")
def _where(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if len(ins) != 3 or any(t is None for t in ins):
        return None
    shape = broadcast(*(t[1] for t in ins))  # type: ignore[index]
    return None if shape is None else [(ins[1][0], shape)]  # type: ignore[index]


@_rule("Cast")
def _cast(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    to = node.attr("to")
    if cx.opset < 6 or not isinstance(to, int) or not ins or ins[0] is None:
        return None  # opset 1 wrote 'to' as a string
    return [(to, ins[0][1])]


@_rule("CastLike")
def _cast_like(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if len(ins) != 2 or ins[0] is None or ins[1] is None:
        return None
    return [(ins[1][0], ins[0][1])]


# -- constants --------------------------------------------------------------------------------


@_rule("Constant")
def _constant(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if len(node.attributes) != 1:
        return None
    (a,) = node.attributes.values()
    if a.ref:
        return None
    if a.name == "value" and isinstance(a.value, Tensor):
        return [(a.value.dtype, tuple(a.value.shape))]
    if a.name == "value_float":
        return [(TensorProto.FLOAT, ())]
    if a.name == "value_floats":
        return [(TensorProto.FLOAT, (len(a.value),))]
    if a.name == "value_int":
        return [(_INT64, ())]
    if a.name == "value_ints":
        return [(_INT64, (len(a.value),))]
    return None


@_rule("ConstantOfShape")
def _constant_of_shape(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    dims = cx.ints(node.inputs[0]) if node.inputs else None
    if dims is None or any(d < 0 for d in dims):
        return None
    value = node.attr("value")
    dtype = TensorProto.FLOAT if value is None else getattr(value, "dtype", None)
    return None if dtype is None else [(dtype, tuple(dims))]


@_rule("Shape")
def _shape(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if not ins or ins[0] is None:
        return None
    rank = len(ins[0][1])
    start, end = node.attr("start", 0), node.attr("end", rank)
    if cx.opset < 15 and (node.attributes.get("start") or node.attributes.get("end")):
        return None
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return [(_INT64, (max(end - start, 0),))]


@_rule("Size")
def _size(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    return [(_INT64, ())] if ins and ins[0] is not None else None


# -- linear algebra ---------------------------------------------------------------------------


@_rule("MatMul")
def _matmul(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    # before -> after: y = MatMul(a: float[5,2,3], b: float[3,4]) -> y: float[5,2,4]
    if len(ins) != 2 or ins[0] is None or ins[1] is None:
        return None
    out = shapes.matmul(ins[0][1], ins[1][1])
    return None if out is None else [(ins[0][0], out)]


@_rule("Gemm")
def _gemm(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if len(ins) < 2 or ins[0] is None or ins[1] is None:
        return None
    trans_a, trans_b = bool(node.attr("transA", 0)), bool(node.attr("transB", 0))
    out = shapes.gemm(ins[0][1], ins[1][1], trans_a, trans_b)
    return None if out is None else [(ins[0][0], out)]


# -- shape manipulation -----------------------------------------------------------------------


@_rule("Transpose")
def _transpose(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if not ins or ins[0] is None:
        return None
    out = shapes.transpose(ins[0][1], node.attr("perm"))
    return None if out is None else [(ins[0][0], out)]


@_rule("Reshape")
def _reshape(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    # before -> after: y = Reshape(x: float[2,3,4], [0,-1]) -> y: float[2,12]
    if cx.opset < 5 or len(ins) != 2 or ins[0] is None:
        return None
    target = cx.ints(node.inputs[1])
    if target is None:
        return None
    allowzero = cx.opset >= 14 and bool(node.attr("allowzero", 0))
    out = shapes.reshape(ins[0][1], target, allowzero)
    return None if out is None else [(ins[0][0], out)]


@_rule("Flatten")
def _flatten(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if not ins or ins[0] is None:
        return None
    x = ins[0][1]
    axis = node.attr("axis", 1)
    if axis < 0:
        if cx.opset < 11:
            return None  # negative axes came with opset 11
        axis += len(x)
    if not 0 <= axis <= len(x):
        return None
    return [(ins[0][0], (_prod(x[:axis]), _prod(x[axis:])))]


def _axes_of(node: Node, cx: Facts, since: int) -> tuple[bool, list[int] | None]:
    """(known, axes) of Squeeze/Unsqueeze/Reduce*: an attribute before ``since``, then input 1.

    ``known`` is False when the axes are given but not as a constant.
    """
    if cx.opset < since:
        axes = node.attr("axes")
        return True, None if axes is None else list(axes)
    if len(node.inputs) < 2 or node.inputs[1] is None:
        return True, None
    axes = cx.ints(node.inputs[1])
    return axes is not None, axes


@_rule("Squeeze")
def _squeeze(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if not ins or ins[0] is None:
        return None
    x = ins[0][1]
    known, axes = _axes_of(node, cx, 13)
    if not known:
        return None
    if axes is None:
        return [(ins[0][0], tuple(d for d in x if d != 1))]
    if not axes:
        return None  # an empty axes list: opsets read it differently
    norm = cx.axes(axes, len(x))
    if norm is None or any(x[a] != 1 for a in norm):
        return None
    return [(ins[0][0], tuple(d for i, d in enumerate(x) if i not in norm))]


@_rule("Unsqueeze")
def _unsqueeze(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if not ins or ins[0] is None:
        return None
    x = ins[0][1]
    known, axes = _axes_of(node, cx, 13)
    if not known or not axes:
        return None
    rank = len(x) + len(axes)
    norm = cx.axes(axes, rank)
    if norm is None:
        return None
    it = iter(x)
    return [(ins[0][0], tuple(1 if i in norm else next(it) for i in range(rank)))]


@_rule("Concat")
def _concat(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if not ins or any(t is None for t in ins):
        return None
    shapes = [t[1] for t in ins]  # type: ignore[index]
    rank = len(shapes[0])
    axis = node.attr("axis")
    if axis is None or rank == 0 or any(len(s) != rank for s in shapes):
        return None
    axis = cx.axis(axis, rank)
    if axis is None:
        return None
    for s in shapes[1:]:
        if any(s[i] != shapes[0][i] for i in range(rank) if i != axis):
            return None
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return [(ins[0][0], tuple(out))]  # type: ignore[index]


@_rule("Gather")
def _gather(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if len(ins) != 2 or ins[0] is None or ins[1] is None:
        return None
    data, idx = ins[0][1], ins[1][1]
    axis = cx.axis(node.attr("axis", 0), len(data))
    if axis is None:
        return None
    return [(ins[0][0], data[:axis] + idx + data[axis + 1 :])]


@_rule("Expand")
def _expand(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if len(ins) != 2 or ins[0] is None:
        return None
    target = cx.ints(node.inputs[1])
    if target is None or any(d < 0 for d in target):
        return None
    shape = broadcast(ins[0][1], tuple(target))
    return None if shape is None else [(ins[0][0], shape)]


@_rule("Tile")
def _tile(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if cx.opset < 6 or len(ins) != 2 or ins[0] is None:
        return None
    reps = cx.ints(node.inputs[1])
    x = ins[0][1]
    if reps is None or len(reps) != len(x) or any(r < 0 for r in reps):
        return None
    return [(ins[0][0], tuple(d * r for d, r in zip(x, reps)))]


@_rule("Slice")
def _slice(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    # before -> after: y = Slice(x: float[10,4], [2], [-1], [0]) -> y: float[7,4]
    if cx.opset < 10 or len(ins) < 3 or ins[0] is None:
        return None
    x = ins[0][1]
    starts, ends = cx.ints(node.inputs[1]), cx.ints(node.inputs[2])
    if starts is None or ends is None or len(starts) != len(ends):
        return None
    axes: list[int] | None = list(range(len(starts)))
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        axes = cx.ints(node.inputs[3])
    steps: list[int] | None = [1] * len(starts)
    if len(node.inputs) > 4 and node.inputs[4] is not None:
        steps = cx.ints(node.inputs[4])
    if axes is None or steps is None or len(axes) != len(starts) or len(steps) != len(starts):
        return None
    norm = cx.axes(axes, len(x))
    if norm is None:
        return None
    out = list(x)
    for a, start, end, step in zip(norm, starts, ends, steps):
        dim = x[a]
        if step == 0 or (step < 0 and end >= 2**31 - 1):
            # a huge end with a negative step: the spec clamps it to dim - 1 (an empty
            # slice), onnxruntime reads it as "to the beginning"; left to onnx
            return None
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
            out[a] = max(0, -(-(end - start) // step))
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
            out[a] = max(0, -(-(start - end) // -step))
    return [(ins[0][0], tuple(out))]


# -- convolution, pooling, reductions ---------------------------------------------------------


def _window(
    node: Node, spatial: tuple[int, ...], kernel: Sequence[int], dilated: bool
) -> tuple[int, ...] | None:
    """Output spatial dims of a Conv / pool window with the node's pads, strides, dilations."""
    n = len(spatial)
    strides = list(node.attr("strides", [1] * n))
    dil = list(node.attr("dilations", [1] * n)) if dilated else [1] * n
    pads = list(node.attr("pads", [0] * (2 * n)))
    auto_pad = node.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if len(strides) != n or len(dil) != n or len(pads) != 2 * n or len(kernel) != n:
        return None
    if any(s < 1 for s in strides) or any(d < 1 for d in dil) or any(p < 0 for p in pads):
        return None
    if auto_pad.startswith("SAME") and any(d > 1 for d in dil):
        return None  # onnxruntime pads for the undilated window here, unlike the spec
    out = []
    for i, size in enumerate(spatial):
        span = dil[i] * (kernel[i] - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-size // strides[i])
        elif auto_pad == "VALID":
            o = (size - span) // strides[i] + 1
        elif auto_pad == "NOTSET":
            o = (size + pads[i] + pads[i + n] - span) // strides[i] + 1
        else:
            return None
        if o < 1:
            return None
        out.append(o)
    return tuple(out)


@_rule("Conv")
def _conv(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    # before -> after: y = Conv(x: float[1,3,32,32], w: float[8,3,3,3], pads=1) -> float[1,8,32,32]
    if len(ins) < 2 or ins[0] is None or ins[1] is None:
        return None
    x, w = ins[0][1], ins[1][1]
    if len(x) < 3 or len(w) != len(x):
        return None
    group = node.attr("group", 1)
    kernel = node.attr("kernel_shape")
    if kernel is not None and list(kernel) != list(w[2:]):
        return None
    if group < 1 or x[1] != w[1] * group or w[0] % group:
        return None
    spatial = _window(node, x[2:], w[2:], dilated=True)
    return None if spatial is None else [(ins[0][0], (x[0], w[0], *spatial))]


@_rule("MaxPool", "AveragePool")
def _pool(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if len(node.outputs) != 1 or not ins or ins[0] is None or node.attr("ceil_mode", 0):
        return None
    x = ins[0][1]
    kernel = node.attr("kernel_shape")
    if len(x) < 3 or kernel is None or len(kernel) != len(x) - 2:
        return None
    dilated = cx.opset >= (10 if node.op_type == "MaxPool" else 19)
    if not dilated and node.attributes.get("dilations") is not None:
        return None
    spatial = _window(node, x[2:], list(kernel), dilated)
    return None if spatial is None else [(ins[0][0], (x[0], x[1], *spatial))]


@_rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if not ins or ins[0] is None or len(ins[0][1]) < 2:
        return None
    x = ins[0][1]
    return [(ins[0][0], (x[0], x[1]) + (1,) * (len(x) - 2))]


_REDUCE_SINCE = {"ReduceSum": 13}
_REDUCE = (
    "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum "
    "ReduceLogSumExp ReduceSumSquare"
).split()


@_rule(*_REDUCE)
def _reduce(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    # before -> after: y = ReduceMean(x: float[2,3,4], axes=[-1]) -> y: float[2,3,1]
    if not ins or ins[0] is None:
        return None
    x = ins[0][1]
    since = _REDUCE_SINCE.get(node.op_type, 18)
    known, axes = _axes_of(node, cx, since)
    if not known:
        return None
    keep = node.attr("keepdims", 1)
    if not axes:
        if cx.opset >= since and node.attr("noop_with_empty_axes", 0):
            return [ins[0]]
        norm: list[int] | None = list(range(len(x)))
    else:
        norm = cx.axes(axes, len(x))
    if norm is None:
        return None
    if keep:
        shape = tuple(1 if i in norm else d for i, d in enumerate(x))
    else:
        shape = tuple(d for i, d in enumerate(x) if i not in norm)
    return [(ins[0][0], shape)]


@_rule("ArgMax", "ArgMin")
def _arg(node: Node, ins: InTypes, cx: Facts) -> list[Static] | None:
    if not ins or ins[0] is None:
        return None
    x = ins[0][1]
    axis = cx.axis(node.attr("axis", 0), len(x))
    if axis is None:
        return None
    if node.attr("keepdims", 1):
        shape = tuple(1 if i == axis else d for i, d in enumerate(x))
    else:
        shape = x[:axis] + x[axis + 1 :]
    return [(_INT64, shape)]
