"""Lowering of ``aten``-domain nodes: a TorchScript operator with no ONNX form, run as it is.

The node (contract in ``neffkit.ir.aten``) holds the operator's full overload schema, its
non-tensor arguments as attributes and ``tensor_args`` naming which input is which argument.
The lowering rebuilds the argument list in schema order (positional arguments by position, the
keyword-only ones by name) and calls the operator packet ``torch.ops.aten.<op>``: TorchScript
cannot name an overload (``torch.ops.aten.xlogy.Scalar_Other`` does not script), and the packet
picks the recorded one from the argument types, so the lowered module scripts and traces. The
recorded overload is checked to exist in this torch first.

A run-time int, float or bool argument arrives as a 0-d tensor (``int[]`` as a 1-D int64
tensor) and is read back into a Python number; sizes known while lowering stay Python ints.
"""

from __future__ import annotations

from typing import Any, List  # noqa: UP035 - TorchScript reads typing.List annotations

import torch
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers_domain
from neffkit.errors import VerificationError
from neffkit.ir import aten as contract
from neffkit.ir.core import Node


def aten_int(x: Tensor) -> int:
    """A 0-d tensor holding a run-time int argument, as a Python int."""
    return int(x.item())


def aten_float(x: Tensor) -> float:
    """A 0-d tensor holding a run-time float argument, as a Python float."""
    return float(x.item())


def aten_bool(x: Tensor) -> bool:
    """A 0-d tensor holding a run-time bool argument, as a Python bool."""
    return bool(x.item())


def aten_ints(x: Tensor) -> List[int]:  # noqa: UP006 - TorchScript reads typing.List
    """A 1-D int64 tensor holding a run-time ``int[]`` argument, as a list of ints."""
    flat = x.reshape(-1)
    out: List[int] = []  # noqa: UP006
    for i in range(flat.numel()):
        out.append(int(flat[i].item()))
    return out


#: aten ops that are never run for a model: file, storage and memory-management ops (the
#: in-place and out= forms are refused by their schemas)
_REFUSED = frozenset(
    {"from_file", "_pin_memory", "set", "resize", "resize_as", "_resize_output", "record_stream",
     "_copy_from", "_copy_from_and_resize"}
)  # fmt: skip


@lowers_domain(contract.DOMAIN)
def aten_op(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # aten::op.overload(a, b, *, k) -> torch.ops.aten.op(a, b, k=k)
    schema_text = node.attr(contract.SCHEMA)
    if schema_text is None:
        raise Unsupported(f"aten node without its '{contract.SCHEMA}' attribute")
    if isinstance(schema_text, bytes):
        schema_text = schema_text.decode()
    try:
        schema = torch._C.parse_schema(schema_text)
    except RuntimeError as e:
        raise Unsupported(f"unreadable schema '{schema_text}'") from e
    namespace, _, name = schema.name.partition("::")
    if namespace != "aten" or name != node.op_type:
        raise Unsupported(f"the schema is of '{schema.name}', the node is aten::{node.op_type}")
    if schema.is_mutable or name.endswith("_") or name in _REFUSED:
        # a model file is data: an op that writes its arguments or touches files or storage
        # (aten::from_file maps any path) is never run for it
        raise Unsupported(
            f"aten::{name} writes its arguments or reaches outside the graph (files, storage); "
            "neffkit runs only functional aten ops"
        )
    packet = getattr(torch.ops.aten, name, None)
    overload = schema.overload_name or "default"
    if packet is None or overload not in packet.overloads():
        raise Unsupported(f"this torch has no operator {schema.name}.{overload}")
    try:
        given = _inputs_by_argument(node, args)
    except VerificationError as e:
        raise Unsupported(str(e)) from e
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    by_name = False  # after an omitted argument with a default, the rest go by name
    for a in schema.arguments:
        value, present = _argument(ctx, node, a, given)
        if not present:
            if a.has_default_value():
                by_name = True
                continue
            if not isinstance(a.type, torch._C.OptionalType):
                raise Unsupported(f"argument '{a.name}' of {schema.name} is missing")
            value = None
        if a.kwarg_only or by_name:
            keywords[a.name] = value
        else:
            positional.append(value)
    out = ctx.call(packet, *positional, **keywords)
    if len(schema.returns) == 1:
        return out
    return [ctx.getitem(out, i) for i in range(len(node.outputs))]


def _inputs_by_argument(node: Node, args: list[Arg]) -> dict[str, Any]:
    """The node's inputs by schema argument: an fx node, or for a tensor list a dict by index
    (with the input's IR value, for constants known while lowering)."""
    given: dict[str, Any] = {}
    for entry, fx_arg, value in zip(contract.tensor_args(node), args, node.inputs, strict=True):
        name, index = contract.split_tensor_arg(entry)
        if index is None:
            given[name] = (fx_arg, value)
        else:
            given.setdefault(name, {})[index] = fx_arg
    return given


def _argument(ctx: LoweringContext, node: Node, a: Any, given: dict[str, Any]) -> tuple[Any, bool]:
    """The value of schema argument ``a`` and whether the node gives it."""
    kind = _base_type(a.real_type)
    if a.name in given:
        hit = given[a.name]
        if isinstance(hit, dict):  # elements of a tensor list; a hole is an omitted Tensor?
            if max(hit) >= 2 * len(node.inputs) + 8:  # a hostile index, not a real list
                raise Unsupported(f"argument '{a.name}': element {max(hit)} of a list of "
                                  f"{len(hit)} inputs")  # fmt: skip
            return [hit.get(i) for i in range(max(hit) + 1)], True
        fx_arg, value = hit
        return _from_tensor(ctx, value, fx_arg, kind), True
    if a.name in node.attributes:
        return _from_attribute(node.attr(a.name), kind), True
    return None, False


def _base_type(t: Any) -> str:
    """The schema type without ``Optional``: ``int``, ``float``, ``bool``, ``ScalarType``,
    ``List[int]``, ``Tensor``, ...; ``Scalar`` for a number."""
    if isinstance(t, torch._C.OptionalType):
        t = t.getElementType()
    text = str(t)
    return "Scalar" if text == "number" else text


def _from_tensor(ctx: LoweringContext, value: Any, fx_arg: Any, kind: str) -> Any:
    """An input for a non-tensor argument (a run-time number) read back as that number."""
    if kind in ("int", "SymInt", "ScalarType", "List[int]", "List[SymInt]"):
        known = ctx.known_ints(value)
        if known is not None and all(isinstance(e, int) for e in known[0]):
            elements, scalar = known
            return elements[0] if scalar and not kind.startswith("List") else elements
        return ctx.call(aten_ints if kind.startswith("List") else aten_int, fx_arg)
    if kind == "float":
        return ctx.call(aten_float, fx_arg)
    if kind == "bool":
        return ctx.call(aten_bool, fx_arg)
    if kind == "Scalar":
        return ctx.method("item", fx_arg)
    return fx_arg


def _from_attribute(raw: Any, kind: str) -> Any:
    """An attribute read back as the schema's type (ONNX keeps bools as ints, text as bytes)."""
    if isinstance(raw, bytes):
        raw = raw.decode()
    if kind == "bool":
        return bool(raw)
    if kind in ("int", "SymInt"):
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "List[bool]":
        return [bool(x) for x in raw]
    if kind in ("List[int]", "List[SymInt]"):
        return [int(x) for x in raw]
    if kind == "List[float]":
        return [float(x) for x in raw]
    if kind == "ScalarType":
        return _dtype(raw)
    if kind == "Device" and isinstance(raw, str):
        return torch.device(raw)
    return raw


def _dtype(raw: Any) -> Any:
    """A dtype argument recorded as a ScalarType code (as TorchScript encodes it; torch.ops
    take it too) or as the text ``torch.<name>``."""
    if isinstance(raw, int):
        return raw
    found = getattr(torch, str(raw).removeprefix("torch."), None)
    if not isinstance(found, torch.dtype):
        raise Unsupported(f"unknown dtype '{raw}'")
    return found
