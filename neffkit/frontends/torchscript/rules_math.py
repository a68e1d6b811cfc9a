"""Lifting rules for the math ops the zoo found unlifted: clamps by one bound, narrow,
statistical reductions (logsumexp, prod, var/std, vector norms, all/any over a tensor), einsum,
baddbmm, ``.mT``, one_hot (ONNX opset 18 forms)."""

from __future__ import annotations

from typing import Any

import numpy as np

from neffkit.frontends.torchscript._base import (
    I64,
    INT64_MAX,
    B,
    Decline,
    F,
    binary,
    dtype,
    rank,
    rule,
    static,
)
from neffkit.ir import Value


@rule("aten::relu6")
def _relu6(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # relu6(x) -> Clip(x, 0, 6)
    x = lx.tensor(a["self"])
    return lx.emit("Clip", [x, lx.tensor(0.0, dtype(x)), lx.tensor(6.0, dtype(x))])


@rule("aten::clamp_min", "aten::clamp_max")
def _clamp_one(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # clamp_min(x, m) -> Max(x, m); clamp_max(x, m) -> Min(x, m)
    x = lx.tensor(a["self"])
    bound = a.get("min", a.get("max"))
    op = "Max" if node.kind() == "aten::clamp_min" else "Min"
    return binary(lx, op, x, lx.tensor(bound, dtype(x)) if not isinstance(bound, Value) else bound)


@rule("aten::narrow")
def _narrow(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # narrow(x, d, s, n) -> Slice(x, [s], [s + n], [d])
    x = lx.tensor(a["self"])
    start, length = a["start"], a["length"]
    if isinstance(start, Value):
        # a computed start may count from the end (torch allows it): Slice needs s + n there
        raise Decline("narrow from a computed start")
    if isinstance(length, Value):
        end: Any = binary(lx, "Add", lx.int64(start), lx.int64(length))
    else:
        end = int(start) + int(length)
        if int(start) < 0 and end >= 0:  # narrow(x, d, -3, 3): to the end, not to 0
            end = INT64_MAX
    dim = int(static(lx, a["dim"]))
    return lx.emit("Slice", [x, lx.ints([start]), lx.ints([end]), lx.ints([dim])])


def _dims(lx: Any, a: dict[str, Any], key: str = "dim") -> list[int] | None:
    """The reduced dims as a list, None for all of them."""
    dims = static(lx, a.get(key))
    if dims is None or dims == []:
        return None
    return [int(d) for d in (dims if isinstance(dims, list | tuple) else [dims])]


def _reduce(lx: Any, op: str, x: Value, dims: list[int] | None, keep: bool) -> Value:
    """``op`` over ``dims`` (all when None) of ``x``, keeping them or not."""
    r = x.type.rank if x.type is not None else None
    if dims is None:
        out = lx.emit(op, [x], keepdims=int(keep), rank=r if keep else 0)
        return out
    r = None if r is None else (r if keep else r - len(dims))
    axes = lx.constant(np.array(dims, np.int64))
    return lx.emit(op, [x, axes], keepdims=int(keep), rank=r)


@rule("aten::logsumexp")
def _logsumexp(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    return _reduce(lx, "ReduceLogSumExp", x, _dims(lx, a), bool(static(lx, a["keepdim"])))


@rule("aten::prod")
def _prod(lx: Any, a: dict[str, Any], node: Any) -> Any:
    if a.get("dtype") is not None:
        raise Decline("prod with a dtype")
    x = lx.tensor(a["self"])
    return _reduce(lx, "ReduceProd", x, _dims(lx, a), bool(static(lx, a.get("keepdim", False))))


@rule("aten::var", "aten::std")
def _var(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # var(x, d, c) -> ReduceSum((x - mean)^2, d) / (n - c), n = the reduced element count
    x = lx.tensor(a["self"])
    if dtype(x) not in (F, None):
        raise Decline("var/std of a non-float32 tensor")
    dims, keep = _dims(lx, a), bool(static(lx, a.get("keepdim", False)))
    if "correction" in a:
        c = static(lx, a["correction"])
        correction = 1.0 if c is None else float(c)
    else:
        correction = 1.0 if static(lx, a.get("unbiased", True)) else 0.0
    d = lx.emit("Sub", [x, _reduce(lx, "ReduceMean", x, dims, True)])
    total = _reduce(lx, "ReduceSum", lx.emit("Mul", [d, d]), dims, keep)
    shape = lx.emit("Shape", [x], dtype=I64, rank=1)
    if dims is not None:
        shape = lx.emit("Gather", [shape, lx.constant(np.array(dims, np.int64))], axis=0)
    n = lx.emit("Cast", [lx.emit("ReduceProd", [shape], keepdims=0, rank=0)], to=F, dtype=F)
    out = lx.emit("Div", [total, binary(lx, "Sub", n, correction)])
    return lx.emit("Sqrt", [out]) if node.kind() == "aten::std" else out


@rule("aten::linalg_vector_norm", "aten::norm")
def _norm(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # ||x||_2 -> ReduceL2, ||x||_1 -> ReduceL1, ||x||_inf -> ReduceMax(Abs(x))
    x = lx.tensor(a["self"])
    if a.get("dtype") is not None:
        raise Decline("norm with a dtype")
    p = static(lx, a.get("ord", a.get("p", 2.0)))
    p = 2.0 if p is None else float(p)
    keep = bool(static(lx, a.get("keepdim", False)))
    dims = _dims(lx, a)
    if p == 2.0:
        return _reduce(lx, "ReduceL2", x, dims, keep)
    if p == 1.0:
        return _reduce(lx, "ReduceL1", x, dims, keep)
    if p == float("inf"):
        return _reduce(lx, "ReduceMax", lx.emit("Abs", [x]), dims, keep)
    raise Decline(f"a {p}-norm")


@rule("aten::all", "aten::any")
def _all_any(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # all(x, d) -> Cast(ReduceMin(Cast(x, int64), d), bool); any likewise with ReduceMax
    seq = a["_0"]
    if isinstance(seq, list | tuple):
        if any(isinstance(s, Value) for s in seq):
            raise Decline("all/any of a computed list")
        return all(seq) if node.kind() == "aten::all" else any(seq)
    x = lx.tensor(seq, I64)
    dims = _dims(lx, a)
    keep = bool(static(lx, a.get("keepdim", False)))
    op = "ReduceMin" if node.kind() == "aten::all" else "ReduceMax"
    return lx.emit("Cast", [_reduce(lx, op, x, dims, keep)], to=B, dtype=B)


@rule("aten::einsum")
def _einsum(lx: Any, a: dict[str, Any], node: Any) -> Any:
    tensors = a["tensors"]
    if isinstance(tensors, Value):
        raise Decline("a computed tensor list")
    equation = str(static(lx, a["equation"])).replace(" ", "")
    xs = [lx.tensor(t) for t in tensors]
    out = equation.split("->")[1] if "->" in equation else None
    return lx.emit("Einsum", xs, equation=equation,
                   rank=None if out is None or "." in out else len(out))  # fmt: skip


@rule("aten::baddbmm", "aten::addbmm")
def _baddbmm(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # baddbmm(s, p, q, beta, alpha) -> beta * s + alpha * (p @ q)
    s, p, q = lx.tensor(a["self"]), lx.tensor(a["batch1"]), lx.tensor(a["batch2"])
    prod = lx.emit("MatMul", [p, q], rank=3)
    if node.kind() == "aten::addbmm":
        prod = lx.emit("ReduceSum", [prod, lx.constant(np.array([0]))], keepdims=0, rank=2)
    beta, alpha = static(lx, a.get("beta", 1)), static(lx, a.get("alpha", 1))
    if alpha != 1:
        prod = binary(lx, "Mul", prod, float(alpha))
    if beta == 0:
        return prod
    if beta != 1:
        s = binary(lx, "Mul", s, float(beta))
    return lx.emit("Add", [prod, s], rank=prod.type.rank if prod.type else None)


@rule("aten::mT", "aten::mH", "aten::adjoint")
def _mt(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # x.mT -> Transpose(x, swap the last two dims)
    x = lx.tensor(a["self"])
    r = rank(x)
    return lx.emit("Transpose", [x], perm=[*range(r - 2), r - 1, r - 2])


@rule("aten::one_hot")
def _one_hot(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # one_hot(i, n) -> OneHot(i, n, [0, 1]) (int64, a new last axis)
    x = lx.tensor(a["self"])
    n = static(lx, a["num_classes"])
    if n is None or int(n) < 0:
        raise Decline("one_hot with the class count inferred from the data")
    depth = lx.constant(np.array(int(n), np.int64))
    values = lx.constant(np.array([0, 1], np.int64))
    r = x.type.rank if x.type is not None else None
    return lx.emit("OneHot", [x, depth, values], axis=-1, dtype=I64,
                   rank=None if r is None else r + 1)  # fmt: skip
