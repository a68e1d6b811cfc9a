"""Sequence and optional values while lowering: which kind a value is (tensor, sequence,
optional) and the ``forward`` annotation a graph input of that kind gets so the module scripts.
"""

from __future__ import annotations

from typing import List, Optional  # noqa: UP035 - TorchScript reads typing annotations

from torch import Tensor

from neffkit.ir.core import Value
from neffkit.ir.types import OpaqueType, TensorType


def value_kind(v: Value | None) -> str | None:
    """``tensor``, ``sequence``, ``optional_tensor``, ``optional_sequence`` or None (unknown)."""
    if v is None:
        return None
    t = v.type
    if isinstance(t, TensorType):
        return "tensor"
    if not isinstance(t, OpaqueType):
        return None
    return proto_kind(t.proto)


def proto_kind(tp: object) -> str | None:
    kind = tp.WhichOneof("value")  # type: ignore[attr-defined]
    if kind == "tensor_type":
        return "tensor"
    if kind == "sequence_type":
        return "sequence"
    if kind == "optional_type":
        inner = tp.optional_type.elem_type.WhichOneof("value")  # type: ignore[attr-defined]
        return {"tensor_type": "optional_tensor", "sequence_type": "optional_sequence"}.get(inner)
    return None


def input_type_expr(v: Value) -> object | None:
    """The TorchScript type of a graph input that is a sequence or optional (None: a tensor)."""
    return {
        "sequence": List[Tensor],  # noqa: UP006
        "optional_tensor": Optional[Tensor],  # noqa: UP045
        "optional_sequence": Optional[List[Tensor]],  # noqa: UP006, UP045
    }.get(value_kind(v) or "")
