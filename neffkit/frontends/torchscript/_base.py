"""What the TorchScript lifter's parts share: the rule registry, locations and errors, dtypes,
and the small helpers rules use to read arguments and build elementwise ops.

Rules take the lifter as ``lx`` (``neffkit.frontends.torchscript.lifter.Lifter``: ``emit``,
``tensor``, ``ints``, ``constant``, ``env``) and the node's arguments by schema name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto

from neffkit.errors import FrontendError
from neffkit.ir import Value, onnx_dtype

Rule = Callable[[Any, dict[str, Any], Any], Any]
RULES: dict[str, Rule] = {}
INT64_MAX = 2**63 - 1
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


class Decline(Exception):  # noqa: N818 - a signal between rules and the driver, not an error
    """A rule does not cover this use of its op: the node stays an ``aten`` node."""


def rule(*names: str) -> Callable[[Rule], Rule]:
    """Registers a rule for the given ``aten::``/``prim::`` kinds."""

    def register(fn: Rule) -> Rule:
        for name in names:
            RULES[name] = fn
        return fn

    return register


_TORCH_DIR = os.sep + "torch" + os.sep


def raise_branch(block: Any) -> bool:
    """True when ``block``, or one that holds it, raises (``prim::RaiseException``)."""
    while block is not None:
        if any(n.kind() == "prim::RaiseException" for n in block.nodes()):
            return True
        owner = block.owningNode()
        block = owner.owningBlock() if owner is not None else None
    return False


def only_messages(value: Any) -> bool:
    """True when a string only feeds warnings and exception messages (dropped when lifted)."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        for use in v.uses():
            kind = use.user.kind()
            if kind in ("aten::format", "aten::str", "aten::add") and use.user not in seen:
                seen.add(use.user)
                stack.append(use.user.output())
            elif kind not in ("aten::warn", "prim::RaiseException"):
                return False
    return True


def location(node: Any) -> str:
    """The node's source location: the first frame outside torch's own code, else the first."""
    text = node.sourceRange() or ""
    found = re.findall(r'File "([^"]+)", line (\d+)', text)
    found += re.findall(r"^\s*(\S+\.py)\((\d+)\)", text, re.M)
    found += re.findall(r"(\S+\.py):(\d+):\d+", text)
    if not found:
        return "<unknown location>"
    outside = [f for f in found if _TORCH_DIR not in f[0]]
    path, line = (outside or found)[0]
    return f"{path}:{line}"


def unsupported(node: Any, what: str) -> FrontendError:
    """The one error for a construct that cannot be lifted: op, what it is, where (a node
    freezing left without a location, a constant say, is placed by its readers or inputs)."""
    where = location(node)
    if where == "<unknown location>":
        near = [u.user for o in node.outputs() for u in o.uses()]
        near += [v.node() for v in node.inputs()]
        where = next((location(n) for n in near if location(n) != where), where)
    return FrontendError(f"{node.kind()} ({what}) at {where}: not liftable to neffkit's IR")


def first_line(e: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def torch_onnx_dtype(dtype: Any) -> int:
    """The ONNX element type of a torch dtype."""
    import torch  # noqa: PLC0415

    if dtype == torch.bfloat16:
        return TensorProto.BFLOAT16
    return onnx_dtype(torch.empty((), dtype=dtype).numpy().dtype)


def scalar_type(t: Any) -> int:
    """The ONNX element type of a TorchScript TensorType whose dtype is known."""
    return torch_onnx_dtype(t.dtype())


def torch_to_numpy(t: Any) -> np.ndarray:
    """A detached CPU copy of a tensor as numpy (refusing what ONNX cannot hold)."""
    import torch  # noqa: PLC0415

    if t.is_complex() or t.is_quantized or t.is_sparse:
        raise FrontendError(f"a tensor constant of dtype {t.dtype} is not liftable")
    if t.dtype == torch.bfloat16:
        raise FrontendError("bfloat16 tensor constants are not lifted yet")
    return t.detach().cpu().contiguous().numpy().copy()


# -- helpers ---------------------------------------------------------------------------------------


def static(lx: Any, v: Any, what: str = "argument") -> Any:
    """``v`` must be known at lift time (else the op stays ``aten``)."""
    if isinstance(v, Value) or (
        isinstance(v, list | tuple) and any(isinstance(x, Value) for x in v)
    ):
        raise Decline(f"{what} is computed")
    return v


def rank(v: Value) -> int:
    """The rank of an IR value (Decline when unknown)."""
    r = v.type.rank if v.type is not None else None
    if r is None:
        raise Decline("rank unknown")
    return r


def dtype(v: Any) -> int | None:
    """The ONNX element type of an IR value, or None."""
    return v.type.dtype if isinstance(v, Value) and v.type is not None else None


def is_tensor_like(v: Any) -> bool:
    """An IR value or a module tensor constant."""
    import torch  # noqa: PLC0415

    return isinstance(v, Value | torch.Tensor)


def scalar_for(lx: Any, x: Any, like: Value) -> Value:
    """``x`` (a Python number or 0-d value) as a tensor of ``like``'s dtype."""
    return lx.tensor(x, dtype(like) or F)


def binary(lx: Any, op: str, a: Any, b: Any, out_dtype: int | None = None) -> Value:
    """An elementwise op with torch's scalar promotion (a Python scalar takes the tensor's
    dtype; two integer-vs-float tensors meet at float)."""
    if is_tensor_like(a) and not is_tensor_like(b):
        a = _float_if(lx, lx.tensor(a), b)
        b = scalar_for(lx, b, a)
    elif is_tensor_like(b) and not is_tensor_like(a):
        b = _float_if(lx, lx.tensor(b), a)
        a = scalar_for(lx, a, b)
    else:
        a, b = lx.tensor(a), lx.tensor(b)
        da, db = dtype(a), dtype(b)
        if da != db and da is not None and db is not None:
            floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
            if a.type.rank == 0 and b.type.rank != 0 and (da in floats) == (db in floats):
                a = lx.tensor(a, db)
            elif b.type.rank == 0 and a.type.rank != 0 and (da in floats) == (db in floats):
                b = lx.tensor(b, da)
            elif da in floats and db not in floats:
                b = lx.tensor(b, da)
            elif db in floats and da not in floats:
                a = lx.tensor(a, db)
            else:
                b = lx.tensor(b, da)
    ra, rb = a.type.rank if a.type else None, b.type.rank if b.type else None
    r = None if ra is None or rb is None else max(ra, rb)
    return lx.emit(op, [a, b], dtype=out_dtype, rank=r)


def _float_if(lx: Any, t: Value, scalar: Any) -> Value:
    """An integer tensor meeting a Python float becomes floating (float32; double when 0-d,
    i.e. a TorchScript number), as torch promotes."""
    if isinstance(scalar, float) and dtype(t) not in _FLOATS:
        return lx.tensor(t, TensorProto.DOUBLE if t.type is not None and t.type.rank == 0 else F)
    return t


_FLOATS = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def both_static(*vals: Any) -> bool:
    """True when no value is computed (Python arithmetic applies)."""
    return not any(is_tensor_like(v) for v in vals)


def norm_dim(d: int, r: int) -> int:
    """A dim counted from the front."""
    return d + r if d < 0 else d


def dtype_from_torch(code: Any) -> int | None:
    """An ONNX element type from TorchScript's ScalarType int (or a torch.dtype), None if None."""
    import torch  # noqa: PLC0415

    if code is None:
        return None
    if isinstance(code, int):
        code = SCALAR_TYPES[code] if 0 <= code < len(SCALAR_TYPES) else f"ScalarType {code}"
    name = str(code).replace("torch.", "")
    if name not in _LIFTABLE:  # the lifter turns this into an error naming op and line
        raise ValueError(f"dtype {name} is not supported")
    return torch_onnx_dtype(getattr(torch, name))


#: TorchScript's ScalarType codes, in order (c10/core/ScalarType.h).
SCALAR_TYPES = ["uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
                "complex32", "complex64", "complex128", "bool", "qint8", "quint8", "qint32",
                "bfloat16"]  # fmt: skip
_LIFTABLE = frozenset(SCALAR_TYPES[:8] + ["bool", "bfloat16"])
