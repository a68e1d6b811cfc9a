"""Op generators for :mod:`neffkit.testing.strategies` (opset 18): elementwise, shape and
data-movement ops, the numeric guards and :class:`OpSpec` (``strategies_nn`` has the rest;
dtype codes and shape helpers come from :mod:`neffkit.testing.builder`).

A generator draws operands from the builder (``b.pick`` / ``b.partner``, which reuse values in
scope or make fresh ones of a fitting shape), draws attributes that are valid for those shapes,
computes the output types and emits the node. Nothing is rejected: where an operand does not
fit (no size-1 dim to squeeze, no rank-4 tensor for Conv), the generator makes one that does.
The dtypes of each op are the ones onnxruntime's CPU provider has kernels for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neffkit.ir.core import Value
from neffkit.ir.tensor import Tensor, np_dtype
from neffkit.testing.builder import (
    ANY,
    BOOL,
    FLOATS,
    I64,
    NN,
    NUMERIC,
    Builder,
    Generator,
    Shape,
    bshape,
    i64,
    numel,
)


def signed_axis(b: Builder, rank: int, axis: int) -> int:
    """``axis`` written positive or negative (both are valid ONNX; ``rank`` stays positive)."""
    return axis - rank if axis < rank and b.flip() else axis


# -- numeric guards (see the strategies module docstring) ---------------------------------------


def positive(b: Builder, v: Value) -> Value:
    """``v`` when it is a constant >= 0.25, else ``Abs(v) + 0.5``."""
    k = b.known.get(v)
    if k is not None and k.dtype.kind != "b" and bool(np.all(k >= 0.25)):
        return v
    a = b.emit1("Abs", [v], v.dtype, v.shape)
    dt = np_dtype(v.dtype)
    half = b.const(np.asarray(0.5 if dt.kind == "f" else 1, dt))
    return b.emit1("Add", [a, half], v.dtype, v.shape)


def nonzero(b: Builder, v: Value) -> Value:
    """``v`` when it is a constant at least 0.25 away from zero, else :func:`positive`."""
    k = b.known.get(v)
    if k is not None and k.dtype.kind != "b" and bool(np.all(np.abs(k) >= 0.25)):
        return v
    return positive(b, v)


def clip(b: Builder, v: Value, lo: float, hi: float) -> Value:
    """``Clip(v, lo, hi)`` with scalar constant bounds."""
    dt = np_dtype(v.dtype)
    return b.emit1(
        "Clip", [v, b.const(np.asarray(lo, dt)), b.const(np.asarray(hi, dt))], v.dtype, v.shape
    )


@dataclass(frozen=True)
class OpSpec:
    """An op generator and the operand dtypes it may use."""

    gen: Generator
    dtypes: frozenset[int]


# -- elementwise -------------------------------------------------------------------------------


def _binary(op: str, dtypes: frozenset[int], *, to_bool: bool = False) -> OpSpec:
    def gen(b: Builder) -> None:
        a = b.pick(dtypes)
        c = b.partner(a.dtype, a.shape)
        x, y = (c, a) if b.flip() else (a, c)
        b.emit1(op, [x, y], BOOL if to_bool else a.dtype, bshape(x.shape, y.shape))

    return OpSpec(gen, dtypes)


def _variadic(op: str, dtypes: frozenset[int]) -> OpSpec:
    def gen(b: Builder) -> None:
        args = [b.pick(dtypes)]
        for _ in range(b.integer(1, 2)):
            args.append(b.partner(args[0].dtype, bshape(*(v.shape for v in args))))
        b.emit1(op, args, args[0].dtype, bshape(*(v.shape for v in args)))

    return OpSpec(gen, dtypes)


def _div(b: Builder) -> None:
    x = b.pick(NUMERIC)
    if x.dtype in FLOATS:
        d = nonzero(b, b.partner(x.dtype, x.shape))
    else:  # integer division by zero crashes: divide by a non-zero constant
        d = b.const(b.values(x.dtype, b.partner_shape(x.shape), nonzero=True))
    b.emit1("Div", [x, d], x.dtype, bshape(x.shape, d.shape))


def _pow(b: Builder) -> None:
    x = positive(b, b.pick(FLOATS))
    # Not grow: the torch backend gives Pow(float x, float[1] e) the shape of x, not [1] (its
    # constant-exponent shortcut drops the broadcast; see tests/testing/test_properties.py).
    shape = b.partner_shape(x.shape, grow=False)
    e = b.const(np.full(shape, b.choice([2.0, 0.5, -1.0, 3.0, 1.5]), np_dtype(x.dtype)))
    b.emit1("Pow", [x, e], x.dtype, bshape(x.shape, e.shape))


def _unary(op: str, dtypes: frozenset[int], guard: str = "", **attrs: object) -> OpSpec:
    def gen(b: Builder) -> None:
        x = b.pick(dtypes)
        if guard == "positive":
            x = positive(b, x)
        elif guard == "nonzero":
            x = nonzero(b, x)
        elif guard == "abs":
            x = b.emit1("Abs", [x], x.dtype, x.shape)
        elif guard == "clip":
            x = clip(b, x, -8.0, 8.0)
        drawn = {k: b.choice(v) for k, v in attrs.items()}
        b.emit1(op, [x], BOOL if op == "Not" else x.dtype, x.shape, **drawn)

    return OpSpec(gen, dtypes)


def _clip(b: Builder) -> None:
    x = b.pick(NUMERIC)
    dt = np_dtype(x.dtype)
    lo = b.const(np.asarray(b.choice([-1, 0, -2]), dt)) if b.flip() else None
    hi = b.const(np.asarray(b.choice([1, 2, 0]), dt)) if b.flip() else None
    inputs = [x, lo, hi] if hi is not None else [x, lo] if lo is not None else [x]
    b.emit1("Clip", inputs, x.dtype, x.shape)


def _cast(b: Builder) -> None:
    x = b.pick(ANY)
    to = b.dtype(set(b.opts.dtype_codes) | {BOOL})
    b.emit1("Cast", [x], to, x.shape, to=to)


def _where(b: Builder) -> None:
    x = b.pick(NUMERIC)
    y = b.partner(x.dtype, x.shape)
    cond = b.partner(BOOL, bshape(x.shape, y.shape))
    b.emit1("Where", [cond, x, y], x.dtype, bshape(cond.shape, x.shape, y.shape))


# -- shape and data movement -------------------------------------------------------------------


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def _reshape(b: Builder) -> None:
    x = b.pick(ANY)
    n = numel(x.shape)
    rank = b.integer(1 if n > 1 else 0, b.opts.max_rank)
    dims = [1] * rank
    for f in _prime_factors(n):
        dims[b.integer(0, rank - 1)] *= f
    spec = list(dims)
    if rank and b.flip():
        spec[b.integer(0, rank - 1)] = -1
    for i in range(min(rank, len(x.shape))):  # 0 copies the input's dim
        if spec[i] == x.shape[i] and b.flip():
            spec[i] = 0
    b.emit1("Reshape", [x, b.const(i64(spec))], x.dtype, dims)


def _transpose(b: Builder) -> None:
    x = b.pick(ANY, 1)
    r = len(x.shape)
    perm = b.perm(r)
    attrs = {} if perm == list(range(r))[::-1] and b.flip() else {"perm": perm}
    b.emit1("Transpose", [x], x.dtype, [x.shape[i] for i in perm], **attrs)


def _squeeze(b: Builder) -> None:
    x = b.pick(ANY, 1)
    r = len(x.shape)
    ones = [i for i, d in enumerate(x.shape) if d == 1]
    inputs = [x]
    if ones and b.flip():
        ones = b.subset(ones)
        inputs.append(b.const(i64([signed_axis(b, r, a) for a in ones])))
    b.emit1("Squeeze", inputs, x.dtype, [d for i, d in enumerate(x.shape) if i not in ones])


def _unsqueeze(b: Builder) -> None:
    x = b.pick(ANY)
    k = b.integer(1, 2)
    r = len(x.shape) + k
    axes = b.sample(range(r), k)
    dims = iter(x.shape)
    out = [1 if i in axes else next(dims) for i in range(r)]
    b.emit1("Unsqueeze", [x, b.const(i64([signed_axis(b, r, a) for a in axes]))], x.dtype, out)


def _flatten(b: Builder) -> None:
    x = b.pick(ANY, 1)
    r = len(x.shape)
    axis = b.integer(0, r)
    out = (numel(x.shape[:axis]), numel(x.shape[axis:]))
    attrs = {} if axis == 1 and b.flip() else {"axis": signed_axis(b, r, axis)}
    b.emit1("Flatten", [x], x.dtype, out, **attrs)


def _expand(b: Builder) -> None:
    x = b.pick(ANY)
    target = b.partner_shape(x.shape)
    b.emit1("Expand", [x, b.const(i64(target))], x.dtype, bshape(x.shape, target))


def _tile(b: Builder) -> None:
    x = b.pick(ANY, 1)
    reps, size = [], numel(x.shape)
    for _ in x.shape:
        reps.append(b.integer(1, 2 if size * 2 <= b.opts.max_numel else 1))
        size *= reps[-1]
    b.emit1("Tile", [x, b.const(i64(reps))], x.dtype, [d * t for d, t in zip(x.shape, reps)])


def _concat(b: Builder) -> None:
    x = b.pick(ANY, 1)
    r = len(x.shape)
    axis = b.integer(0, r - 1)

    def fits(v: Value) -> bool:
        return len(v.shape) == r and all(
            i == axis or d == e for i, (d, e) in enumerate(zip(v.shape, x.shape))
        )

    def fresh() -> Shape:
        return (*x.shape[:axis], b.dim(), *x.shape[axis + 1 :])

    args = [x] + [b.pick({x.dtype}, r, r, pred=fits, fresh=fresh) for _ in range(b.integer(0, 2))]
    out = list(x.shape)
    out[axis] = sum(v.shape[axis] for v in args)
    b.emit1("Concat", args, x.dtype, out, axis=signed_axis(b, r, axis))


def _split(b: Builder) -> None:
    x = b.pick(ANY, 1)
    r = len(x.shape)
    axis = b.integer(0, r - 1)
    dim = x.shape[axis]
    parts = b.integer(1, min(3, dim))
    chunk = -(-dim // parts)
    if b.flip() and dim - chunk * (parts - 1) > 0:  # num_outputs: equal chunks, last smaller
        sizes = [chunk] * (parts - 1) + [dim - chunk * (parts - 1)]
        inputs, attrs = [x], {"num_outputs": parts}
    else:
        cuts = b.sample(range(1, dim), parts - 1)
        edges = [0, *sorted(cuts), dim]
        sizes = [e - s for s, e in zip(edges, edges[1:])]
        inputs, attrs = [x, b.const(i64(sizes))], {}
    attrs["axis"] = signed_axis(b, r, axis)
    types = [(x.dtype, (*x.shape[:axis], s, *x.shape[axis + 1 :])) for s in sizes]
    b.emit("Split", inputs, types, attrs)


def _slice(b: Builder) -> None:
    x = b.pick(ANY, 1)
    r = len(x.shape)
    axes = b.subset(range(r))
    axes = b.sample(axes, len(axes))  # any order is valid
    starts, ends, steps, out = [], [], [], list(x.shape)
    for a in axes:
        dim = x.shape[a]
        step = b.choice([1, 2, -1, -2])
        s = b.integer(0, dim - 1)
        e = b.integer(s + 1, dim) if step > 0 else b.integer(-1, s - 1)
        out[a] = len(range(s, e, step))
        starts.append(s - dim if b.flip() else s)
        if e == dim:
            e = b.choice([dim, 2**63 - 1, dim + 3])
        elif e == -1:  # before the first element: only reachable with a large negative end
            e = b.choice([-dim - 1, -(2**63)])
        elif b.flip():
            e -= dim
        ends.append(e)
        steps.append(step)
    inputs = [x, b.const(i64(starts)), b.const(i64(ends))]
    if axes != list(range(r)) or set(steps) != {1} or b.flip():
        inputs.append(b.const(i64([signed_axis(b, r, a) for a in axes])))
        if set(steps) != {1} or b.flip():
            inputs.append(b.const(i64(steps)))
    b.emit1("Slice", inputs, x.dtype, out)


def _gather(b: Builder) -> None:
    x = b.pick(ANY, 1)
    r = len(x.shape)
    axis = b.integer(0, r - 1)
    dim = x.shape[axis]
    shape = tuple(b.dim(3) for _ in range(b.integer(0, 2)))
    rng = np.random.default_rng(b.integer(0, 2**16))
    idx = rng.integers(-dim, dim, shape).astype(b.choice([np.int64, np.int32]))
    out = (*x.shape[:axis], *shape, *x.shape[axis + 1 :])
    b.emit1("Gather", [x, b.const(idx)], x.dtype, out, axis=signed_axis(b, r, axis))


def _pad(b: Builder) -> None:
    x = b.pick(NUMERIC, 1)
    r = len(x.shape)
    mode = b.choice(["constant", "reflect", "edge"])
    axes = list(range(r))
    if b.flip():
        axes = b.subset(range(r))
    before, after, out = [], [], list(x.shape)
    for a in axes:
        hi = min(2, x.shape[a] - 1) if mode == "reflect" else 2  # reflect: pad < dim
        before.append(b.integer(0, hi))
        after.append(b.integer(0, hi))
        out[a] += before[-1] + after[-1]
    inputs: list[Value | None] = [x, b.const(i64(before + after))]
    if mode == "constant" and b.flip():
        inputs.append(b.const(b.values(x.dtype, ())))
    if axes != list(range(r)):
        inputs += [None] * (3 - len(inputs))
        inputs.append(b.const(i64([signed_axis(b, r, a) for a in axes])))
    b.emit1("Pad", inputs, x.dtype, out, **({} if mode == "constant" else {"mode": mode}))


def _shape(b: Builder) -> None:
    x = b.pick(ANY, 1)
    r = len(x.shape)
    start, end = 0, r
    attrs = {}
    if b.flip():
        start = b.integer(0, r - 1)
        end = b.integer(start + 1, r)
        attrs = {
            "start": signed_axis(b, r, start),
            "end": signed_axis(b, r, end) if end < r else end,
        }
    v = b.emit1("Shape", [x], I64, [end - start], **attrs)
    b.known[v] = i64(x.shape[start:end])


def _constant_of_shape(b: Builder) -> None:
    def fits(v: Value) -> bool:
        k = b.known.get(v)
        ok = k is not None and v.dtype == I64 and k.ndim == 1
        return ok and bool(np.all(k >= 1)) and numel(k) <= 64

    cands = [v for v in reversed(b.pool) if fits(v)]
    i = b.integer(0, len(cands))
    shape_v = cands[i] if i < len(cands) else b.const(i64(b.shape(1)))
    dims = [int(d) for d in b.known[shape_v]]
    dt = b.dtype(set(b.opts.dtype_codes))
    value = b.values(dt, (1,))
    b.emit1("ConstantOfShape", [shape_v], dt, dims, value=Tensor(value))


def _constant(b: Builder) -> None:
    dt = b.dtype(set(b.opts.dtype_codes))
    b.const(b.values(dt, b.shape()), node=True)


# -- the table ---------------------------------------------------------------------------------

FLOAT_ALPHA = [0.01, 0.1, 0.5]

SPECS: dict[str, OpSpec] = {
    "Add": _binary("Add", NUMERIC),
    "Sub": _binary("Sub", NUMERIC),
    "Mul": _binary("Mul", NUMERIC),
    "Div": OpSpec(_div, NUMERIC),
    "Pow": OpSpec(_pow, FLOATS),
    "Max": _variadic("Max", NUMERIC),
    "Min": _variadic("Min", NUMERIC),
    "Sum": _variadic("Sum", FLOATS),
    "Equal": _binary("Equal", NUMERIC | {BOOL}, to_bool=True),
    "Less": _binary("Less", NUMERIC, to_bool=True),
    "Greater": _binary("Greater", NUMERIC, to_bool=True),
    "LessOrEqual": _binary("LessOrEqual", NUMERIC, to_bool=True),
    "GreaterOrEqual": _binary("GreaterOrEqual", NUMERIC, to_bool=True),
    "And": _binary("And", frozenset({BOOL}), to_bool=True),
    "Or": _binary("Or", frozenset({BOOL}), to_bool=True),
    "Xor": _binary("Xor", frozenset({BOOL}), to_bool=True),
    "Relu": _unary("Relu", FLOATS),
    "Neg": _unary("Neg", NUMERIC),
    "Abs": _unary("Abs", NUMERIC),
    "Sign": _unary("Sign", NUMERIC),
    "Identity": _unary("Identity", ANY),
    "Not": _unary("Not", frozenset({BOOL})),
    "Sigmoid": _unary("Sigmoid", FLOATS),
    "Tanh": _unary("Tanh", FLOATS),
    "Exp": _unary("Exp", FLOATS, "clip"),
    "Log": _unary("Log", FLOATS, "positive"),
    "Sqrt": _unary("Sqrt", FLOATS, "abs"),
    "Reciprocal": _unary("Reciprocal", FLOATS, "nonzero"),
    "Floor": _unary("Floor", FLOATS),
    "Ceil": _unary("Ceil", FLOATS),
    "Erf": _unary("Erf", NN),
    "Sin": _unary("Sin", FLOATS),
    "Cos": _unary("Cos", FLOATS),
    "Softplus": _unary("Softplus", FLOATS),
    "LeakyRelu": _unary("LeakyRelu", FLOATS, alpha=FLOAT_ALPHA),
    "Elu": _unary("Elu", FLOATS, alpha=[1.0, 0.5]),
    "HardSigmoid": _unary("HardSigmoid", FLOATS, alpha=[0.2, 0.5], beta=[0.5, 0.25]),
    "Clip": OpSpec(_clip, NUMERIC),
    "Cast": OpSpec(_cast, ANY),
    "Where": OpSpec(_where, NUMERIC),
    "Reshape": OpSpec(_reshape, ANY),
    "Transpose": OpSpec(_transpose, ANY),
    "Squeeze": OpSpec(_squeeze, ANY),
    "Unsqueeze": OpSpec(_unsqueeze, ANY),
    "Flatten": OpSpec(_flatten, ANY),
    "Expand": OpSpec(_expand, ANY),
    "Tile": OpSpec(_tile, ANY),
    "Concat": OpSpec(_concat, ANY),
    "Split": OpSpec(_split, ANY),
    "Slice": OpSpec(_slice, ANY),
    "Gather": OpSpec(_gather, ANY),
    "Pad": OpSpec(_pad, NUMERIC),
    "Shape": OpSpec(_shape, ANY),
    "ConstantOfShape": OpSpec(_constant_of_shape, NUMERIC),
    "Constant": OpSpec(_constant, ANY),
}
