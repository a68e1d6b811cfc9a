"""The per-op rules of ``pad-loop``: how each op treats padded axes (see ``_pad_body``).

A rule reads the states of the node's inputs from the padder, adds the node's padded
counterpart (masked, re-indexed or copied) and records the states of its outputs, or raises
``Refused`` naming the node when the op would let padded positions reach valid ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neffkit.ir.core import Node, Value
from neffkit.ir.tensor import np_dtype
from neffkit.passes._loops import const_array
from neffkit.passes._pad_body import BodyPadder
from neffkit.passes._pad_forms import (
    FORM_OPS,
    MAX_ELEMS,
    RULES,
    Elem,
    Forms,
    Padded,
    broadcast_elems,
    const,
    original,
)
from neffkit.passes.shape_rules import const_ints

_ELEMENTWISE = frozenset(
    (
        "Abs Acos Acosh Add And Asin Asinh Atan Atanh BitShift BitwiseAnd BitwiseNot BitwiseOr "
        "BitwiseXor Cast CastLike Ceil Celu Clip Cos Cosh Div Dropout Elu Equal Erf Exp Floor Gelu "
        "Greater GreaterOrEqual HardSigmoid HardSwish Identity IsInf IsNaN LeakyRelu Less "
        "LessOrEqual Log Max Mean Min Mish Mod Mul Neg Not Or PRelu Pow Reciprocal Relu Round "
        "Selu Shrink Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Sub Sum Tan Tanh "
        "ThresholdedRelu Where Xor"
    ).split()
)
#: reductions: the fill that leaves the result unchanged
_REDUCE_FILL = {
    "ReduceSum": "zero",
    "ReduceSumSquare": "zero",
    "ReduceL1": "zero",
    "ReduceL2": "zero",
    "ReduceProd": "one",
    "ReduceMax": "low",
    "ReduceMin": "high",
    "ReduceLogSumExp": "low",
    "ReduceMean": "zero",
}
#: the opset from which a reduction reads its axes from an input
_REDUCE_AXES_INPUT = {"ReduceSum": 13}


def _rule(*ops: str):  # noqa: ANN202 - a decorator
    def deco(fn):  # noqa: ANN001, ANN202
        for op in ops:
            RULES[op] = fn
        return fn

    return deco


def _norm(axis: int, rank: int, pd: BodyPadder) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise pd.refuse(f"axis {axis} is out of range for rank {rank}")
    return a


def _ints_operand(pd: BodyPadder, v: Value | None, what: str) -> list[int] | None:
    """A constant integer operand (axes, perm ...), None when omitted."""
    if v is None:
        return None
    f = pd.forms_of(v)
    if f is None:
        raise pd.refuse(f"its {what} are not constant")
    out = []
    for e in f.elems:
        o = original(e, pd.k, pd.l0)
        if o is None or o[0] != 0:
            raise pd.refuse(f"its {what} are not constant")
        out.append(o[1])
    return out


# -- elementwise -------------------------------------------------------------------------------


@_rule(*_ELEMENTWISE)
def _elementwise(pd: BodyPadder, node: Node) -> None:
    ins = [v for v in node.inputs if v is not None]
    ranks = [pd.rank(v) for v in ins]
    out_rank = max(ranks)
    axes: set[int] = set()
    for v, r in zip(ins, ranks):
        axes |= {a + out_rank - r for a in pd.axes(v)}
    for v, r in zip(ins, ranks):
        mine = pd.axes(v)
        for t in axes:
            pos = t - (out_rank - r)
            if pos < 0 or pos in mine:
                continue
            d = pd.dims(v)[pos]
            if d != 1:
                raise pd.refuse(f"'{v.name}' has {d} where another input has the padded axis")
    st = Padded(frozenset(axes))
    pd.copy(node, [pd.data(v) for v in node.inputs], [st] * len(node.outputs))


@_rule("BatchNormalization")
def _batch_norm(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    if node.attr("training_mode", 0):
        raise pd.refuse("training-mode batch statistics mix positions")
    if 1 in pd.axes(x):
        raise pd.refuse("the padded axis is the channel axis")
    pd.copy(node, [pd.data(v) for v in node.inputs], [Padded(pd.axes(x))])


# -- layout -------------------------------------------------------------------------------------


@_rule("Transpose")
def _transpose(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    rank = pd.rank(x)
    perm = node.attr("perm") or list(range(rank))[::-1]
    st = pd.state[x]
    moved = Padded(
        frozenset(perm.index(a) for a in st.axes), frozenset(perm.index(a) for a in st.zero)
    )
    pd.copy(node, [pd.data(x)], [moved])


def _axes_arg(pd: BodyPadder, node: Node, since: int) -> list[int] | None:
    if pd.opset >= since:
        return _ints_operand(pd, node.inputs[1] if len(node.inputs) > 1 else None, "axes")
    a = node.attr("axes")
    return None if a is None else list(a)


@_rule("Unsqueeze")
def _unsqueeze(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    axes = _axes_arg(pd, node, 13)
    if axes is None:
        raise pd.refuse("it has no axes")
    out_rank = pd.rank(x) + len(axes)
    new = sorted(_norm(a, out_rank, pd) for a in axes)
    keep = [i for i in range(out_rank) if i not in new]  # old axis j -> keep[j]
    st = pd.state[x]
    moved = Padded(frozenset(keep[a] for a in st.axes), frozenset(keep[a] for a in st.zero))
    pd.copy(node, [pd.data(v) for v in node.inputs], [moved])


@_rule("Squeeze")
def _squeeze(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    rank = pd.rank(x)
    axes = _axes_arg(pd, node, 13)
    if axes is None:
        dims = pd.dims(x)
        gone = {i for i, d in enumerate(dims) if d == 1}
    else:
        gone = {_norm(a, rank, pd) for a in axes}
    st = pd.state[x]
    if gone & st.axes:
        raise pd.refuse("it squeezes the padded axis")

    def where(a: int) -> int:
        return a - sum(1 for g in gone if g < a)

    moved = Padded(frozenset(map(where, st.axes)), frozenset(where(a) for a in st.zero - gone))
    pd.copy(node, [pd.data(v) for v in node.inputs], [moved])


def _map_axes(
    pd: BodyPadder, in_dims: tuple[int, ...], axes: frozenset[int], out_dims: list[int]
) -> frozenset[int]:
    """Where the time axes of a reshape land: each must stay one whole dim, same prefix."""
    out: set[int] = set()
    for a in axes:
        before = int(np.prod(in_dims[:a], dtype=object))
        acc, found = 1, None
        for j, d in enumerate(out_dims):
            if acc == before and d == in_dims[a]:
                found = j
                break
            acc *= d
        if found is None:
            raise pd.refuse("it merges or splits the padded axis")
        out.add(found)
    return frozenset(out)


@_rule("Reshape")
def _reshape(pd: BodyPadder, node: Node) -> None:
    x, shape = node.inputs[0], node.inputs[1]
    assert x is not None and shape is not None
    nshape, sent, flags = pd.shape_operand(shape)
    in_dims = pd.dims(x) if (x in pd.state or any(flags)) else None
    if in_dims is None:  # a full value reshaped to a shape with no time length: a copy
        n = pd.copy(node, [pd.data(x), nshape])
        _type_reshape(pd, n, x, sent, node.attr("allowzero", 0))
        return
    out = _reshape_dims(pd, in_dims, sent, node.attr("allowzero", 0))
    axes = _map_axes(pd, in_dims, pd.axes(x), out)
    if not {j for j, f in enumerate(flags) if f} <= axes:
        raise pd.refuse("its shape holds the loop's length on an axis the data does not have")
    n = pd.copy(node, [pd.data(x), nshape], [Padded(axes)])
    pd.types[n.outputs[0]] = (pd.dtype(x), tuple(out))


def _reshape_dims(
    pd: BodyPadder, in_dims: tuple[int, ...], sent: list[int | None], allowzero: int
) -> list[int]:
    out: list[int] = []
    infer = -1
    for j, s in enumerate(sent):
        if s is None:
            raise pd.refuse("its shape is not known")
        if s == 0 and not allowzero:
            out.append(in_dims[j])
        elif s == -1:
            infer = j
            out.append(1)
        else:
            out.append(s)
    if infer >= 0:
        total = int(np.prod(in_dims, dtype=object))
        rest = int(np.prod(out, dtype=object))
        if rest == 0 or total % rest:
            raise pd.refuse("its shape does not fit the data")
        out[infer] = total // rest
    return out


def _type_reshape(
    pd: BodyPadder, n: Node, x: Value, sent: list[int | None], allowzero: int
) -> None:
    t = pd.type_of(x)
    if t is not None and all(s is not None for s in sent):
        try:
            pd.types[n.outputs[0]] = (t[0], tuple(_reshape_dims(pd, t[1], sent, allowzero)))
        except Exception:  # noqa: BLE001 - an untyped value is only less known
            pass


@_rule("Flatten")
def _flatten(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    dims = pd.dims(x)
    axis = _norm(node.attr("axis", 1), len(dims) + 1, pd)
    out = [int(np.prod(dims[:axis], dtype=object)), int(np.prod(dims[axis:], dtype=object))]
    axes = _map_axes(pd, dims, pd.axes(x), out)
    pd.copy(node, [pd.data(x)], [Padded(axes)])


@_rule("Expand")
def _expand(pd: BodyPadder, node: Node) -> None:
    x, shape = node.inputs[0], node.inputs[1]
    assert x is not None and shape is not None
    nshape, sent, flags = pd.shape_operand(shape)
    r = pd.rank(x)
    out_rank = max(r, len(sent))
    axes = {a + out_rank - r for a in pd.axes(x)}
    for j, f in enumerate(flags):
        pos = j + out_rank - len(sent)
        if f:
            xp = pos - (out_rank - r)
            if xp >= 0 and xp not in pd.axes(x) and pd.dims(x)[xp] != 1:
                raise pd.refuse("it expands a dim other than 1 to the loop's length")
            axes.add(pos)
        elif pos in axes and sent[j] not in (1, pd.p):
            raise pd.refuse("it expands the padded axis")
    pd.copy(node, [pd.data(x), nshape], [Padded(frozenset(axes))])


@_rule("ConstantOfShape")
def _constant_of_shape(pd: BodyPadder, node: Node) -> None:
    shape = node.inputs[0]
    assert shape is not None
    nshape, _, flags = pd.shape_operand(shape)
    axes = frozenset(j for j, f in enumerate(flags) if f)
    pd.copy(node, [nshape], [Padded(axes)])


@_rule("Tile")
def _tile(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    reps = _ints_operand(pd, node.inputs[1], "repeats")
    assert reps is not None
    if any(reps[a] != 1 for a in pd.axes(x)):
        raise pd.refuse("it repeats the padded axis")
    pd.copy(node, [pd.data(v) for v in node.inputs], [Padded(pd.axes(x))])


@_rule("Range")
def _range(pd: BodyPadder, node: Node) -> None:
    start, limit, delta = node.inputs
    orig = []
    for v in (start, limit, delta):
        f = pd.forms_of(v)
        orig.append(None if f is None or len(f.elems) != 1 else original(f.elems[0], pd.k, pd.l0))
    if not any(o is not None and o[0] for o in orig):  # the same length every step
        pd.copy(node, [pd.data(v) for v in node.inputs])
        return
    s, lim, d = orig
    if s is None or lim is None or d != (0, 1) or s[0] != 0:
        raise pd.refuse("its bounds change with the step in a way padding cannot follow")
    if lim != (pd.k, pd.l0 + s[1]):
        raise pd.refuse("its length changes with the step but is not the loop's length")
    assert limit is not None
    dt = pd.dtype(limit)
    end = pd.constant(np.array(s[1] + pd.p, np_dtype(dt)), "pad_limit")
    pd.types[end] = (dt, ())
    n = pd.copy(node, [pd.data(start), end, pd.data(delta)], [Padded(frozenset({0}))])
    pd.types[n.outputs[0]] = (dt, (pd.p,))


@_rule("Concat")
def _concat(pd: BodyPadder, node: Node) -> None:
    ins = [v for v in node.inputs if v is not None]
    rank = pd.rank(ins[0])
    axis = _norm(node.attr("axis"), rank, pd)
    sets = {pd.axes(v) for v in ins}
    if axis in set().union(*sets):
        raise pd.refuse("it concatenates along the padded axis (only the carried growth may)")
    if len(sets) != 1:
        raise pd.refuse("its inputs are padded along different axes")
    pd.copy(node, [pd.data(v) for v in node.inputs], [Padded(sets.pop())])


@_rule("Split")
def _split(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    axis = _norm(node.attr("axis", 0), pd.rank(x), pd)
    if axis in pd.axes(x):
        raise pd.refuse("it splits the padded axis")
    st = Padded(pd.axes(x))
    pd.copy(node, [pd.data(v) for v in node.inputs], [st] * len(node.outputs))


@_rule("Slice")
def _slice(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    rank = pd.rank(x)
    if pd.opset < 10:
        starts = [const(v) for v in node.attr("starts")]
        ends = [const(v) for v in node.attr("ends")]
        axes = list(node.attr("axes") or range(len(starts)))
        steps = [1] * len(starts)
    else:
        fs, fe = pd.forms_of(node.inputs[1]), pd.forms_of(node.inputs[2])
        if fs is None or fe is None:
            if x in pd.state:
                raise pd.refuse("its starts and ends are not known")
            pd.copy(node, [pd.data(v) for v in node.inputs])
            return
        starts, ends = list(fs.elems), list(fe.elems)
        given = node.inputs[3] if len(node.inputs) > 3 else None
        axes = _ints_operand(pd, given, "axes") or list(range(len(starts)))
        st_v = node.inputs[4] if len(node.inputs) > 4 else None
        steps = _ints_operand(pd, st_v, "steps") or [1] * len(starts)
    axes = [_norm(a, rank, pd) for a in axes]
    time = pd.axes(x)
    keep: list[tuple[int, int, int, int]] = []  # (axis, start, end, step), constants
    last: list[tuple[int, int]] = []  # (time axis, m): the last m positions
    full_axes: set[int] = set()
    new_axes: set[int] = set()
    for a, s, e, step in zip(axes, starts, ends, steps):
        so, eo = original(s, pd.k, pd.l0), original(e, pd.k, pd.l0)
        if so is None or eo is None:
            raise pd.refuse("its bounds are not known")
        if a not in time:
            if so[0] == 0 and eo[0] == 0:
                keep.append((a, so[1], eo[1], step))
            elif so == (0, 0) and eo == (pd.k, pd.l0) and step == 1:
                # x[:L] of a table of positions: its first P rows, padded
                if pd.dims(x)[a] < pd.p:
                    raise pd.refuse(f"it takes L rows of '{x.name}', which has fewer than {pd.p}")
                keep.append((a, 0, pd.p, 1))
                new_axes.add(a)
            else:
                raise pd.refuse("its bounds change with the step in a way padding cannot follow")
            continue
        if so[0] != 0 or step != 1:
            raise pd.refuse("it slices the padded axis with bounds padding cannot follow")
        s0 = so[1]
        to_end = (eo[0] >= pd.k and eo[1] >= pd.l0) or (eo[0] == 0 and eo[1] >= pd.p)
        if to_end and s0 == 0:
            continue
        if to_end and 0 < -s0 <= pd.l0:
            last.append((a, -s0))
            full_axes.add(a)
        elif eo[0] == 0 and 0 <= s0 <= eo[1] <= pd.l0:
            keep.append((a, s0, eo[1], 1))
            full_axes.add(a)
        else:
            raise pd.refuse("it slices the padded axis with bounds padding cannot follow")
    cur = pd.data(x)
    assert cur is not None
    name = node.outputs[0].name
    if keep:
        args = [cur, pd.int64([k[1] for k in keep]), pd.int64([k[2] for k in keep]),
                pd.int64([k[0] for k in keep]), pd.int64([k[3] for k in keep])]  # fmt: skip
        cur = pd.emit("Slice", args, name)  # type: ignore[arg-type]
    for a, m in last:
        idx = pd.emit("Add", [pd.length, pd.int64(list(range(-m, 0)))])
        cur = pd.emit("Gather", [cur, idx], name, axis=a)
    if cur is pd.data(x):
        cur = pd.emit("Identity", [cur], name)
    pd.vmap[node.outputs[0]] = cur
    left = (time - full_axes) | new_axes
    if left:
        zero = pd.state[x].zero - full_axes if x in pd.state else frozenset()
        pd.state[node.outputs[0]] = Padded(left, zero)


@_rule("Gather")
def _gather(pd: BodyPadder, node: Node) -> None:
    x, idx = node.inputs
    assert x is not None and idx is not None
    rx, ri = pd.rank(x), pd.rank(idx)
    axis = _norm(node.attr("axis", 0), rx, pd)
    xs = pd.axes(x)
    shift = ri - 1

    def moved(a: int) -> int:
        return a if a < axis else a + shift

    if axis in xs:
        if idx in pd.state:
            raise pd.refuse("it gathers along the padded axis by padded indices")
        f = pd.forms_of(idx)
        consts = None if f is None else [original(e, pd.k, pd.l0) for e in f.elems]
        known = consts is not None and all(o is not None and o[0] == 0 for o in consts)
        dt = pd.dtype(idx)
        h = pd.data(idx)
        assert h is not None
        length = pd.length if dt == 7 else pd.emit("Cast", [pd.length], to=dt)  # INT64
        if known and all(0 <= o[1] < pd.l0 for o in consts):  # type: ignore[index, union-attr]
            nidx = h  # within the first positions, valid at every step
        elif known and all(o[1] < 0 for o in consts):  # type: ignore[index, union-attr]
            nidx = pd.emit("Add", [h, length])  # from the end: from L, not from P
        else:
            zero = pd.constant(np.zeros((), np_dtype(dt)), "pad_zero")
            neg = pd.emit("Less", [h, zero])
            nidx = pd.emit("Where", [neg, pd.emit("Add", [h, length]), h])
        axes = frozenset(moved(a) for a in xs if a != axis)
    else:
        nidx = pd.data(idx)  # type: ignore[assignment] # an input: never None
        for b in sorted(pd.axes(idx)):
            nidx = pd.mask(idx, nidx, b, "zero")
        axes = frozenset(moved(a) for a in xs) | frozenset(axis + b for b in pd.axes(idx))
    pd.copy(node, [pd.data(x), nidx], [Padded(axes)])


# -- mixing along an axis ----------------------------------------------------------------------


@_rule("Softmax", "LogSoftmax", "Hardmax")
def _softmax(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    rank = pd.rank(x)
    since13 = pd.opset >= 13
    axis = _norm(node.attr("axis", -1 if since13 else 1), rank, pd)
    over = {axis} if since13 else set(range(axis, rank))
    nx = pd.data(x)
    hit = sorted(over & pd.axes(x))
    for t in hit:
        nx = pd.mask(x, nx, t, "low")
    zero = frozenset(hit) if node.op_type != "LogSoftmax" else frozenset()
    pd.copy(node, [nx], [Padded(pd.axes(x), zero)])


@_rule("LayerNormalization", "LpNormalization", "MeanVarianceNormalization",
       "InstanceNormalization", "GroupNormalization")  # fmt: skip
def _normalization(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    rank = pd.rank(x)
    op = node.op_type
    if op == "LayerNormalization":
        over = set(range(_norm(node.attr("axis", -1), rank, pd), rank))
    elif op == "LpNormalization":
        over = {_norm(node.attr("axis", -1), rank, pd)}
    elif op == "MeanVarianceNormalization":
        over = {_norm(a, rank, pd) for a in node.attr("axes", [0, 2, 3])}
    else:
        over = set(range(1 if op == "GroupNormalization" else 2, rank))
    if over & pd.axes(x):
        raise pd.refuse("it normalizes over the padded axis")
    states = [Padded(pd.axes(x))] * len(node.outputs)  # statistics keep the leading axes
    pd.copy(node, [pd.data(v) for v in node.inputs], states)


@_rule(*_REDUCE_FILL)
def _reduce(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    rank = pd.rank(x)
    since = _REDUCE_AXES_INPUT.get(node.op_type, 18)
    if pd.opset >= since:
        axes = _ints_operand(pd, node.inputs[1] if len(node.inputs) > 1 else None, "axes")
    else:
        a = node.attr("axes")
        axes = None if a is None else list(a)
    if not axes:
        if pd.opset >= since and node.attr("noop_with_empty_axes", 0):
            pd.copy(node, [pd.data(v) for v in node.inputs], [Padded(pd.axes(x))])
            return
        over = set(range(rank))
    else:
        over = {_norm(a, rank, pd) for a in axes}
    keep = node.attr("keepdims", 1)
    nx = pd.data(x)
    hit = sorted(over & pd.axes(x))
    fill = _REDUCE_FILL[node.op_type]
    for t in hit:
        nx = pd.mask(x, nx, t, fill)
    inputs = [nx, *[pd.data(v) for v in node.inputs[1:]]]
    left = pd.axes(x) - over

    def moved(a: int) -> int:
        return a if keep else a - sum(1 for o in over if o < a)

    st = Padded(frozenset(map(moved, left)))
    if node.op_type != "ReduceMean" or not hit:
        pd.copy(node, inputs, [st])
        return
    # mean over padded positions: the sum over the valid ones, divided by their count
    dims = pd.dims(x)
    others = [dims[a] for a in over if a not in hit]
    if any(d in pd.symbols.values() or d >= 2**19 for d in others):
        raise pd.refuse("it averages over the padded axis and a dim whose size is not static")
    sum_inputs = [nx]
    attrs: dict[str, Any] = {"keepdims": keep}
    if axes and pd.opset >= 13:
        sum_inputs.append(pd.int64(axes))
    elif axes:
        attrs["axes"] = axes
    summed = pd.emit("ReduceSum", sum_inputs, **attrs)
    count = pd.length
    for _ in hit[1:]:
        count = pd.emit("Mul", [count, pd.length])
    count = pd.emit("Mul", [count, pd.int64(int(np.prod(others, dtype=np.int64)))])
    count = pd.emit("Cast", [count], to=pd.dtype(x))
    out = pd.emit("Div", [summed, count], node.outputs[0].name)
    pd.vmap[node.outputs[0]] = out
    if st.axes:
        pd.state[node.outputs[0]] = st


@_rule("ArgMax", "ArgMin")
def _argmax(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    rank = pd.rank(x)
    axis = _norm(node.attr("axis", 0), rank, pd)
    keep = node.attr("keepdims", 1)
    nx = pd.data(x)
    if axis in pd.axes(x):
        if node.attr("select_last_index", 0):
            raise pd.refuse("select_last_index would find padded positions")
        nx = pd.mask(x, nx, axis, "low" if node.op_type == "ArgMax" else "high")
    left = pd.axes(x) - {axis}
    moved = frozenset(a if keep or a < axis else a - 1 for a in left)
    pd.copy(node, [nx], [Padded(moved)])


@_rule("CumSum")
def _cumsum(pd: BodyPadder, node: Node) -> None:
    x = node.inputs[0]
    assert x is not None
    (axis,) = _ints_operand(pd, node.inputs[1], "axis") or [0]
    axis = _norm(axis, pd.rank(x), pd)
    if axis in pd.axes(x) and node.attr("reverse", 0):
        raise pd.refuse("a reverse cumulative sum reads later, padded positions")
    pd.copy(node, [pd.data(v) for v in node.inputs], [Padded(pd.axes(x))])


@_rule("MatMul")
def _matmul(pd: BodyPadder, node: Node) -> None:
    a, b = node.inputs
    assert a is not None and b is not None
    ra, rb = pd.rank(a), pd.rank(b)
    ka, kb = ra - 1, (rb - 2 if rb >= 2 else 0)
    ta, tb = ka in pd.axes(a), kb in pd.axes(b)
    na, nb = pd.data(a), pd.data(b)
    if ta != tb:
        raise pd.refuse("only one side of the contraction is padded")
    if ta:
        if ka not in pd.state[a].zero:
            na = pd.mask(a, na, ka, "zero")
        if kb not in pd.state[b].zero:
            nb = pd.mask(b, nb, kb, "zero")
    if ra == 1 or rb == 1:
        if ra == 1:
            axes = {x for x in pd.axes(b) if x != kb}
            axes = {x if x < rb - 2 else x - 1 for x in axes}
        else:
            axes = {x for x in pd.axes(a) if x != ka}
        pd.copy(node, [na, nb], [Padded(frozenset(axes))])
        return
    ro = max(ra, rb)
    axes = set()
    for x in pd.axes(a):
        if x != ka:
            axes.add(x + ro - ra)
    for x in pd.axes(b):
        if x == rb - 1:
            axes.add(ro - 1)
        elif x != kb:
            axes.add(x + ro - rb)
    for v, r in ((a, ra), (b, rb)):
        for t in axes:
            pos = t - (ro - r)
            if t >= ro - 2 or pos < 0 or pos in pd.axes(v):
                continue
            if pd.dims(v)[pos] != 1:
                raise pd.refuse(f"'{v.name}' broadcasts against the padded axis")
    pd.copy(node, [na, nb], [Padded(frozenset(axes))])


@_rule("Gemm")
def _gemm(pd: BodyPadder, node: Node) -> None:
    a, b = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    assert a is not None and b is not None
    ka = 0 if node.attr("transA", 0) else 1
    kb = 1 if node.attr("transB", 0) else 0
    ta, tb = ka in pd.axes(a), kb in pd.axes(b)
    if ta != tb:
        raise pd.refuse("only one side of the contraction is padded")
    na, nb = pd.data(a), pd.data(b)
    if ta:
        na = pd.mask(a, na, ka, "zero") if ka not in pd.state[a].zero else na
        nb = pd.mask(b, nb, kb, "zero") if kb not in pd.state[b].zero else nb
    axes = set()
    if (1 - ka) in pd.axes(a):
        axes.add(0)
    if (1 - kb) in pd.axes(b):
        axes.add(1)
    if c is not None:
        rc = pd.rank(c)
        for t in axes:
            pos = t - (2 - rc)
            if pos >= 0 and pos not in pd.axes(c) and pd.dims(c)[pos] != 1:
                raise pd.refuse(f"'{c.name}' broadcasts against the padded axis")
        if c in pd.state and not pd.axes(c) <= {x - (2 - rc) for x in axes}:
            raise pd.refuse("its bias is padded along an axis the product is not")
    pd.copy(node, [na, nb, pd.data(c)] if c is not None else [na, nb], [Padded(frozenset(axes))])


# -- the carried growth ------------------------------------------------------------------------


def _growth(pd: BodyPadder, node: Node) -> None:
    """``Concat(buffer, new)`` of a growing carried value: ``new`` written at position L."""
    j = pd.growth[node]
    out = node.outputs[0]
    if out.num_uses:
        raise pd.refuse("the grown value is also read inside the body")
    ins = [v for v in node.inputs if v is not None]
    rank = pd.rank(ins[0])
    axis = _norm(node.attr("axis"), rank, pd)
    if axis != pd.growing[j]:
        raise pd.refuse("it grows the carried value along another axis than the loop's")
    buf, pieces = ins[0], ins[1:]
    if axis not in pd.axes(buf):
        raise pd.refuse("its first input is not the padded carried value")
    if any(p in pd.state for p in pieces):
        raise pd.refuse("an appended piece depends on padded positions")
    sizes = [pd.dims(p)[axis] for p in pieces]
    if sum(sizes) != pd.k:
        raise pd.refuse(f"it appends {sum(sizes)} positions a step, not {pd.k}")
    new = pd.data(pieces[0])
    if len(pieces) > 1:
        new = pd.emit("Concat", [pd.data(p) for p in pieces], axis=axis)
    pos = pd.positions(rank, axis)
    if pd.k == 1:
        at = pd.emit("Equal", [pos, pd.length])
        val = new
    else:
        rel = pd.emit("Sub", [pos, pd.length])
        at = pd.emit("And", [pd.emit("GreaterOrEqual", [rel, pd.int64(0)]),
                             pd.emit("Less", [rel, pd.int64(pd.k)])])  # fmt: skip
        flat = pd.emit("Reshape", [pd.emit("Clip", [rel, pd.int64(0), pd.int64(pd.k - 1)]),
                                   pd.int64([pd.p])])  # fmt: skip
        val = pd.emit("Gather", [new, flat], axis=axis)
    grown = pd.emit("Where", [at, val, pd.data(buf)], out.name)
    pd.types[grown] = (pd.dtype(buf), pd.dims(buf))
    pd.grown[j] = grown


RULES["<growth>"] = _growth


# -- integer forms ------------------------------------------------------------------------------


def _form_rule(*ops: str):  # noqa: ANN202 - a decorator
    def deco(fn):  # noqa: ANN001, ANN202
        for op in ops:
            FORM_OPS[op] = fn
        return fn

    return deco


def _record(pd: BodyPadder, node: Node, forms: Forms | None) -> bool:
    if forms is None or len(forms.elems) > MAX_ELEMS:
        return False
    pd.copy(node, [pd.vmap.get(v, v) if v is not None else None for v in node.inputs])
    pd.forms[node.outputs[0]] = forms
    return True


@_form_rule("Shape")
def _f_shape(pd: BodyPadder, node: Node) -> bool:
    x = node.inputs[0]
    assert x is not None
    t = pd.type_of(x)
    if t is None:
        return False
    names = {p: s for s, p in pd.symbols.items()}
    elems: list[Elem] = []
    for a, d in enumerate(t[1]):
        if a in pd.axes(x):
            elems.append(("aff", 0, 1, 0))
        elif d in names:
            elems.append(("sym", d))
        else:
            elems.append(const(d))
    start = node.attr("start", 0)
    end = node.attr("end")
    elems = elems[start:end] if end is not None else elems[start:]
    return _record(pd, node, Forms(tuple(elems), (len(elems),)))


@_form_rule("Identity")
def _f_identity(pd: BodyPadder, node: Node) -> bool:
    return _record(pd, node, pd.forms_of(node.inputs[0]))


@_form_rule("Cast")
def _f_cast(pd: BodyPadder, node: Node) -> bool:
    f = pd.forms_of(node.inputs[0])
    if f is None or node.attr("to") not in (6, 7):  # INT32, INT64
        return False
    return _record(pd, node, f)


@_form_rule("Unsqueeze", "Squeeze", "Reshape")
def _f_reshape(pd: BodyPadder, node: Node) -> bool:
    f = pd.forms_of(node.inputs[0])
    if f is None:
        return False
    n = len(f.elems)
    if node.op_type == "Reshape":
        ints = const_ints(node.inputs[1])
        if ints is None or len(ints) > 1:
            return False
        shape: tuple[int, ...] = (n,) if ints else ()
    elif node.op_type == "Unsqueeze":
        if len(f.shape) != 0:
            return False
        shape = (1,)
    else:
        if f.shape != (1,):
            return False
        shape = ()
    if shape == () and n != 1:
        return False
    return _record(pd, node, Forms(f.elems, shape))


@_form_rule("Concat")
def _f_concat(pd: BodyPadder, node: Node) -> bool:
    fs = [pd.forms_of(v) for v in node.inputs]
    if any(f is None or len(f.shape) != 1 for f in fs):
        return False
    elems = tuple(e for f in fs for e in f.elems)  # type: ignore[union-attr]
    return _record(pd, node, Forms(elems, (len(elems),)))


@_form_rule("Gather")
def _f_gather(pd: BodyPadder, node: Node) -> bool:
    f = pd.forms_of(node.inputs[0])
    idx = const_ints(node.inputs[1])
    if f is None or idx is None or len(f.shape) != 1 or node.attr("axis", 0) != 0:
        return False
    n = len(f.elems)
    if any(not -n <= i < n for i in idx):
        return False
    ia = const_array_of(node.inputs[1])
    elems = tuple(f.elems[i] for i in idx)
    return _record(pd, node, Forms(elems, ia))


def const_array_of(v: Value | None) -> tuple[int, ...]:
    """The shape of a constant (``()`` when it is not one)."""
    a = const_array(v)
    return () if a is None else tuple(a.shape)


@_form_rule("Add", "Sub", "Mul")
def _f_arith(pd: BodyPadder, node: Node) -> bool:
    fa, fb = pd.forms_of(node.inputs[0]), pd.forms_of(node.inputs[1])
    if fa is None or fb is None:
        return False
    return _record(pd, node, broadcast_elems(fa, fb, node.op_type))


@_form_rule("Neg")
def _f_neg(pd: BodyPadder, node: Node) -> bool:
    f = pd.forms_of(node.inputs[0])
    if f is None:
        return False
    zero = Forms((const(0),), ())
    return _record(pd, node, broadcast_elems(zero, f, "Sub"))
