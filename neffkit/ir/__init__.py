"""The neffkit IR: Graph / Node / Value with ordered use-lists, constants, types, verifier."""

from neffkit.ir.core import Attr, Graph, ModelMeta, Node, Use, Value
from neffkit.ir.tensor import Tensor, dtype_name, np_dtype, onnx_dtype
from neffkit.ir.types import Dim, OpaqueType, Shape, TensorType, ValueType

__all__ = [
    "Attr",
    "Dim",
    "Graph",
    "ModelMeta",
    "Node",
    "OpaqueType",
    "Shape",
    "Tensor",
    "TensorType",
    "Use",
    "Value",
    "ValueType",
    "dtype_name",
    "np_dtype",
    "onnx_dtype",
]
