"""The ONNX codec of the IR: the one place where protos become IR objects and back.

- ``attributes``: AttributeProto <-> Python values (``decode_attribute``,
  ``encode_attribute``, and ``LazyAttr``, which decodes on first read);
- ``tensors``: TensorProto <-> ``Tensor``, TypeProto <-> ``TensorType`` / ``OpaqueType``,
  sparse tensors made dense, and the checks every decode makes on them;
- ``decode``: ``ModelProto`` -> ``Graph`` (``decode_model``);
- ``encode``: ``Graph`` -> ``ModelProto`` (``to_onnx``).

Only onnx, the standard library and the IR itself are imported here, so every layer above the
IR (frontends, backends, passes) reads and writes ONNX through this package. Reading files is
``neffkit.frontends.onnx``'s job and writing them ``neffkit.backends.onnx``'s.
"""

from neffkit.ir.serde.attributes import GRAPH_TYPES, LazyAttr, decode_attribute, encode_attribute
from neffkit.ir.serde.decode import decode_model
from neffkit.ir.serde.encode import ExternalWriter, to_onnx
from neffkit.ir.serde.tensors import (
    KNOWN_DTYPES,
    check_input_type,
    negative_dims,
    sparse_to_dense,
    tensor_from_proto,
    tensor_to_proto,
    type_from_proto,
    type_to_proto,
)

__all__ = [
    "GRAPH_TYPES",
    "KNOWN_DTYPES",
    "ExternalWriter",
    "LazyAttr",
    "check_input_type",
    "decode_attribute",
    "decode_model",
    "encode_attribute",
    "negative_dims",
    "sparse_to_dense",
    "tensor_from_proto",
    "tensor_to_proto",
    "to_onnx",
    "type_from_proto",
    "type_to_proto",
]
