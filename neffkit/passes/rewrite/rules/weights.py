"""Rules that fold a constant affine map into the constants of the node before it:
BatchNormalization into a Conv or Gemm, a per-channel Mul / Add into a Conv, Gemm, MatMul or
BatchNormalization. New weights are new initializers (a shared tensor is never edited).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from neffkit.ir.core import Node
from neffkit.passes.rewrite.patterns import (
    FOLD_DTYPES,
    producer,
    rebind,
    set_or_append,
    weights,
)
from neffkit.passes.rewrite.registry import rule
from neffkit.passes.rewrite.rewriter import Rewriter


def _batchnorm_affine(node: Node, rw: Rewriter) -> tuple[np.ndarray, np.ndarray] | None:
    """``(s, t)`` with BN(y) = y * s + t per channel, when BN is an inference-mode affine map
    of constants; float64."""
    if len(node.outputs) != 1 or len(node.inputs) != 5 or any(v is None for v in node.inputs):
        return None
    if node.attr("training_mode", 0) or node.attr("spatial", 1) != 1:
        return None
    params = [p for p in (rw.const(v) for v in node.inputs[1:]) if p is not None]
    if len(params) != 4 or any(p.ndim != 1 or p.dtype.kind != "f" for p in params):
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


@rule("BatchNormalization")
def fold_batchnorm_into_conv(node: Node, rw: Rewriter) -> bool:
    """BatchNormalization(Conv(x, W, b)) -> Conv(x, W * s, b * s + t)

    With ``s = scale / sqrt(var + eps)`` and ``t = bias - mean * s``.
    """
    conv = _folds_into(node, rw, "Conv")
    affine = _batchnorm_affine(node, rw)
    if conv is None or affine is None or len(conv.inputs) < 2:
        return False
    s, t = affine
    w = weights(rw, conv.inputs[1])
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
    set_or_append(rw, conv, 2, rw.add_constant(g, (b_v.name if b_v else hint) + "_bn", new_b))
    rw.replace(node.outputs[0], conv.outputs[0])
    return True


@rule("BatchNormalization")
def fold_batchnorm_into_gemm(node: Node, rw: Rewriter) -> bool:
    """BatchNormalization(Gemm(a, B, c)) -> Gemm(a, B * s, beta * c * s + t)

    Per output column.
    """
    gemm = _folds_into(node, rw, "Gemm")
    affine = _batchnorm_affine(node, rw)
    if rw.opset < 7 or gemm is None or affine is None or len(gemm.inputs) < 2:
        return False  # Gemm broadcasts C unidirectionally from opset 7
    s, t = affine
    w = weights(rw, gemm.inputs[1], 2)
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
    set_or_append(rw, gemm, 2, rw.add_constant(g, (c_v.name if c_v else hint) + "_bn_c", new_c))
    if beta != 1.0:
        gemm.set_attr("beta", 1.0)
    rw.replace(node.outputs[0], gemm.outputs[0])
    return True


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
        if c is not None and c.dtype.type in FOLD_DTYPES:
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
    w = weights(rw, conv.inputs[1])
    if w is None or w.ndim < 3:
        return None
    b_v = conv.inputs[2] if len(conv.inputs) > 2 else None
    if b_v is None:
        return w, None
    b = rw.const(b_v)
    return (w, b) if b is not None and b.shape == (w.shape[0],) else None


@rule("Mul")
def fold_mul_into_conv(node: Node, rw: Rewriter) -> bool:
    """Mul(Conv(x, W, b), c) -> Conv(x, W * c, b * c)

    ``c`` per output channel: ``[M, 1, 1]``, ``[1, M, 1, 1]``.
    """
    match = _affine_match(node, rw, "Conv", _conv_params)
    if match is None:
        return False
    conv, c, params = match
    w, b = params
    s = _per_channel(c, w.ndim, 1, w.shape[0])
    if s is None or c.dtype != w.dtype:
        return False
    new_w = w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))
    rebind(rw, conv, 1, new_w.astype(w.dtype), "_mul")
    if b is not None:
        rebind(rw, conv, 2, (b.astype(np.float64) * s).astype(b.dtype), "_mul")
    rw.replace(node.outputs[0], conv.outputs[0])
    return True


@rule("Add")
def fold_add_into_conv(node: Node, rw: Rewriter) -> bool:
    """Add(Conv(x, W, b), d) -> Conv(x, W, b + d)   (d per output channel)"""
    match = _affine_match(node, rw, "Conv", _conv_params)
    if match is None:
        return False
    conv, d, params = match
    w, b = params
    t = _per_channel(d, w.ndim, 1, w.shape[0])
    if t is None or d.dtype != w.dtype:
        return False
    new_b = t if b is None else b.astype(np.float64) + t
    rebind(rw, conv, 2, new_b.astype(w.dtype), "_add")
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
    w = weights(rw, gemm.inputs[1], 2)
    if w is None:
        return None
    c_v = gemm.inputs[2] if len(gemm.inputs) > 2 else None
    c = None if c_v is None else rw.const(c_v)
    if c_v is not None and (c is None or c.ndim > 2):
        return None
    return w, c, w.shape[0] if gemm.attr("transB", 0) else w.shape[1]


@rule("Mul")
def fold_mul_into_gemm(node: Node, rw: Rewriter) -> bool:
    """Mul(Gemm(a, B, C), c) -> Gemm(a, B * c, C * c)   (c per output column)"""
    match = _affine_match(node, rw, "Gemm", _gemm_params)
    if match is None:
        return False
    gemm, c, params = match
    w, cc, n = params
    s = _per_channel(c, 2, 1, n)
    if s is None or c.dtype != w.dtype:
        return False
    scale = s[:, None] if gemm.attr("transB", 0) else s[None, :]
    rebind(rw, gemm, 1, (w.astype(np.float64) * scale).astype(w.dtype), "_mul")
    if cc is not None:
        rebind(rw, gemm, 2, (cc.astype(np.float64) * s).astype(cc.dtype), "_mul")
    rw.replace(node.outputs[0], gemm.outputs[0])
    return True


@rule("Add")
def fold_add_into_gemm(node: Node, rw: Rewriter) -> bool:
    """Add(Gemm(a, B, C), d) -> Gemm(a, B, beta * C + d)

    ``d`` per output column: ``[N]``, ``[1, N]``, scalar.
    """
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
    rebind(rw, gemm, 2, new_c.astype(w.dtype), "_add")
    if beta != 1.0:
        gemm.set_attr("beta", 1.0)
    rw.replace(node.outputs[0], gemm.outputs[0])
    return True


@rule("Mul")
def fold_mul_into_matmul(node: Node, rw: Rewriter) -> bool:
    """Mul(MatMul(a, B), c) -> MatMul(a, B * c)   (B a 2-D constant; c per output column)"""
    hit = _affine_operand(node, rw, "MatMul")
    if hit is None:
        return False
    mm, c = hit
    w = weights(rw, mm.inputs[1], 2)
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
    rebind(rw, mm, 1, (w.astype(np.float64) * s[None, :]).astype(w.dtype), "_mul")
    rw.replace(node.outputs[0], mm.outputs[0])
    return True


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
    if scale.dtype.type not in FOLD_DTYPES or bias.dtype.type not in FOLD_DTYPES:
        return None
    return scale, bias


@rule("Mul")
def fold_mul_into_batchnorm(node: Node, rw: Rewriter) -> bool:
    """Mul(BatchNormalization(x, s, t, m, v), c) -> BatchNormalization(x, s * c, t * c, m, v)"""
    match = _affine_match(node, rw, "BatchNormalization", _bn_params)
    if match is None:
        return False
    bn, c, params = match
    scale, bias = params
    k = _per_channel(c, rw.rank(bn.inputs[0]), 1, scale.shape[0])
    if k is None:
        return False
    rebind(rw, bn, 1, (scale.astype(np.float64) * k).astype(scale.dtype), "_mul")
    rebind(rw, bn, 2, (bias.astype(np.float64) * k).astype(bias.dtype), "_mul")
    rw.replace(node.outputs[0], bn.outputs[0])
    return True


@rule("Add")
def fold_add_into_batchnorm(node: Node, rw: Rewriter) -> bool:
    """Add(BatchNormalization(x, s, t, m, v), d) -> BatchNormalization(x, s, t + d, m, v)"""
    match = _affine_match(node, rw, "BatchNormalization", _bn_params)
    if match is None:
        return False
    bn, d, params = match
    _, bias = params
    t = _per_channel(d, rw.rank(bn.inputs[0]), 1, bias.shape[0])
    if t is None:
        return False
    rebind(rw, bn, 2, (bias.astype(np.float64) + t).astype(bias.dtype), "_add")
    rw.replace(node.outputs[0], bn.outputs[0])
    return True
