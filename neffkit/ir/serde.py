"""The ONNX codec of the IR: attribute protos to Python values.

Attributes stay protos until read (``Attr.value``); this is where they are decoded. Tensors
come back as lazy :class:`~neffkit.ir.tensor.Tensor` objects. Only the standard library,
onnx and the IR's own tensor module are imported here, so every layer can use it.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import AttributeProto, TensorProto

from neffkit.errors import FrontendError
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
