"""Element types while lowering: ONNX element type -> torch dtype, the element type of a value
(declared, or followed through its producer when the model does not record it), and the uint64
order-preserving keys (torch stores uint16/uint32/uint64 but has few kernels for them).
"""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto as TP
from torch import Tensor

from neffkit.backends.torch.convert import constant_attr_value
from neffkit.backends.torch.registry import Unsupported
from neffkit.ir.core import Node, Value

TORCH_DTYPES: dict[int, torch.dtype] = {
    TP.FLOAT: torch.float32,
    TP.DOUBLE: torch.float64,
    TP.FLOAT16: torch.float16,
    TP.BFLOAT16: torch.bfloat16,
    TP.INT8: torch.int8,
    TP.INT16: torch.int16,
    TP.INT32: torch.int32,
    TP.INT64: torch.int64,
    TP.UINT8: torch.uint8,
    TP.UINT16: torch.uint16,
    TP.UINT32: torch.uint32,
    TP.UINT64: torch.uint64,
    TP.BOOL: torch.bool,
    TP.COMPLEX64: torch.complex64,
    TP.COMPLEX128: torch.complex128,
    TP.FLOAT8E4M3FN: torch.float8_e4m3fn,
    TP.FLOAT8E4M3FNUZ: torch.float8_e4m3fnuz,
    TP.FLOAT8E5M2: torch.float8_e5m2,
    TP.FLOAT8E5M2FNUZ: torch.float8_e5m2fnuz,
}

FLOAT_TYPES = {TP.FLOAT, TP.DOUBLE, TP.FLOAT16, TP.BFLOAT16}
INT_TYPES = {TP.INT8, TP.INT16, TP.INT32, TP.INT64, TP.UINT8, TP.UINT16, TP.UINT32, TP.UINT64}

# Unsigned types torch stores but has few kernels for: computed through int64.
WIDE_UNSIGNED = {TP.UINT16, TP.UINT32, TP.UINT64}


def torch_dtype(elem_type: int) -> torch.dtype:
    """The torch dtype of an ONNX element type; ``Unsupported`` when torch has none."""
    dt = TORCH_DTYPES.get(elem_type)
    if dt is None:
        from neffkit.ir.tensor import dtype_name

        raise Unsupported(f"torch has no dtype for ONNX {dtype_name(elem_type)}")
    return dt


# Ops whose output has the element type of the input at that index.
_SAME_AS_INPUT = dict.fromkeys(
    "Abs Acos Acosh Add Asin Asinh Atan Atanh BitShift BitwiseAnd BitwiseNot BitwiseOr "
    "BitwiseXor Ceil Celu Clip Compress Concat Cos Cosh CumProd CumSum DepthToSpace Det Div "
    "Dropout Elu Erf Exp Expand Flatten Floor Gather GatherElements GatherND Gelu Gemm "
    "HardSigmoid HardSwish Hardmax Identity LeakyRelu Log LogSoftmax MatMul Max Mean Min Mish "
    "Mod Mul Neg Pad PRelu Pow Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp "
    "ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Round "
    "Selu Shrink Sigmoid Sign Sin Sinh Slice Softmax Softplus Softsign SpaceToDepth Sqrt "
    "Squeeze Sub Sum Swish Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unique "
    "Unsqueeze".split(),
    0,
) | {"Where": 1, "Range": 0}

_BOOL_OUT = set("Equal Less LessOrEqual Greater GreaterOrEqual Not And Or Xor IsNaN IsInf".split())
_INT64_OUT = set("Shape Size ArgMax ArgMin NonZero".split())


def value_dtype(value: Value | None, depth: int = 32) -> int | None:
    """The ONNX element type of a value: declared, or followed through its producer when the
    model does not record it (most intermediate values), else None."""
    if value is None:
        return None
    if value.dtype:
        return value.dtype
    node = value.producer
    if node is None or node.domain != "" or depth <= 0:
        return None
    op = node.op_type
    if value.index == 0 and op in _BOOL_OUT:
        return TP.BOOL
    if (value.index == 0 and op in _INT64_OUT) or (op == "TopK" and value.index == 1):
        return TP.INT64
    if op == "Cast":
        return node.attr("to")
    if op == "CastLike":
        return value_dtype(node.inputs[1], depth - 1)
    if op == "Constant":
        try:
            return onnx_dtype_of(constant_attr_value(node))
        except Unsupported:
            return None
    i = _SAME_AS_INPUT.get(op)
    if i is not None and value.index == 0 and i < len(node.inputs):
        return value_dtype(node.inputs[i], depth - 1)
    return None


def onnx_dtype_of(arr: np.ndarray) -> int:
    """The ONNX element type of a numpy array."""
    from neffkit.ir.tensor import onnx_dtype

    return onnx_dtype(arr.dtype)


def in_dtype(node: Node, i: int = 0) -> int | None:
    """The element type of input ``i`` of ``node`` (None when unknown or absent)."""
    return value_dtype(node.inputs[i]) if i < len(node.inputs) else None


def attr_float(node: Node, name: str, default: float) -> float:
    """A float attribute, printed as its shortest float32 spelling (0.2, not 0.2000000029...)."""
    return float(str(np.float32(node.attr(name, default))))


def uint64_key(x: Tensor) -> Tensor:
    """uint64 bits as int64 keys that order like the unsigned values (sign bit flipped)."""
    return torch.bitwise_xor(x.to(torch.int64), -9223372036854775807 - 1)


def uint64_from_key(key: Tensor) -> Tensor:
    """The inverse of :func:`uint64_key`."""
    return torch.bitwise_xor(key, -9223372036854775807 - 1).to(torch.uint64)
