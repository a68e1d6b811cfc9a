"""Lifting rules for neural-network ops: linear algebra, convolution, normalisation, pooling,
activations, softmax, embedding, reductions, masks (ONNX opset 18 forms)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neffkit.frontends.torchscript._base import (
    I64,
    B,
    Decline,
    binary,
    dtype,
    rank,
    rule,
    static,
)
from neffkit.ir import TensorType, Value

_UNARY = {"aten::relu": "Relu", "aten::tanh": "Tanh", "aten::sigmoid": "Sigmoid",
          "aten::exp": "Exp", "aten::log": "Log", "aten::sqrt": "Sqrt", "aten::neg": "Neg",
          "aten::abs": "Abs", "aten::erf": "Erf", "aten::sin": "Sin", "aten::cos": "Cos",
          "aten::floor": "Floor", "aten::ceil": "Ceil", "aten::reciprocal": "Reciprocal",
          "aten::sign": "Sign"}  # fmt: skip


@rule(*_UNARY)
def _unary(lx: Any, a: dict[str, Any], node: Any) -> Any:
    return lx.emit(_UNARY[node.kind()], [lx.tensor(a["self"])])


@rule("aten::rsqrt")
def _rsqrt(lx: Any, a: dict[str, Any], node: Any) -> Any:
    return lx.emit("Reciprocal", [lx.emit("Sqrt", [lx.tensor(a["self"])])])


@rule("aten::silu")
def _silu(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # silu(x) -> x * Sigmoid(x)
    x = lx.tensor(a["self"])
    return lx.emit("Mul", [x, lx.emit("Sigmoid", [x])])


@rule("aten::gelu")
def _gelu(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    if a.get("approximate", "none") == "tanh":
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        inner = binary(lx, "Add", x, binary(lx, "Mul", binary(lx, "Pow", x, 3.0), 0.044715))
        t = lx.emit("Tanh", [binary(lx, "Mul", inner, math.sqrt(2 / math.pi))])
    else:
        # 0.5 x (1 + erf(x / sqrt 2))
        t = lx.emit("Erf", [binary(lx, "Div", x, math.sqrt(2.0))])
    return binary(lx, "Mul", binary(lx, "Mul", x, 0.5), binary(lx, "Add", t, 1.0))


@rule("aten::glu")
def _glu(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # glu(x, d) -> first * Sigmoid(second), halves of x along d
    x = lx.tensor(a["self"])
    first, second = lx.emit("Split", [x], outputs=2, axis=static(lx, a.get("dim", -1)),
                            num_outputs=2)  # fmt: skip
    return lx.emit("Mul", [first, lx.emit("Sigmoid", [second])])


@rule("aten::leaky_relu")
def _leaky_relu(lx: Any, a: dict[str, Any], node: Any) -> Any:
    return lx.emit(
        "LeakyRelu", [lx.tensor(a["self"])], alpha=float(static(lx, a["negative_slope"]))
    )


@rule("aten::clamp", "aten::hardtanh", "aten::clip")
def _clamp(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    lo = a.get("min", a.get("min_val"))
    hi = a.get("max", a.get("max_val"))
    bounds = [None if b is None else lx.tensor(b, dtype(x)) for b in (lo, hi)]
    return lx.emit("Clip", [x, *bounds])


@rule("aten::linear")
def _linear(lx: Any, a: dict[str, Any], node: Any) -> Any:
    import torch  # noqa: PLC0415

    # linear(x, W, b) -> MatMul(x, W^T) + b, W^T stored transposed when W is a constant
    x, w, b = lx.tensor(a["input"]), a["weight"], a.get("bias")
    if isinstance(w, torch.Tensor):
        name = lx.names.get(id(w), "weight") + "_t"
        wt = lx.param(w.detach().t().contiguous(), name)
    else:
        wt = lx.emit("Transpose", [w], perm=[1, 0])
    y = lx.emit("MatMul", [x, wt])
    return y if b is None else lx.emit("Add", [y, lx.tensor(b)])


@rule("aten::matmul", "aten::mm", "aten::bmm")
def _matmul(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x, y = lx.tensor(a["self"]), lx.tensor(a.get("other", a.get("mat2")))
    r = None if x.type is None or y.type is None or None in (x.type.rank, y.type.rank) else max(
        x.type.rank, y.type.rank)  # fmt: skip
    return lx.emit("MatMul", [x, y], rank=r)


@rule("aten::addmm")
def _addmm(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # addmm(c, x, w, beta, alpha) -> Gemm(x, w, c)
    x, w, c = lx.tensor(a["mat1"]), lx.tensor(a["mat2"]), lx.tensor(a["self"])
    return lx.emit("Gemm", [x, w, c], alpha=float(static(lx, a.get("alpha", 1))),
                   beta=float(static(lx, a.get("beta", 1))))  # fmt: skip


@rule(
    "aten::conv1d",
    "aten::conv2d",
    "aten::conv3d",
    "aten::_convolution",
    "aten::conv_transpose1d",
    "aten::conv_transpose2d",
    "aten::conv_transpose3d",
)
def _conv(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x, w, b = lx.tensor(a["input"]), lx.tensor(a["weight"]), a.get("bias")
    transposed = bool(a.get("transposed")) or node.kind().startswith("aten::conv_transpose")
    k = rank(w) - 2
    stride, dil = static(lx, a["stride"]), static(lx, a["dilation"])
    pad = static(lx, a["padding"])
    attrs: dict[str, Any] = {"strides": _n(stride, k), "dilations": _n(dil, k),
                             "group": int(static(lx, a["groups"]))}  # fmt: skip
    if pad == "same":
        attrs["auto_pad"] = "SAME_UPPER"
    elif pad == "valid":
        attrs["pads"] = [0] * (2 * k)
    else:
        attrs["pads"] = _n(pad, k) * 2
    inputs = [x, w] + ([] if b is None else [lx.tensor(b)])
    if transposed:
        # conv_transpose(x, w, stride, pad, out_pad) -> ConvTranspose (same weight layout)
        if not isinstance(pad, list | tuple | int):
            raise Decline(f"transposed convolution with padding {pad!r}")
        attrs["output_padding"] = _n(static(lx, a.get("output_padding", 0)), k)
        return lx.emit("ConvTranspose", inputs, **attrs)
    return lx.emit("Conv", inputs, **attrs)


def _n(v: Any, k: int) -> list[int]:
    v = list(v) if isinstance(v, list | tuple) else [v]
    return [int(x) for x in (v * k if len(v) == 1 else v)]


@rule("aten::batch_norm")
def _batch_norm(lx: Any, a: dict[str, Any], node: Any) -> Any:
    if a.get("training"):
        raise Decline("batch_norm in training mode")
    x = lx.tensor(a["input"])
    mean, var = a["running_mean"], a["running_var"]
    if mean is None or var is None:
        raise Decline("batch_norm without running statistics")
    mean, var = lx.tensor(mean), lx.tensor(var)
    n = var.type.shape[0] if var.type is not None and var.type.shape else None
    if n is None:
        raise Decline("channel count unknown")
    w = a["weight"] if a["weight"] is not None else np.ones(n, np.float32)
    b = a["bias"] if a["bias"] is not None else np.zeros(n, np.float32)
    w = lx.constant(w) if isinstance(w, np.ndarray) else lx.tensor(w)
    b = lx.constant(b) if isinstance(b, np.ndarray) else lx.tensor(b)
    return lx.emit("BatchNormalization", [x, w, b, mean, var], epsilon=float(a["eps"]))


@rule("aten::layer_norm")
def _layer_norm(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["input"])
    shape = [int(s) for s in static(lx, a["normalized_shape"])]
    ones = np.ones(shape, np.float32)
    w = lx.constant(ones) if a["weight"] is None else lx.tensor(a["weight"])
    inputs = [x, w] + ([] if a["bias"] is None else [lx.tensor(a["bias"])])
    return lx.emit("LayerNormalization", inputs, axis=-len(shape), epsilon=float(a["eps"]))


@rule("aten::softmax", "aten::log_softmax")
def _softmax(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    if a.get("dtype") is not None:
        raise Decline("softmax with a dtype")
    op = "Softmax" if node.kind() == "aten::softmax" else "LogSoftmax"
    return lx.emit(op, [x], axis=int(static(lx, a["dim"])))


@rule("aten::embedding")
def _embedding(lx: Any, a: dict[str, Any], node: Any) -> Any:
    w, idx = lx.tensor(a["weight"]), lx.tensor(a["indices"])
    r = None if idx.type is None or idx.type.rank is None else idx.type.rank + 1
    return lx.emit("Gather", [w, idx], axis=0, rank=r)


@rule("aten::max_pool1d", "aten::max_pool2d", "aten::avg_pool1d", "aten::avg_pool2d")
def _pool(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    kernel = [int(k) for k in static(lx, a["kernel_size"])]
    k = len(kernel)
    stride = static(lx, a["stride"]) or kernel
    attrs: dict[str, Any] = {"kernel_shape": kernel, "strides": _n(stride, k),
                             "pads": _n(static(lx, a["padding"]), k) * 2,
                             "ceil_mode": int(bool(static(lx, a["ceil_mode"])))}  # fmt: skip
    if "max" in node.kind():
        attrs["dilations"] = _n(static(lx, a["dilation"]), k)
        return lx.emit("MaxPool", [x], **attrs)
    if a.get("divisor_override") is not None:
        raise Decline("divisor_override")
    attrs["count_include_pad"] = int(bool(static(lx, a["count_include_pad"])))
    return lx.emit("AveragePool", [x], **attrs)


@rule("aten::adaptive_avg_pool1d", "aten::adaptive_avg_pool2d")
def _adaptive_pool(lx: Any, a: dict[str, Any], node: Any) -> Any:
    size = static(lx, a["output_size"])
    if any(s != 1 for s in size):
        raise Decline("adaptive pooling to a size other than 1")
    return lx.emit("GlobalAveragePool", [lx.tensor(a["self"])])


@rule("aten::masked_fill")
def _masked_fill(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # masked_fill(x, m, v) -> Where(m, v, x)
    x, mask = lx.tensor(a["self"]), lx.tensor(a["mask"], B)
    value = lx.tensor(a["value"], dtype(x))
    return lx.emit("Where", [mask, value, x], dtype=dtype(x), rank=x.type.rank if x.type else None)


@rule("aten::where")
def _where(lx: Any, a: dict[str, Any], node: Any) -> Any:
    if "self" not in a:
        raise Decline("where(condition) returns indices")
    cond, x, y = lx.tensor(a["condition"], B), a["self"], a["other"]
    like = x if isinstance(x, Value) else y
    xs, ys = lx.tensor(x, dtype(like)), lx.tensor(y, dtype(like))
    return lx.emit("Where", [cond, xs, ys], dtype=dtype(xs))


@rule("aten::argmax", "aten::argmin")
def _argmax(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    dim, keep = static(lx, a.get("dim")), bool(static(lx, a.get("keepdim", False)))
    if dim is None:
        x = lx.emit("Reshape", [x, lx.constant(np.array([-1]))], rank=1)
        dim = 0
    op = "ArgMax" if node.kind() == "aten::argmax" else "ArgMin"
    r = x.type.rank if x.type is not None else None
    r = None if r is None else (r if keep else r - 1)
    return lx.emit(op, [x], axis=int(dim), keepdims=int(keep), dtype=I64, rank=r)


@rule("aten::mean", "aten::sum", "aten::amax", "aten::amin")
def _reduce(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    if a.get("dtype") is not None:
        raise Decline("reduction with a dtype")
    dims = static(lx, a.get("dim"))
    keep = bool(static(lx, a.get("keepdim", False)))
    op = {"aten::mean": "ReduceMean", "aten::sum": "ReduceSum", "aten::amax": "ReduceMax",
          "aten::amin": "ReduceMin"}[node.kind()]  # fmt: skip
    if dims is None or dims == []:
        return lx.emit(op, [x], keepdims=0, rank=0)
    dims = [int(d) for d in (dims if isinstance(dims, list | tuple) else [dims])]
    r = x.type.rank if x.type is not None else None
    r = None if r is None else (r if keep else r - len(dims))
    return lx.emit(op, [x, lx.constant(np.array(dims, np.int64))], keepdims=int(keep), rank=r)


@rule("aten::pow")
def _pow(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x, e = a["_0"], a["_1"]
    if not isinstance(x, Value) and not isinstance(e, Value):
        return x**e
    return binary(lx, "Pow", x, e)


@rule("aten::scaled_dot_product_attention")
def _attention(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # sdpa(q, k, v, mask) -> Softmax(q k^T * scale + mask) v  (opset 18 has no Attention)
    if a.get("is_causal") or a.get("enable_gqa") or a.get("dropout_p", 0.0):
        raise Decline("causal, grouped-query or dropout attention")
    q, k, v = lx.tensor(a["query"]), lx.tensor(a["key"]), lx.tensor(a["value"])
    r = rank(k)
    perm = [*range(r - 2), r - 1, r - 2]
    scores = lx.emit("MatMul", [q, lx.emit("Transpose", [k], perm=perm)], rank=rank(q))
    scale = a.get("scale")
    if scale is not None:
        scores = binary(lx, "Mul", scores, float(scale))
    else:  # divide by sqrt(q.shape[-1])
        width = lx.emit("Gather", [lx.emit("Shape", [q], dtype=I64, rank=1),
                                   lx.constant(np.array(-1))], axis=0, rank=0)  # fmt: skip
        root = lx.emit("Sqrt", [lx.tensor(width, dtype(scores))])
        scores = binary(lx, "Div", scores, root)
    mask = a.get("attn_mask")
    if mask is not None:
        mask = lx.tensor(mask)
        if dtype(mask) == B:
            mask = lx.emit("Where", [mask, lx.tensor(0.0, dtype(scores)),
                                     lx.tensor(float("-inf"), dtype(scores))],
                           dtype=dtype(scores))  # fmt: skip
        scores = binary(lx, "Add", scores, mask)
    probs = lx.emit("Softmax", [scores], axis=-1)
    return lx.emit("MatMul", [probs, v], rank=rank(q))


_UNARY_ATTR = {"aten::hardsigmoid": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
               "aten::hardswish": ("HardSwish", {}), "aten::softsign": ("Softsign", {}),
               "aten::selu": ("Selu", {})}  # fmt: skip


@rule(*_UNARY_ATTR)
def _unary_attr(lx: Any, a: dict[str, Any], node: Any) -> Any:
    op, attrs = _UNARY_ATTR[node.kind()]
    return lx.emit(op, [lx.tensor(a["self"])], **attrs)


@rule("aten::elu")
def _elu(lx: Any, a: dict[str, Any], node: Any) -> Any:
    if static(lx, a.get("scale", 1)) != 1 or static(lx, a.get("input_scale", 1)) != 1:
        raise Decline("scaled elu")
    return lx.emit("Elu", [lx.tensor(a["self"])], alpha=float(static(lx, a.get("alpha", 1.0))))


@rule("aten::softplus")
def _softplus(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # softplus(x, beta) -> Softplus(beta x) / beta (torch switches to x above threshold;
    # the two agree there to float precision)
    x, beta = lx.tensor(a["self"]), float(static(lx, a.get("beta", 1.0)))
    if beta == 1.0:
        return lx.emit("Softplus", [x])
    return binary(lx, "Div", lx.emit("Softplus", [binary(lx, "Mul", x, beta)]), beta)


@rule("aten::prelu")
def _prelu(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # prelu(x[N, C, ...], w[C]) -> PRelu(x, w reshaped to [C, 1, ...]) (ONNX broadcasts from
    # the right)
    x, w = lx.tensor(a["self"]), lx.tensor(a["weight"])
    r = rank(x)
    if r > 2:
        shape = lx.constant(np.array([-1] + [1] * (r - 2)))
        w = lx.emit("Reshape", [w, shape], rank=r - 1)
    return lx.emit("PRelu", [x, w])


@rule("aten::log1p")
def _log1p(lx: Any, a: dict[str, Any], node: Any) -> Any:
    return lx.emit("Log", [binary(lx, "Add", a["self"], 1.0)])


@rule("aten::cumsum")
def _cumsum(lx: Any, a: dict[str, Any], node: Any) -> Any:
    if a.get("dtype") is not None:
        raise Decline("cumsum with a dtype")
    return lx.emit("CumSum", [lx.tensor(a["self"]), lx.int64(a["dim"])])


@rule("aten::topk")
def _topk(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    k = lx.ints([a["k"]])
    vals, idx = lx.emit("TopK", [x, k], outputs=2, axis=int(static(lx, a["dim"])),
                        largest=int(bool(static(lx, a["largest"]))),
                        sorted=int(bool(static(lx, a["sorted"]))))  # fmt: skip
    idx.type = TensorType(I64, x.type.shape) if x.type is not None else None
    return [vals, idx]


@rule("aten::max", "aten::min")
def _max_min(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # max(x, dim, keepdim) -> (ReduceMax, ArgMax); max(x, y) -> Max; max(x) -> ReduceMax
    x = lx.tensor(a["self"])
    big = node.kind() == "aten::max"
    if "other" in a:
        return binary(lx, "Max" if big else "Min", x, a["other"])
    if "dim" not in a:
        return lx.emit("ReduceMax" if big else "ReduceMin", [x], keepdims=0, rank=0)
    dim, keep = int(static(lx, a["dim"])), int(bool(static(lx, a["keepdim"])))
    r = x.type.rank if x.type is not None else None
    r = None if r is None else (r if keep else r - 1)
    axes = lx.constant(np.array([dim]))
    vals = lx.emit("ReduceMax" if big else "ReduceMin", [x, axes], keepdims=keep, rank=r)
    idx = lx.emit("ArgMax" if big else "ArgMin", [x], axis=dim, keepdims=keep, dtype=I64, rank=r)
    return [vals, idx]


@rule("aten::tril", "aten::triu")
def _trilu(lx: Any, a: dict[str, Any], node: Any) -> Any:
    upper = int(node.kind() == "aten::triu")
    return lx.emit("Trilu", [lx.tensor(a["self"]), lx.int64(a.get("diagonal", 0))], upper=upper)
