"""Transpose rules: two Transposes compose into one (or none), an identity permutation goes."""

from __future__ import annotations

from neffkit.ir.core import Node
from neffkit.passes.rewrite.patterns import producer
from neffkit.passes.rewrite.registry import rule
from neffkit.passes.rewrite.rewriter import Rewriter


def _perm(node: Node, rw: Rewriter) -> list[int] | None:
    p = node.attr("perm")
    if p is not None:
        return [int(i) for i in p]
    r = rw.rank(node.inputs[0])
    return None if r is None else list(range(r - 1, -1, -1))  # no perm: reverse the dims


@rule("Transpose")
def fuse_transposes(node: Node, rw: Rewriter) -> bool:
    """Transpose(Transpose(x, p1), p2) -> Transpose(x, p1[p2]), or x when that is the identity"""
    inner = producer(node.inputs[0], "Transpose")
    if inner is None or inner.inputs[0] is None:
        return False
    p1 = _perm(inner, rw)
    p2 = _perm(node, rw)
    if p1 is None or p2 is None or len(p1) != len(p2) or sorted(p2) != list(range(len(p2))):
        return False
    q = [p1[j] for j in p2]
    x = inner.inputs[0]
    if q == list(range(len(q))):
        rw.replace(node.outputs[0], x)
    else:
        node.set_attr("perm", q)
        rw.set_input(node, 0, x)
    return True


@rule("Transpose")
def drop_identity_transpose(node: Node, rw: Rewriter) -> bool:
    """Transpose<perm=[0, 1, ...]>(x) -> x"""
    p = _perm(node, rw)
    if p is None or p != list(range(len(p))) or node.inputs[0] is None:
        return False
    rw.replace(node.outputs[0], node.inputs[0])
    return True
