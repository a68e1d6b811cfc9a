"""``simplify`` rules that merge nodes: exact Cast chains, BatchNormalization folded into a
Conv or Gemm, per-channel Mul / Add folded into a Conv, Gemm, MatMul or BatchNormalization,
a scalar Mul before a Gemm or MatMul folded into its weights, and MatMul + Add -> Gemm.
Listed in ``simplify_rules.RULES``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto as TP

from neffkit.ir.core import Node, Value
from neffkit.passes.simplify import Rewriter, producer

# -- Cast -----------------------------------------------------------------------------------------

_INTS = {TP.UINT8, TP.INT8, TP.UINT16, TP.INT16, TP.INT32, TP.INT64, TP.UINT32, TP.UINT64}
_FLOATS = {TP.FLOAT16, TP.BFLOAT16, TP.FLOAT, TP.DOUBLE}

#: type -> the types that hold every one of its values exactly (so a Cast through them loses
#: nothing). float16 has 11 significant bits and bfloat16 8, so 8-bit integers fit in both.
EXACT_CASTS: dict[int, frozenset[int]] = {
    TP.BOOL: frozenset(_INTS | _FLOATS),
    TP.UINT8: frozenset(_INTS - {TP.UINT8, TP.INT8} | _FLOATS),
    TP.INT8: frozenset({TP.INT16, TP.INT32, TP.INT64} | _FLOATS),
    TP.UINT16: frozenset({TP.INT32, TP.INT64, TP.UINT32, TP.UINT64, TP.FLOAT, TP.DOUBLE}),
    TP.INT16: frozenset({TP.INT32, TP.INT64, TP.FLOAT, TP.DOUBLE}),
    TP.UINT32: frozenset({TP.INT64, TP.UINT64, TP.DOUBLE}),
    TP.INT32: frozenset({TP.INT64, TP.DOUBLE}),
    TP.FLOAT16: frozenset({TP.FLOAT, TP.DOUBLE}),
    TP.BFLOAT16: frozenset({TP.FLOAT, TP.DOUBLE}),
    TP.FLOAT: frozenset({TP.DOUBLE}),
}
_CAST_TARGETS = _INTS | _FLOATS | {TP.BOOL}


def _cast_to(node: Node) -> int | None:
    to = node.attr("to")
    return to if isinstance(to, int) else None  # a string before opset 6


# Cast(Cast(x, a), b) -> Cast(x, b)   (a holds every value of x's type exactly)
def fuse_casts(node: Node, rw: Rewriter) -> bool:
    inner = producer(node.inputs[0], "Cast")
    if inner is None or inner.inputs[0] is None:
        return False
    x = inner.inputs[0]
    mid = _cast_to(inner)
    to = _cast_to(node)
    src = rw.dtype(x)
    if src is None or mid is None or to not in _CAST_TARGETS:
        return False
    if mid != src and mid not in EXACT_CASTS.get(src, ()):
        return False
    rw.set_input(node, 0, x)
    return True


# Cast(x, to=T) -> x   (x is already of type T)
def drop_same_type_cast(node: Node, rw: Rewriter) -> bool:
    x = node.inputs[0] if node.inputs else None
    to = _cast_to(node)
    if x is None or to is None or rw.dtype(x) != to:
        return False
    rw.replace(node.outputs[0], x)
    return True


# -- BatchNormalization folding -------------------------------------------------------------------

_FOLD_DTYPES = (np.float16, np.float32, np.float64)


def _batchnorm_affine(node: Node, rw: Rewriter) -> tuple[np.ndarray, np.ndarray] | None:
    """``(s, t)`` with BN(y) = y * s + t per channel, when BN is an inference-mode affine map
    of constants; float64."""
    if len(node.outputs) != 1 or len(node.inputs) != 5 or any(v is None for v in node.inputs):
        return None
    if node.attr("training_mode", 0) or node.attr("spatial", 1) != 1:
        return None
    params = [rw.const(v) for v in node.inputs[1:]]
    if any(p is None or p.ndim != 1 or p.dtype.kind != "f" for p in params):
        return None
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    if not scale.shape == bias.shape == mean.shape == var.shape:
        return None
    s = scale / np.sqrt(var + float(node.attr("epsilon", 1e-5)))
    return s, bias - mean * s


def _folds_into(node: Node, rw: Rewriter, op: str) -> Node | None:
    """The ``op`` node whose output only this BatchNormalization reads."""
    p = producer(node.inputs[0], op)
    if p is None or not rw.only_user(node.inputs[0], node):
        return None
    return p


def _weights(rw: Rewriter, v: Value | None, ndim: int | None = None) -> np.ndarray | None:
    w = rw.const(v)
    if w is None or w.dtype.type not in _FOLD_DTYPES or w.nbytes > rw.ctx.max_constant_bytes:
        return None
    return w if ndim is None or w.ndim == ndim else None


def _set_or_append(rw: Rewriter, node: Node, index: int, v: Value) -> None:
    if index < len(node.inputs):
        rw.set_input(node, index, v)
    else:
        node.append_input(v)
        rw.touched.append(node)


# BatchNormalization(Conv(x, W, b)) -> Conv(x, W * s, b * s + t),  s = scale / sqrt(var + eps)
def fold_batchnorm_into_conv(node: Node, rw: Rewriter) -> bool:
    conv = _folds_into(node, rw, "Conv")
    affine = _batchnorm_affine(node, rw)
    if conv is None or affine is None or len(conv.inputs) < 2:
        return False
    s, t = affine
    w = _weights(rw, conv.inputs[1])
    if w is None or w.ndim < 3 or s.shape != (w.shape[0],):
        return False  # W is [M, C/group, k...]: BN scales output channel m
    b_v = conv.inputs[2] if len(conv.inputs) > 2 else None
    b = np.zeros(w.shape[0]) if b_v is None else rw.const(b_v)
    if b is None or b.shape != (w.shape[0],):
        return False
    new_w = (w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    new_b = (b.astype(np.float64) * s + t).astype(w.dtype)
    g = conv.graph
    assert g is not None
    hint = conv.inputs[1].name if conv.inputs[1] is not None else "W"
    rw.set_input(conv, 1, rw.add_constant(g, hint + "_bn", new_w))
    _set_or_append(rw, conv, 2, rw.add_constant(g, (b_v.name if b_v else hint) + "_bn", new_b))
    rw.replace(node.outputs[0], node.inputs[0])
    return True


# BatchNormalization(Gemm(a, B, c)) -> Gemm(a, B * s, beta * c * s + t)   (per output column)
def fold_batchnorm_into_gemm(node: Node, rw: Rewriter) -> bool:
    gemm = _folds_into(node, rw, "Gemm")
    affine = _batchnorm_affine(node, rw)
    if rw.opset < 7 or gemm is None or affine is None or len(gemm.inputs) < 2:
        return False  # Gemm broadcasts C unidirectionally from opset 7
    s, t = affine
    w = _weights(rw, gemm.inputs[1], 2)
    trans_b = bool(gemm.attr("transB", 0))
    if w is None or s.shape != (w.shape[0] if trans_b else w.shape[1],):
        return False
    c_v = gemm.inputs[2] if len(gemm.inputs) > 2 else None
    c = np.zeros(1) if c_v is None else rw.const(c_v)
    if c is None or c.ndim > 2 or (c.ndim >= 1 and c.shape[-1] not in (1, s.shape[0])):
        return False
    beta = float(gemm.attr("beta", 1.0))
    new_w = (w.astype(np.float64) * (s[:, None] if trans_b else s[None, :])).astype(w.dtype)
    new_c = (beta * c.astype(np.float64) * s + t).astype(w.dtype)
    g = gemm.graph
    assert g is not None
    hint = gemm.inputs[1].name if gemm.inputs[1] is not None else "B"
    rw.set_input(gemm, 1, rw.add_constant(g, hint + "_bn", new_w))
    _set_or_append(rw, gemm, 2, rw.add_constant(g, (c_v.name if c_v else hint) + "_bn_c", new_c))
    if beta != 1.0:
        gemm.set_attr("beta", 1.0)
    rw.replace(node.outputs[0], node.inputs[0])
    return True


# -- MatMul + Add -> Gemm -------------------------------------------------------------------------

_GEMM_DTYPES = {TP.FLOAT, TP.FLOAT16, TP.DOUBLE}


# Add(MatMul(a, B), c) -> Gemm(a, B, c)   (a 2-D; B, c constants; c broadcasts to [M, N])
def fuse_matmul_add(node: Node, rw: Rewriter) -> bool:
    if rw.opset < 7 or len(node.inputs) != 2:
        return False
    gemm_types = _GEMM_DTYPES | ({TP.BFLOAT16} if rw.opset >= 13 else set())
    for i in (0, 1):
        mm = producer(node.inputs[i], "MatMul")
        c_v = node.inputs[1 - i]
        if mm is None or c_v is None or not rw.only_user(node.inputs[i], node):
            continue
        a, b_v = mm.inputs
        b = rw.const_layout(b_v)  # dtype and shape only: B may be a big weight on disk
        c = rw.const_layout(c_v)
        a_shape = rw.shape(a)
        if b is None or c is None or len(b[1]) != 2 or len(c[1]) > 2 or a_shape is None:
            continue
        dt = b[0]
        if len(a_shape) != 2 or dt not in gemm_types or c[0] != dt:
            continue
        if rw.dtype(a) not in (None, dt):
            continue
        cs = (1,) * (2 - len(c[1])) + tuple(c[1])
        m = a_shape[0]
        if cs[1] not in (1, b[1][1]) or cs[0] != 1 and not (isinstance(m, int) and m == cs[0]):
            continue  # Gemm broadcasts C one way only: the Add must not grow [M, N]
        out = node.outputs[0]
        gemm = Node("Gemm", [a, b_v, c_v], outputs=[Value(out.name, out.type)], name=node.name)
        rw.insert_before(node, gemm)
        rw.replace(out, gemm.outputs[0])
        return True
    return False


# -- per-channel Mul / Add folded into the producer's constants ------------------------------------


def _affine_operand(node: Node, rw: Rewriter, op: str) -> tuple[Node, np.ndarray] | None:
    """For ``Mul`` / ``Add`` of an ``op`` node's output (read only here) and a float constant:
    the ``op`` node and the constant."""
    if len(node.inputs) != 2:
        return None
    for i in (0, 1):
        p = producer(node.inputs[i], op)
        if p is None or not rw.only_user(node.inputs[i], node):
            continue
        c = rw.const(node.inputs[1 - i], rw.ctx.max_constant_bytes)
        if c is not None and c.dtype.type in _FOLD_DTYPES:
            return p, c
    return None


def _per_channel(c: np.ndarray, rank: int | None, axis: int, n: int) -> np.ndarray | None:
    """``c`` as a float64 vector of ``n`` when broadcasting it against a rank-``rank`` tensor
    with ``n`` channels on ``axis`` scales each channel and grows nothing; an unknown rank
    admits only scalars and vectors of one element."""
    if rank is None:
        return np.full(n, float(c.reshape(-1)[0])) if c.size == 1 and c.ndim <= 1 else None
    if c.ndim > rank:
        return None
    dims = (1,) * (rank - c.ndim) + tuple(c.shape)
    if any(d != 1 for k, d in enumerate(dims) if k != axis) or dims[axis] not in (1, n):
        return None
    flat = c.astype(np.float64).reshape(-1)
    return np.full(n, flat[0]) if flat.size == 1 else flat


def _conv_params(conv: Node, rw: Rewriter) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A Conv's constant weights and bias (None when it has none)."""
    if len(conv.inputs) < 2:
        return None
    w = _weights(rw, conv.inputs[1])
    if w is None or w.ndim < 3:
        return None
    b_v = conv.inputs[2] if len(conv.inputs) > 2 else None
    if b_v is None:
        return w, None
    b = rw.const(b_v)
    return (w, b) if b is not None and b.shape == (w.shape[0],) else None


def _rebind(rw: Rewriter, node: Node, index: int, array: np.ndarray, suffix: str) -> None:
    """Gives ``node`` a new constant input ``index`` (never writes to a shared tensor)."""
    g = node.graph
    assert g is not None
    old = node.inputs[index] if index < len(node.inputs) else None
    hint = (old.name if old is not None else node.outputs[0].name or node.op_type) + suffix
    _set_or_append(rw, node, index, rw.add_constant(g, hint, array))


# Mul(Conv(x, W, b), c) -> Conv(x, W * c, b * c)   (c per output channel: [M, 1, 1], [1, M, 1, 1])
def fold_mul_into_conv(node: Node, rw: Rewriter) -> bool:
    match = _affine_match(node, rw, "Conv", _conv_params)
    if match is None:
        return False
    conv, c, params = match
    w, b = params
    s = _per_channel(c, w.ndim, 1, w.shape[0])
    if s is None or c.dtype != w.dtype:
        return False
    new_w = w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))
    _rebind(rw, conv, 1, new_w.astype(w.dtype), "_mul")
    if b is not None:
        _rebind(rw, conv, 2, (b.astype(np.float64) * s).astype(b.dtype), "_mul")
    rw.replace(node.outputs[0], conv.outputs[0])
    return True


# Add(Conv(x, W, b), d) -> Conv(x, W, b + d)   (d per output channel)
def fold_add_into_conv(node: Node, rw: Rewriter) -> bool:
    match = _affine_match(node, rw, "Conv", _conv_params)
    if match is None:
        return False
    conv, d, params = match
    w, b = params
    t = _per_channel(d, w.ndim, 1, w.shape[0])
    if t is None or d.dtype != w.dtype:
        return False
    new_b = t if b is None else b.astype(np.float64) + t
    _rebind(rw, conv, 2, new_b.astype(w.dtype), "_add")
    rw.replace(node.outputs[0], conv.outputs[0])
    return True


def _affine_match(
    node: Node, rw: Rewriter, op: str, params: Callable[[Node, Rewriter], Any]
) -> tuple[Node, np.ndarray, Any] | None:
    """``node`` (a Mul or Add) applied to an ``op`` output and a constant, with the producer's
    constant parameters: ``(producer, constant, params)``, or None when the rule cannot fire."""
    hit = _affine_operand(node, rw, op)
    if hit is None:
        return None
    found = params(hit[0], rw)
    return None if found is None else (hit[0], hit[1], found)


def _gemm_params(gemm: Node, rw: Rewriter) -> tuple[np.ndarray, np.ndarray | None, int] | None:
    """A Gemm's constant B and C (None when absent) and its column count N."""
    if rw.opset < 7 or len(gemm.inputs) < 2:
        return None  # C broadcasts unidirectionally from opset 7
    w = _weights(rw, gemm.inputs[1], 2)
    if w is None:
        return None
    c_v = gemm.inputs[2] if len(gemm.inputs) > 2 else None
    c = None if c_v is None else rw.const(c_v)
    if c_v is not None and (c is None or c.ndim > 2):
        return None
    return w, c, w.shape[0] if gemm.attr("transB", 0) else w.shape[1]


# Mul(Gemm(a, B, C), c) -> Gemm(a, B * c, C * c)   (c per output column)
def fold_mul_into_gemm(node: Node, rw: Rewriter) -> bool:
    match = _affine_match(node, rw, "Gemm", _gemm_params)
    if match is None:
        return False
    gemm, c, params = match
    w, cc, n = params
    s = _per_channel(c, 2, 1, n)
    if s is None or c.dtype != w.dtype:
        return False
    scale = s[:, None] if gemm.attr("transB", 0) else s[None, :]
    _rebind(rw, gemm, 1, (w.astype(np.float64) * scale).astype(w.dtype), "_mul")
    if cc is not None:
        _rebind(rw, gemm, 2, (cc.astype(np.float64) * s).astype(cc.dtype), "_mul")
    rw.replace(node.outputs[0], gemm.outputs[0])
    return True


# Add(Gemm(a, B, C), d) -> Gemm(a, B, beta * C + d)   (d per output column: [N], [1, N], scalar)
def fold_add_into_gemm(node: Node, rw: Rewriter) -> bool:
    match = _affine_match(node, rw, "Gemm", _gemm_params)
    if match is None:
        return False
    gemm, d, params = match
    w, cc, n = params
    if _per_channel(d, 2, 1, n) is None or d.dtype != w.dtype:
        return False
    beta = float(gemm.attr("beta", 1.0))
    new_c = d.astype(np.float64)
    if cc is not None:
        new_c = beta * cc.astype(np.float64) + new_c
    _rebind(rw, gemm, 2, new_c.astype(w.dtype), "_add")
    if beta != 1.0:
        gemm.set_attr("beta", 1.0)
    rw.replace(node.outputs[0], gemm.outputs[0])
    return True


# Mul(MatMul(a, B), c) -> MatMul(a, B * c)   (B a 2-D constant; c per output column)
def fold_mul_into_matmul(node: Node, rw: Rewriter) -> bool:
    hit = _affine_operand(node, rw, "MatMul")
    if hit is None:
        return False
    mm, c = hit
    w = _weights(rw, mm.inputs[1], 2)
    if w is None or c.dtype != w.dtype:
        return False
    ra = rw.rank(mm.inputs[0])
    if ra is None:
        rank = 1 if c.ndim <= 1 else None  # a vector broadcasts along the last dim at any rank
    else:
        rank = 1 if ra == 1 else max(ra, 2)  # a 1-D a gives a [N] result
    s = None if rank is None else _per_channel(c, rank, rank - 1, w.shape[1])
    if s is None:
        return False
    _rebind(rw, mm, 1, (w.astype(np.float64) * s[None, :]).astype(w.dtype), "_mul")
    rw.replace(node.outputs[0], mm.outputs[0])
    return True


# Gemm(Mul(a, s), B, C) -> Gemm(a, B * s, C);  MatMul(Mul(a, s), B) -> MatMul(a, B * s)   (s scalar)
def fold_input_scale_into_weights(node: Node, rw: Rewriter) -> bool:
    if len(node.inputs) < 2 or (node.op_type == "MatMul" and len(node.inputs) != 2):
        return False
    mul = producer(node.inputs[0], "Mul")
    if mul is None or len(mul.inputs) != 2 or not rw.only_user(node.inputs[0], node):
        return False
    if not rw.only_user(node.inputs[1], node):
        return False  # a weight read elsewhere too would need a second, scaled copy
    w = _weights(rw, node.inputs[1], 2)
    if w is None:
        return False
    for i in (0, 1):
        x = mul.inputs[i]
        s = rw.const(mul.inputs[1 - i], 1 << 10)
        if x is None or s is None or s.size != 1 or s.dtype != w.dtype:
            continue
        r = rw.rank(x)
        if r is None or s.ndim > r:
            continue  # the Mul would broadcast x to a higher rank
        scaled = (w.astype(np.float64) * float(s.reshape(-1)[0])).astype(w.dtype)
        _rebind(rw, node, 1, scaled, "_scaled")
        rw.set_input(node, 0, x)
        return True
    return False


def _bn_params(bn: Node, rw: Rewriter) -> tuple[np.ndarray, np.ndarray] | None:
    """An inference BatchNormalization's constant scale and bias."""
    if len(bn.inputs) != 5 or any(v is None for v in bn.inputs):
        return None
    if any(v.num_uses or v.is_graph_output for v in bn.outputs[1:]):
        return None
    if bn.attr("training_mode", 0) or bn.attr("spatial", 1) != 1:
        return None
    if rw.opset < 7 and not bn.attr("is_test", 0):
        return None  # opset 6 and before: is_test=0 is training
    scale, bias = rw.const(bn.inputs[1]), rw.const(bn.inputs[2])
    if scale is None or bias is None or scale.ndim != 1 or scale.shape != bias.shape:
        return None
    if scale.dtype.type not in _FOLD_DTYPES or bias.dtype.type not in _FOLD_DTYPES:
        return None
    return scale, bias


# Mul(BatchNormalization(x, s, t, m, v), c) -> BatchNormalization(x, s * c, t * c, m, v)
def fold_mul_into_batchnorm(node: Node, rw: Rewriter) -> bool:
    match = _affine_match(node, rw, "BatchNormalization", _bn_params)
    if match is None:
        return False
    bn, c, params = match
    scale, bias = params
    k = _per_channel(c, rw.rank(bn.inputs[0]), 1, scale.shape[0])
    if k is None:
        return False
    _rebind(rw, bn, 1, (scale.astype(np.float64) * k).astype(scale.dtype), "_mul")
    _rebind(rw, bn, 2, (bias.astype(np.float64) * k).astype(bias.dtype), "_mul")
    rw.replace(node.outputs[0], bn.outputs[0])
    return True


# Add(BatchNormalization(x, s, t, m, v), d) -> BatchNormalization(x, s, t + d, m, v)
def fold_add_into_batchnorm(node: Node, rw: Rewriter) -> bool:
    match = _affine_match(node, rw, "BatchNormalization", _bn_params)
    if match is None:
        return False
    bn, d, params = match
    _, bias = params
    t = _per_channel(d, rw.rank(bn.inputs[0]), 1, bias.shape[0])
    if t is None:
        return False
    _rebind(rw, bn, 2, (bias.astype(np.float64) + t).astype(bias.dtype), "_add")
    rw.replace(node.outputs[0], bn.outputs[0])
    return True
