"""Cast rules: a chain of Casts through an exact intermediate type fuses, a Cast to the type
the value already has goes. ``EXACT_CASTS`` says which intermediate types lose nothing.
"""

from __future__ import annotations

from onnx import TensorProto as TP

from neffkit.ir.core import Node
from neffkit.passes.rewrite.patterns import producer
from neffkit.passes.rewrite.registry import rule
from neffkit.passes.rewrite.rewriter import Rewriter

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


@rule("Cast")
def fuse_casts(node: Node, rw: Rewriter) -> bool:
    """Cast(Cast(x, a), b) -> Cast(x, b)   (a holds every value of x's type exactly)"""
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


@rule("Cast")
def drop_same_type_cast(node: Node, rw: Rewriter) -> bool:
    """Cast(x, to=T) -> x   (x is already of type T)"""
    x = node.inputs[0] if node.inputs else None
    to = _cast_to(node)
    if x is None or to is None or rw.dtype(x) != to:
        return False
    rw.replace(node.outputs[0], x)
    return True
