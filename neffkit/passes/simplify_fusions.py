"""``simplify`` rules that merge nodes: exact Cast chains, BatchNormalization folded into a
Conv or Gemm, and MatMul + Add -> Gemm. Listed in ``simplify_rules.RULES``."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as TP

from neffkit.ir.core import Node, Value
from neffkit.ir.tensor import onnx_dtype
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
        b = rw.const(b_v)
        c = rw.const(c_v)
        a_shape = rw.shape(a)
        if b is None or c is None or b.ndim != 2 or c.ndim > 2 or a_shape is None:
            continue
        dt = onnx_dtype(b.dtype)
        if len(a_shape) != 2 or dt not in gemm_types or onnx_dtype(c.dtype) != dt:
            continue
        if rw.dtype(a) not in (None, dt):
            continue
        cs = (1,) * (2 - c.ndim) + tuple(c.shape)
        m = a_shape[0]
        if cs[1] not in (1, b.shape[1]) or cs[0] != 1 and not (isinstance(m, int) and m == cs[0]):
            continue  # Gemm broadcasts C one way only: the Add must not grow [M, N]
        out = node.outputs[0]
        gemm = Node("Gemm", [a, b_v, c_v], outputs=[Value(out.name, out.type)], name=node.name)
        rw.insert_before(node, gemm)
        rw.replace(out, gemm.outputs[0])
        return True
    return False
