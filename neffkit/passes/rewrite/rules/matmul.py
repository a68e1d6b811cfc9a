"""Rules on matrix products: MatMul + Add becomes Gemm, and a scalar scale of the input of a
MatMul or Gemm moves into its constant weights.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as TP

from neffkit.ir.core import Node, Value
from neffkit.passes.rewrite.patterns import producer, rebind, weights
from neffkit.passes.rewrite.registry import rule
from neffkit.passes.rewrite.rewriter import Rewriter

_GEMM_DTYPES = {TP.FLOAT, TP.FLOAT16, TP.DOUBLE}


@rule("Add")
def fuse_matmul_add(node: Node, rw: Rewriter) -> bool:
    """Add(MatMul(a, B), c) -> Gemm(a, B, c)   (a 2-D; B, c constants; c broadcasts to [M, N])"""
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


@rule("MatMul", "Gemm")
def fold_input_scale_into_weights(node: Node, rw: Rewriter) -> bool:
    """Gemm(Mul(a, s), B, C) -> Gemm(a, B * s, C);  MatMul(Mul(a, s), B) -> MatMul(a, B * s)

    ``s`` a scalar.
    """
    if len(node.inputs) < 2 or (node.op_type == "MatMul" and len(node.inputs) != 2):
        return False
    mul = producer(node.inputs[0], "Mul")
    if mul is None or len(mul.inputs) != 2 or not rw.only_user(node.inputs[0], node):
        return False
    if not rw.only_user(node.inputs[1], node):
        return False  # a weight read elsewhere too would need a second, scaled copy
    w = weights(rw, node.inputs[1], 2)
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
        rebind(rw, node, 1, scaled, "_scaled")
        rw.set_input(node, 0, x)
        return True
    return False
