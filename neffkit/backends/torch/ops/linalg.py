"""Lowerings of matrix ops: MatMul, Gemm, Einsum, Det and Trilu."""

from __future__ import annotations

import torch
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import FLOAT_TYPES, arg
from neffkit.backends.torch.helpers.shapes import const_ints, has_input
from neffkit.backends.torch.registry import Arg, Lowered, lowers, lowers_call
from neffkit.ir.core import Node


@lowers("MatMul")
def matmul(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # MatMul(a, b) -> torch.matmul(a, b) (numpy broadcasting and 1-D rules match)
    return ctx.call(torch.matmul, args[0], args[1])


@lowers("Gemm")
def gemm(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Gemm(a, b, c) -> alpha * a' @ b' + beta * c, as torch.addmm when c is given
    a, b, c = args[0], args[1], arg(args, 2)
    if node.attr("transA", 0):
        a = ctx.method("t", a)
    if node.attr("transB", 0):
        b = ctx.method("t", b)
    alpha = float(node.attr("alpha", 1.0))
    beta = float(node.attr("beta", 1.0))
    dt = node.inputs[0].dtype
    is_float = dt in FLOAT_TYPES or dt is None
    if c is not None and beta != 0.0:
        if is_float:
            kw = {}
            if beta != 1.0:
                kw["beta"] = beta
            if alpha != 1.0:
                kw["alpha"] = alpha
            return ctx.call(torch.addmm, c, a, b, **kw)
        y = _scaled(ctx, ctx.call(torch.matmul, a, b), alpha)
        return ctx.call(torch.add, y, _scaled(ctx, c, beta))
    return _scaled(ctx, ctx.call(torch.matmul, a, b), alpha)


def _scaled(ctx: LoweringContext, x: Arg, k: float) -> Arg:
    if k == 1.0:
        return x
    if float(k).is_integer():
        return ctx.call(torch.mul, x, int(k))
    return ctx.call(torch.mul, x, k)


@lowers("Einsum")
def einsum(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Einsum(equation, *xs) -> torch.einsum(equation, *xs)
    eq = node.attr("equation")
    if isinstance(eq, bytes):
        eq = eq.decode()
    return ctx.call(torch.einsum, eq.replace(" ", ""), *args)


def trilu_dynamic(x: Tensor, k: Tensor, upper: bool) -> Tensor:
    """ONNX Trilu with a run-time diagonal offset."""
    kk = int(k.item())
    return torch.triu(x, kk) if upper else torch.tril(x, kk)


@lowers("Trilu")
def trilu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Trilu(x, k, upper) -> torch.triu(x, k) / torch.tril(x, k)
    upper = bool(node.attr("upper", 1))
    k = 0
    if has_input(node, 1):
        ks = const_ints(ctx, 1)
        if ks is None:
            return ctx.call(trilu_dynamic, args[0], args[1], upper)
        k = ks[0]
    return ctx.call(torch.triu if upper else torch.tril, args[0], k)


# Op(x) -> torch.fn(x), exact ONNX semantics.
_ONE_CALL = {
    "Det": torch.linalg.det,
}
for _op, _fn in _ONE_CALL.items():
    lowers_call(_op, _fn)
