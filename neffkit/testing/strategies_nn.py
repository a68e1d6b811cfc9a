"""Op generators for ops that combine many elements: MatMul, Gemm, Conv (groups, depthwise,
padding, stride, dilation), pooling, Softmax, LayerNormalization and the reductions. See
``strategies_ops`` for how a generator works."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neffkit.testing.builder import F32, F64, FLOATS, I32, I64, NN, NUMERIC, Builder, Shape, i64
from neffkit.testing.strategies_ops import OpSpec, signed_axis


def _matmul_shape(a: Sequence[int], c: Sequence[int]) -> Shape | None:
    try:
        return tuple(np.matmul(np.empty(tuple(a), np.int8), np.empty(tuple(c), np.int8)).shape)
    except ValueError:
        return None


def _matmul(b: Builder) -> None:
    a = b.pick(frozenset({F32, F64, I32, I64}), 1)
    k = a.shape[-1]
    n = b.dim()

    def fresh() -> Shape:
        if b.flip():
            return (k,)
        batch = b.partner_shape(a.shape[:-2]) if len(a.shape) > 2 else ()
        return (*batch, k, n)

    c = b.pick(
        {a.dtype}, 1, pred=lambda v: _matmul_shape(a.shape, v.shape) is not None, fresh=fresh
    )
    b.emit1("MatMul", [a, c], a.dtype, _matmul_shape(a.shape, c.shape) or ())


def _gemm(b: Builder) -> None:
    a = b.pick(FLOATS, 2, 2)
    trans_a, trans_b = b.flip(), b.flip()
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.dim()
    w_shape = (n, k) if trans_b else (k, n)
    w = b.pick({a.dtype}, 2, 2, pred=lambda v: v.shape == w_shape, fresh=lambda: w_shape)
    inputs = [a, w]
    if b.flip():
        inputs.append(b.partner(a.dtype, (m, n), grow=False))
    attrs = {"transA": int(trans_a), "transB": int(trans_b)}
    for key in ("alpha", "beta"):
        value = b.choice([1.0, 0.5, 2.0])
        if value != 1.0:
            attrs[key] = value
    b.emit1("Gemm", inputs, a.dtype, (m, n), **attrs)


def _nchw(b: Builder) -> Shape:
    spatial = [b.dim(b.opts.max_dim + 1) for _ in range(b.integer(1, 2))]
    return (b.integer(1, 2), b.dim(), *spatial)


def _conv(b: Builder) -> None:
    x = b.pick(NN, 3, 4, fresh=lambda: _nchw(b))
    c, spatial = x.shape[1], x.shape[2:]
    groups = b.choice([g for g in range(1, c + 1) if c % g == 0])  # g == c: depthwise
    cout = groups * b.integer(1, 2)
    auto_pad = b.choice(["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"])
    kernel, strides, dils, begin, end, out = [], [], [], [], [], []
    for h in spatial:
        # onnxruntime refuses dilations with SAME_UPPER / SAME_LOWER
        d = 1 if auto_pad.startswith("SAME") else b.integer(1, 2)
        s = b.integer(1, 2)
        pb, pe = (b.integer(0, 1), b.integer(0, 1)) if auto_pad == "NOTSET" else (0, 0)
        room = h + pb + pe
        k = b.integer(1, 3 if auto_pad.startswith("SAME") else min(3, (room - 1) // d + 1))
        o = -(-h // s) if auto_pad.startswith("SAME") else (room - d * (k - 1) - 1) // s + 1
        kernel.append(k)
        strides.append(s)
        dils.append(d)
        begin.append(pb)
        end.append(pe)
        out.append(o)
    w = b.const(b.values(F32, (cout, c // groups, *kernel)))
    inputs = [x, w]
    if b.flip():
        inputs.append(b.const(b.values(F32, (cout,))))
    attrs: dict[str, object] = {"strides": strides, "dilations": dils, "group": groups}
    if b.flip():
        attrs["kernel_shape"] = kernel
    if auto_pad == "NOTSET":
        attrs["pads"] = begin + end
    else:
        attrs["auto_pad"] = auto_pad
    b.emit1("Conv", inputs, F32, (x.shape[0], cout, *out), **attrs)


def _pool(op: str) -> OpSpec:
    def gen(b: Builder) -> None:
        x = b.pick(NN, 3, 4, fresh=lambda: _nchw(b))
        kernel, strides, dils, begin, end, floor_out, ceil_out = [], [], [], [], [], [], []
        ceil_ok = True
        for h in x.shape[2:]:
            d = b.integer(1, 2) if op == "MaxPool" else 1
            s = b.integer(1, 2)
            k = b.integer(1, min(3, (h - 1) // d + 1))
            pb, pe = b.integer(0, min(1, k - 1)), b.integer(0, min(1, k - 1))  # pads < kernel
            span = h + pb + pe - d * (k - 1) - 1
            floor_out.append(span // s + 1)
            ceil_out.append(-(-span // s) + 1)
            # onnx shape inference and onnxruntime disagree when the last ceil window starts
            # in the end padding: use ceil_mode only where they agree.
            ceil_ok &= (ceil_out[-1] - 1) * s < h + pb
            kernel.append(k)
            strides.append(s)
            dils.append(d)
            begin.append(pb)
            end.append(pe)
        ceil = ceil_ok and b.flip()
        attrs: dict[str, object] = {"kernel_shape": kernel, "strides": strides}
        attrs["pads"] = begin + end
        if op == "MaxPool":
            attrs["dilations"] = dils
        elif b.flip():
            attrs["count_include_pad"] = 1
        if ceil:
            attrs["ceil_mode"] = 1
        out = ceil_out if ceil else floor_out
        b.emit1(op, [x], F32, (*x.shape[:2], *out), **attrs)

    return OpSpec(gen, NN)


def _global_pool(op: str) -> OpSpec:
    def gen(b: Builder) -> None:
        x = b.pick(NN, 3, 4, fresh=lambda: _nchw(b))
        b.emit1(op, [x], F32, (*x.shape[:2], *[1] * (len(x.shape) - 2)))

    return OpSpec(gen, NN)


def _softmax(op: str) -> OpSpec:
    def gen(b: Builder) -> None:
        x = b.pick(FLOATS, 1)
        r = len(x.shape)
        axis = b.integer(0, r - 1)
        attrs = {} if axis == r - 1 and b.flip() else {"axis": signed_axis(b, r, axis)}
        b.emit1(op, [x], x.dtype, x.shape, **attrs)

    return OpSpec(gen, FLOATS)


def _layer_norm(b: Builder) -> None:
    x = b.pick(FLOATS, 1)
    r = len(x.shape)
    axis = b.integer(0, r - 1)
    norm = x.shape[axis:]
    inputs = [x, b.const(b.values(x.dtype, norm))]
    if b.flip():
        inputs.append(b.const(b.values(x.dtype, norm)))
    eps = b.choice([1e-5, 1e-3])
    b.emit1(
        "LayerNormalization", inputs, x.dtype, x.shape, axis=signed_axis(b, r, axis), epsilon=eps
    )


# -- reductions --------------------------------------------------------------------------------


def _reduce(op: str, dtypes: frozenset[int]) -> OpSpec:
    def gen(b: Builder) -> None:
        x = b.pick(dtypes, 1)
        r = len(x.shape)
        keep = not b.flip()
        inputs = [x]
        if b.flip():
            axes = b.subset(range(r))
            inputs.append(b.const(i64([signed_axis(b, r, a) for a in axes])))
        else:
            axes = list(range(r))
        out = [1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes]
        b.emit1(op, inputs, x.dtype, out, **({} if keep else {"keepdims": 0}))

    return OpSpec(gen, dtypes)


def _arg(op: str) -> OpSpec:
    def gen(b: Builder) -> None:
        x = b.pick(frozenset({F32, F64, I32}), 1)
        r = len(x.shape)
        axis = b.integer(0, r - 1)
        keep = not b.flip()
        out = [1 if i == axis else d for i, d in enumerate(x.shape) if keep or i != axis]
        attrs = {"axis": signed_axis(b, r, axis), "keepdims": int(keep)}
        if b.flip():
            attrs["select_last_index"] = 1
        b.emit1(op, [x], I64, out, **attrs)

    return OpSpec(gen, frozenset({F32, F64, I32}))


def _cumsum(b: Builder) -> None:
    x = b.pick(NUMERIC, 1)
    r = len(x.shape)
    axis = b.const(
        np.asarray(signed_axis(b, r, b.integer(0, r - 1)), b.choice([np.int64, np.int32]))
    )
    attrs = {k: 1 for k in ("exclusive", "reverse") if b.flip()}
    b.emit1("CumSum", [x, axis], x.dtype, x.shape, **attrs)


SPECS: dict[str, OpSpec] = {
    "MatMul": OpSpec(_matmul, frozenset({F32, F64, I32, I64})),
    "Gemm": OpSpec(_gemm, FLOATS),
    "Conv": OpSpec(_conv, NN),
    "MaxPool": _pool("MaxPool"),
    "AveragePool": _pool("AveragePool"),
    "GlobalAveragePool": _global_pool("GlobalAveragePool"),
    "GlobalMaxPool": _global_pool("GlobalMaxPool"),
    "Softmax": _softmax("Softmax"),
    "LogSoftmax": _softmax("LogSoftmax"),
    "LayerNormalization": OpSpec(_layer_norm, FLOATS),
    "ReduceSum": _reduce("ReduceSum", NUMERIC),
    "ReduceMean": _reduce("ReduceMean", FLOATS),
    "ReduceMax": _reduce("ReduceMax", NUMERIC),
    "ReduceMin": _reduce("ReduceMin", NUMERIC),
    # float only: integer products overflow, and overflow is implementation-defined
    # (onnxruntime saturates an int64 ReduceProd at INT64_MAX, torch wraps around)
    "ReduceProd": _reduce("ReduceProd", FLOATS),
    "ReduceL1": _reduce("ReduceL1", FLOATS),
    "ReduceL2": _reduce("ReduceL2", FLOATS),
    "ReduceSumSquare": _reduce("ReduceSumSquare", FLOATS),
    "ReduceLogSumExp": _reduce("ReduceLogSumExp", FLOATS),
    "ArgMax": _arg("ArgMax"),
    "ArgMin": _arg("ArgMin"),
    "CumSum": OpSpec(_cumsum, NUMERIC),
}
