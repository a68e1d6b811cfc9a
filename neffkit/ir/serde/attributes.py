"""Attributes between AttributeProto and Python values (graph-valued ones excepted).

A loaded attribute stays a proto until read (:class:`LazyAttr`); one built from a Python value
is encoded by :func:`encode_attribute`. Tensors come back as lazy
:class:`~neffkit.ir.tensor.Tensor` objects.
"""

from __future__ import annotations

from typing import Any, cast

import onnx
from onnx import AttributeProto, TensorProto

from neffkit.errors import BackendError, FrontendError
from neffkit.ir.core import Attr
from neffkit.ir.tensor import Tensor

_PLAIN = {
    AttributeProto.FLOAT: lambda a: a.f,
    AttributeProto.INT: lambda a: a.i,
    AttributeProto.STRING: lambda a: a.s.decode("utf-8", "surrogateescape"),
    AttributeProto.FLOATS: lambda a: list(a.floats),
    AttributeProto.INTS: lambda a: list(a.ints),
    AttributeProto.STRINGS: lambda a: [s.decode("utf-8", "surrogateescape") for s in a.strings],
    # External data has no folder here (a file's attributes are decoded when it is loaded):
    # from_proto and _inline_sparse refuse it rather than resolve it against the cwd.
    AttributeProto.TENSOR: lambda a: Tensor.from_proto(a.t),
    AttributeProto.TENSORS: lambda a: [Tensor.from_proto(t) for t in a.tensors],
    AttributeProto.SPARSE_TENSOR: lambda a: _inline_sparse(a.sparse_tensor),
    AttributeProto.SPARSE_TENSORS: lambda a: [_inline_sparse(s) for s in a.sparse_tensors],
    AttributeProto.TYPE_PROTO: lambda a: a.tp,
    AttributeProto.TYPE_PROTOS: lambda a: list(a.type_protos),
}

#: Attribute types whose value is one graph or a list of graphs (decoded by the graph codec).
GRAPH_TYPES = frozenset((AttributeProto.GRAPH, AttributeProto.GRAPHS))


def _inline_sparse(sp: onnx.SparseTensorProto) -> onnx.SparseTensorProto:
    if TensorProto.EXTERNAL in (sp.values.data_location, sp.indices.data_location):
        raise FrontendError(
            f"sparse tensor '{sp.values.name}' stores its data externally but the model was not "
            "loaded from a file, so there is no folder to resolve it against"
        )
    return sp


def decode_attribute(ap: AttributeProto) -> Any:
    """The Python value of a non-graph attribute (strings as str, tensors as Tensor)."""
    if ap.ref_attr_name and ap.type == AttributeProto.UNDEFINED:
        return None
    fn = _PLAIN.get(ap.type)
    if fn is None:
        raise FrontendError(f"attribute '{ap.name}' has unsupported type {ap.type}")
    return fn(ap)


_UNSET: Any = object()


class LazyAttr(Attr):
    """An attribute read from a file: its value is decoded from the proto on first read."""

    __slots__ = ()

    def __init__(self, proto: AttributeProto) -> None:
        self.name = proto.name
        self.type = proto.type
        self._value = _UNSET
        self._proto = proto
        self.ref = proto.ref_attr_name

    @property
    def value(self) -> Any:
        """The decoded value (see ``Attr.value``), decoded once."""
        v = self._value
        if v is _UNSET:
            v = self._value = decode_attribute(cast(AttributeProto, self._proto))
        return v


def encode_attribute(a: Attr, ap: AttributeProto) -> None:
    """Writes a non-graph attribute into the empty ``ap`` (its own proto when it has one).

    Raises:
        BackendError: an attribute type ONNX does not define.
    """
    if a.proto is not None:
        ap.CopyFrom(a.proto)
        return
    ap.name = a.name
    ap.type = a.type  # type: ignore[assignment]  # an int of AttributeProto.AttributeType
    v = a.value
    if a.ref:
        ap.ref_attr_name = a.ref
        if v is None:
            return
    t = a.type
    if t == AttributeProto.FLOAT:
        ap.f = float(v)
    elif t == AttributeProto.INT:
        ap.i = int(v)
    elif t == AttributeProto.STRING:
        ap.s = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
    elif t == AttributeProto.FLOATS:
        ap.floats.extend(float(x) for x in v)
    elif t == AttributeProto.INTS:
        ap.ints.extend(int(x) for x in v)
    elif t == AttributeProto.STRINGS:
        ap.strings.extend(
            x.encode("utf-8", "surrogateescape") if isinstance(x, str) else bytes(x) for x in v
        )
    elif t == AttributeProto.TENSOR:
        ap.t.CopyFrom(v.to_proto())
    elif t == AttributeProto.TENSORS:
        for x in v:
            ap.tensors.add().CopyFrom(x.to_proto())
    elif t == AttributeProto.SPARSE_TENSOR:
        ap.sparse_tensor.CopyFrom(v)
    elif t == AttributeProto.SPARSE_TENSORS:
        ap.sparse_tensors.extend(v)
    elif t == AttributeProto.TYPE_PROTO:
        ap.tp.CopyFrom(v)
    elif t == AttributeProto.TYPE_PROTOS:
        ap.type_protos.extend(v)
    else:
        raise BackendError(f"attribute '{a.name}' has unsupported type {t}")
