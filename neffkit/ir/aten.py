"""The ``aten``-domain node contract, shared by the TorchScript frontend (which emits the nodes)
and the torch backend (which runs them), so neither imports the other.

An ``aten`` node is one TorchScript operator call with no ONNX form, kept as it is:

- ``domain`` is ``"aten"``, ``op_type`` the operator name without namespace or overload
  (``aten::special_i0e`` -> ``special_i0e``);
- attribute ``schema`` holds the full overload schema
  (``aten::xlogy.Scalar_Other(Tensor self, Scalar other) -> Tensor``);
- the non-tensor arguments known when lifting are attributes named as in the schema (``dim``,
  ``eps``; a bool may come back from ONNX as an int, so readers coerce by the schema type);
- attribute ``tensor_args`` names, for each node input in order, the schema argument it is:
  ``name`` for a whole argument, ``name.i`` for element ``i`` of a tensor list. An argument
  computed at run time (an int from a size, say) is an input too, as a 0-d (or, for ``int[]``,
  1-D int64) tensor;
- an omitted optional argument is neither an input nor an attribute.

Passes treat these nodes as opaque (no folding, CSE, deduplication or shape rules) and keep the
output types the frontend recorded from the TorchScript types.
"""

from __future__ import annotations

from neffkit.errors import VerificationError
from neffkit.ir.core import Node

__all__ = ["DOMAIN", "SCHEMA", "TENSOR_ARGS", "is_aten", "split_tensor_arg", "tensor_args"]

#: the domain of TorchScript operators kept as they are
DOMAIN = "aten"
#: the attribute holding the full overload schema
SCHEMA = "schema"
#: the attribute naming which schema argument each input is
TENSOR_ARGS = "tensor_args"


def is_aten(node: Node) -> bool:
    """Whether ``node`` is a TorchScript operator kept as it is (domain ``aten``)."""
    return node.domain == DOMAIN


def split_tensor_arg(entry: str) -> tuple[str, int | None]:
    """``"name"`` -> ``("name", None)``; ``"name.3"`` -> ``("name", 3)`` (a list element)."""
    name, dot, index = entry.rpartition(".")
    if dot and index.isdigit():
        return name, int(index)
    return entry, None


def tensor_args(node: Node) -> list[str]:
    """The ``tensor_args`` entries of an ``aten`` node, one per input (strings, decoded).

    Raises:
        VerificationError: the entries do not match the inputs one to one.
    """
    raw = node.attr(TENSOR_ARGS, [])
    out = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
    if len(out) != len(node.inputs):
        raise VerificationError(
            f"{len(node.inputs)} inputs but {len(out)} {TENSOR_ARGS} entries",
            node,
        )
    return out
