"""Conversions between ONNX and torch that every lowering shares: arrays (``to_torch`` /
``to_numpy``), the carrier dtypes of element types torch lacks, Python names for ONNX names and
the value of a Constant node; and ``Unsupported``, which a conversion or a lowering raises for
what the torch backend cannot express.

The bottom of the torch backend: it imports nothing else of it.
"""

from __future__ import annotations

import keyword
import re

import numpy as np
import torch
from onnx import TensorProto

from neffkit.errors import BackendError
from neffkit.ir.core import Node
from neffkit.ir.tensor import Tensor, np_dtype


class Unsupported(BackendError):
    """The lowering does not handle this node (an op, attribute value or dtype)."""


_IDENT = re.compile(r"\W")


def py_name(hint: str, fallback: str = "v") -> str:
    """A valid Python identifier derived from an ONNX name."""
    name = _IDENT.sub("_", hint or fallback).strip("_") or fallback
    if name[0].isdigit():
        name = f"{fallback}_{name}"
    if keyword.iskeyword(name) or name in ("self", "torch", "typing"):
        name = f"{name}_"
    return name


def to_torch(arr: np.ndarray, *, copy: bool = True) -> torch.Tensor:
    """A torch tensor with the same dtype and values as a numpy array (bfloat16 included).

    ``copy=False``: share a writable, contiguous array's memory instead of copying it (the
    caller gives the array up).

    int4 / uint4 / int2 / uint2 / float4e2m1 / float8e8m0 arrays (ml_dtypes) come back in their
    carrier dtype (see ``CARRIERS``): same values, a wider torch dtype.
    """
    dt = arr.dtype
    if dt.kind in ("U", "S", "O"):
        raise Unsupported("string tensors are not supported by the torch backend")
    name = dt.name
    carrier = _CARRIER_BY_NAME.get(name)
    if carrier is not None:
        return torch.from_numpy(np.asarray(arr).astype(_NP_CARRIER[carrier]))
    if name == "bfloat16":
        bits = np.ascontiguousarray(arr).view(np.uint16).reshape(arr.shape)
        return torch.from_numpy(bits.copy()).view(torch.bfloat16)
    special = _ML_DTYPES.get(name)
    if special is not None:
        bits = np.ascontiguousarray(arr).view(np.uint8).reshape(arr.shape)
        return torch.from_numpy(bits.copy()).view(special)
    if dt.kind == "V":
        raise Unsupported(f"dtype {name} has no torch equivalent")
    if not copy and arr.flags.writeable and arr.flags.c_contiguous:
        return torch.from_numpy(arr)
    return torch.from_numpy(np.array(arr, copy=True))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The inverse of :func:`to_torch` (moves to the CPU); a carrier stays in its carrier dtype
    (only the graph knows the ONNX type it holds: see :func:`from_carrier`)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    for name, tdt in _ML_DTYPES.items():
        if t.dtype == tdt:
            import ml_dtypes

            return t.view(torch.uint8).numpy().view(getattr(ml_dtypes, name))
    return t.numpy()


_ML_DTYPES = {
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e4m3fnuz": torch.float8_e4m3fnuz,
    "float8_e5m2": torch.float8_e5m2,
    "float8_e5m2fnuz": torch.float8_e5m2fnuz,
}

# -- carriers: ONNX element types torch has no dtype for ----------------------------------------

# Inside a module a value of these types is held in a torch dtype that represents each of its
# values exactly; the ops that create such values (Cast, QuantizeLinear, ...) apply the ONNX
# rounding and range, and ``run()`` turns graph outputs back into ml_dtypes arrays.
CARRIERS: dict[int, torch.dtype] = {
    TensorProto.INT4: torch.int8,
    TensorProto.UINT4: torch.uint8,
    TensorProto.INT2: torch.int8,
    TensorProto.UINT2: torch.uint8,
    TensorProto.FLOAT4E2M1: torch.float32,
    TensorProto.FLOAT8E8M0: torch.float32,
}
# Bit width and signedness of the sub-byte integer types.
SUBBYTE_INTS: dict[int, tuple[int, bool]] = {
    TensorProto.INT4: (4, True),
    TensorProto.UINT4: (4, False),
    TensorProto.INT2: (2, True),
    TensorProto.UINT2: (2, False),
}
_CARRIER_BY_NAME = {
    "int4": torch.int8,
    "uint4": torch.uint8,
    "int2": torch.int8,
    "uint2": torch.uint8,
    "float4_e2m1fn": torch.float32,
    "float8_e8m0fnu": torch.float32,
}
_NP_CARRIER = {torch.int8: np.int8, torch.uint8: np.uint8, torch.float32: np.float32}


def carrier_dtype(elem_type: int | None) -> torch.dtype | None:
    """The torch dtype holding values of ONNX ``elem_type`` when torch has none, else None."""
    return CARRIERS.get(elem_type) if elem_type is not None else None


def from_carrier(arr: np.ndarray, elem_type: int | None) -> np.ndarray:
    """``arr`` as an ml_dtypes array of ONNX ``elem_type`` when it holds a carrier of that type
    (int8 for int4, ...); any other array is returned as is."""
    carrier = carrier_dtype(elem_type)
    if carrier is None or arr.dtype != _NP_CARRIER[carrier]:
        return arr
    assert elem_type is not None
    return arr.astype(np_dtype(elem_type))


def constant_attr_value(node: Node) -> np.ndarray:
    """The value of a Constant node, whichever of its attributes carries it."""
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        a = node.attributes.get(key)
        if a is None:
            continue
        v = a.value
        if isinstance(v, Tensor):
            return v.numpy()
        if key == "value_float":
            return np.array(v, dtype=np.float32)
        if key == "value_int":
            return np.array(v, dtype=np.int64)
        if key == "value_floats":
            return np.array(v, dtype=np.float32)
        return np.array(v, dtype=np.int64)
    raise Unsupported("Constant with a string or sparse value")
