"""Lifting rules for TorchScript's plumbing (constants, lists, tuples, ints and bools, casts)
and the elementwise arithmetic and comparisons that tensors and scalars share.

Known-at-lift-time operands are computed in Python (``size // 2`` on constants folds away);
computed ones become ONNX ops on 0-d tensors.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from neffkit.frontends.torchscript._base import (
    I64,
    SCALAR_TYPES,
    B,
    Decline,
    F,
    binary,
    both_static,
    dtype,
    dtype_from_torch,
    is_tensor_like,
    only_messages,
    rule,
    static,
    unsupported,
)
from neffkit.ir import Value
from neffkit.ir.tensor import np_dtype

D = 11  # TensorProto.DOUBLE


@rule("prim::Constant")
def _constant(lx: Any, a: dict[str, Any], node: Any) -> Any:
    import torch  # noqa: PLC0415

    out = node.output()
    if isinstance(out.type(), torch._C.TensorType):
        t = out.toIValue()
        lx.names[id(t)] = out.debugName()
        return t
    return out.toIValue() if node.hasAttributes() else None


@rule("prim::GetAttr")
def _getattr(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # an attribute freezing left in place (a chain rooted at the module): read it now
    import torch  # noqa: PLC0415

    owner, name = a["_0"], node.s("name")
    c_module = torch._C.ScriptModule
    value = owner.getattr(name) if isinstance(owner, c_module) else getattr(owner, name)
    if isinstance(value, torch.Tensor):
        lx.names.setdefault(id(value), name)
    elif not isinstance(value, torch.nn.Module | c_module | bool | int | float | str | None):
        raise unsupported(node, f"attribute '{name}' is a {type(value).__name__}")
    return value


@rule("prim::ListConstruct", "prim::TupleConstruct")
def _construct(lx: Any, a: dict[str, Any], node: Any) -> Any:
    items = [a[f"_{i}"] for i in range(len(list(node.inputs())))]
    return items if node.kind() == "prim::ListConstruct" else tuple(items)


@rule("prim::ListUnpack", "prim::TupleUnpack")
def _unpack(lx: Any, a: dict[str, Any], node: Any) -> Any:
    seq = a["_0"]
    n = len(list(node.outputs()))
    if isinstance(seq, Value):  # a shape: one 0-d int64 per element
        return [lx.emit("Gather", [seq, lx.constant(np.array(i))], axis=0, rank=0)
                for i in range(n)]  # fmt: skip
    return list(seq)


@rule("prim::TupleIndex", "aten::__getitem__")
def _index(lx: Any, a: dict[str, Any], node: Any) -> Any:
    seq, i = a["_0"], a["_1"]
    if isinstance(i, Value):
        raise Decline("computed index")
    if isinstance(seq, Value):
        return lx.emit("Gather", [seq, lx.constant(np.array(i))], axis=0, rank=0)
    return seq[i]


@rule("aten::append")
def _append(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # a list built at lift time grows at lift time (counted loops around it are unrolled)
    seq = a["self"]
    if len(lx.graphs) > 1 or not isinstance(seq, list):
        raise unsupported(node, "a list mutated in a loop or under a data-dependent branch; "
                          "accumulate tensors with torch.cat instead")  # fmt: skip
    seq.append(a["el"])
    return seq


@rule("aten::len")
def _len(lx: Any, a: dict[str, Any], node: Any) -> Any:
    seq = a["_0"]
    if isinstance(seq, list | tuple | str):
        return len(seq)
    raise Decline("len of a tensor")


@rule("aten::dim")
def _dim(lx: Any, a: dict[str, Any], node: Any) -> Any:
    r = lx.tensor(a["self"]).type
    if r is None or r.rank is None:
        raise Decline("rank unknown")
    return r.rank


@rule("prim::device")
def _device(lx: Any, a: dict[str, Any], node: Any) -> Any:
    import torch  # noqa: PLC0415

    return torch.device("cpu")


@rule("prim::type")
def _device_type(lx: Any, a: dict[str, Any], node: Any) -> Any:
    return static(lx, a["_0"]).type


@rule("prim::dtype")
def _dtype(lx: Any, a: dict[str, Any], node: Any) -> Any:
    d = dtype(lx.tensor(a["_0"]))
    if d is None:
        raise Decline("dtype unknown")
    return SCALAR_TYPES.index(str(np_dtype(d)))


@rule("prim::Uninitialized", "aten::warn")
def _nothing(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # warnings and their messages are dropped (check_constructs let only those through)
    return None


@rule("aten::format", "aten::str")
def _string(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # formatted when its arguments are known; a computed one is only accepted as a message
    args = [a[f"_{i}"] for i in range(len(list(node.inputs())))]
    if not both_static(*args):
        if only_messages(node.output()):
            return "<message>"
        raise unsupported(node, "a string computed in the graph")
    return str(args[0]) if node.kind() == "aten::str" else args[0].format(*args[1:])


@rule("prim::RaiseException")
def _raise(lx: Any, a: dict[str, Any], node: Any) -> Any:
    raise unsupported(node, "an exception raised on every path")


@rule("prim::unchecked_cast", "aten::detach", "aten::contiguous", "aten::clone", "aten::dropout",
      "aten::feature_dropout", "aten::alpha_dropout", "aten::lift_fresh")  # fmt: skip
def _identity(lx: Any, a: dict[str, Any], node: Any) -> Any:
    if node.kind().endswith("dropout") and a.get("train"):
        raise Decline("dropout in training mode")
    return a["_0"]


@rule("aten::__is__", "aten::__isnot__")
def _is(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x, y = a["_0"], a["_1"]
    if x is not None and y is not None and not (both_static(x, y)):
        raise Decline("identity of computed values")
    same = x is y or (x is None and y is None)
    return same if node.kind() == "aten::__is__" else not same


@rule("aten::__contains__")
def _contains(lx: Any, a: dict[str, Any], node: Any) -> Any:
    if not both_static(a["_0"], a["_1"]):
        raise Decline("computed membership")
    return a["_1"] in a["_0"]


@rule("aten::Int", "aten::Float", "aten::Bool", "aten::ScalarImplicit", "prim::NumToTensor")
def _scalar_cast(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = a["_0"]
    kind = node.kind()
    to = {"aten::Int": I64, "aten::Float": D, "aten::Bool": B}.get(kind)
    if not is_tensor_like(x):
        if kind == "prim::NumToTensor":
            return lx.tensor(x)
        return {I64: int, D: float, B: bool}[to](x) if to is not None else x
    x = lx.tensor(x)
    if kind in ("aten::Int", "aten::Float", "aten::Bool") and x.type is not None and x.type.rank:
        x = lx.emit("Reshape", [x, lx.constant(np.zeros(0, np.int64))], rank=0)
    return x if to is None else lx.tensor(x, to)


def _python(kind: str) -> Any:
    return {
        "aten::add": operator.add, "aten::sub": operator.sub, "aten::mul": operator.mul,
        "aten::floordiv": operator.floordiv, "aten::floor_divide": operator.floordiv,
        "aten::remainder": operator.mod,
        "aten::eq": operator.eq, "aten::ne": operator.ne, "aten::lt": operator.lt,
        "aten::le": operator.le, "aten::gt": operator.gt, "aten::ge": operator.ge,
        "aten::__and__": operator.and_, "aten::__or__": operator.or_,
        "prim::min": min, "prim::max": max,
    }[kind]  # fmt: skip


_ONNX = {"aten::add": "Add", "aten::sub": "Sub", "aten::mul": "Mul",
         "aten::eq": "Equal", "aten::lt": "Less", "aten::le": "LessOrEqual",
         "aten::gt": "Greater", "aten::ge": "GreaterOrEqual", "aten::__and__": "And",
         "aten::logical_and": "And", "aten::bitwise_and": "And", "aten::__or__": "Or",
         "aten::logical_or": "Or", "aten::bitwise_or": "Or", "prim::min": "Min",
         "prim::max": "Max", "aten::maximum": "Max", "aten::minimum": "Min"}  # fmt: skip
_COMPARE = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or"}


@rule(*_ONNX, "aten::ne", "aten::floordiv", "aten::floor_divide", "aten::remainder")
def _arith(lx: Any, a: dict[str, Any], node: Any) -> Any:
    kind = node.kind()
    x, y = a["_0"], a["_1"]
    alpha = a.get("alpha", 1)
    if isinstance(alpha, Value):
        raise Decline("computed alpha")
    if both_static(x, y) and kind in ("aten::add", "aten::sub") and not isinstance(
            x, list | tuple):  # fmt: skip
        return _python(kind)(x, y * alpha)
    if both_static(x, y) and not isinstance(x, list | tuple):
        return _python(kind)(x, y)
    if isinstance(x, list | tuple):
        raise Decline("list arithmetic")
    if alpha != 1:
        y = binary(lx, "Mul", y, alpha)
    if kind == "aten::ne":
        return lx.emit("Not", [binary(lx, "Equal", x, y, B)], dtype=B)
    if kind in ("aten::floordiv", "aten::floor_divide", "aten::remainder"):
        q = floor_div(lx, x, y)
        if kind != "aten::remainder":
            return q
        return binary(lx, "Sub", x, binary(lx, "Mul", q, y))
    op = _ONNX[kind]
    return binary(lx, op, x, y, B if op in _COMPARE else None)


def floor_div(lx: Any, x: Any, y: Any) -> Value:
    """``x // y`` with Python's rounding (ONNX Div truncates integers, so they go via double)."""
    kinds = {dtype(lx.tensor(v)) if is_tensor_like(v) else type(v) for v in (x, y)}
    if kinds & {F, 10, D, 16, float}:
        return lx.emit("Floor", [binary(lx, "Div", x, y)])
    xd = lx.tensor(x, D) if is_tensor_like(x) else float(x)
    yd = lx.tensor(y, D) if is_tensor_like(y) else float(y)
    return lx.tensor(lx.emit("Floor", [binary(lx, "Div", xd, yd)]), I64)


@rule("aten::div", "aten::true_divide")
def _div(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x, y, mode = a["_0"], a["_1"], a.get("rounding_mode")
    if both_static(x, y):
        if mode == "floor":
            return x // y if isinstance(x, int) and isinstance(y, int) else math.floor(x / y)
        return x / y if mode is None else math.trunc(x / y)
    if mode == "floor":
        return floor_div(lx, x, y)
    floats = (1, 10, 11, 16)
    xs = lx.tensor(x) if is_tensor_like(x) else x
    ys = lx.tensor(y) if is_tensor_like(y) else y
    if mode is None:  # true division: integers meet at float
        if isinstance(xs, Value) and dtype(xs) not in floats and not isinstance(ys, float):
            xs = lx.tensor(xs, F)
        if isinstance(ys, Value) and dtype(ys) not in floats and not isinstance(xs, float):
            ys = lx.tensor(ys, F if isinstance(xs, Value) else D)
    q = binary(lx, "Div", xs, ys)
    if mode == "trunc" and dtype(q) in floats:
        sign = lx.emit("Sign", [q])
        return lx.emit("Mul", [sign, lx.emit("Floor", [lx.emit("Abs", [q])])])
    return q


@rule("aten::rsub")
def _rsub(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x, y, alpha = a["self"], a["other"], a.get("alpha", 1)
    if alpha != 1:
        x = binary(lx, "Mul", x, alpha)
    return binary(lx, "Sub", y, x)


@rule("aten::__not__", "aten::logical_not", "aten::bitwise_not")
def _not(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = a["_0"]
    if not is_tensor_like(x):
        return not x
    return lx.emit("Not", [lx.tensor(x, B)], dtype=B)


@rule("aten::to", "aten::type_as")
def _to(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    if node.kind() == "aten::type_as":
        target = dtype(lx.tensor(a["other"]))
    elif "other" in a and is_tensor_like(a["other"]):
        target = dtype(lx.tensor(a["other"]))
    else:
        target = dtype_from_torch(a.get("dtype"))
    if target is None or target == dtype(x):
        return x
    return lx.emit("Cast", [x], to=target, dtype=target)
