"""Tensors and types between their protos and the IR, with the checks every load makes.

``Tensor.from_proto`` / ``Tensor.to_proto`` and ``type_from_proto`` / ``type_to_proto`` are
defined beside the classes they build (ir/tensor.py, ir/types.py) and gathered here under the
codec's names; sparse tensors are made dense here, their indices and size checked first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from neffkit.errors import FrontendError
from neffkit.ir.tensor import Tensor
from neffkit.ir.types import type_from_proto, type_to_proto

__all__ = [
    "KNOWN_DTYPES",
    "MAX_DENSE_BYTES",
    "check_input_type",
    "negative_dims",
    "sparse_to_dense",
    "tensor_from_proto",
    "tensor_to_proto",
    "type_from_proto",
    "type_to_proto",
]

#: Every element type onnx defines (0, UNDEFINED, excluded).
KNOWN_DTYPES = frozenset(v for v in onnx.TensorProto.DataType.values() if v)


def tensor_from_proto(proto: TensorProto, base_dir: str | None = None) -> Tensor:
    """A lazy Tensor over ``proto``; external data is resolved inside ``base_dir`` only."""
    return Tensor.from_proto(proto, base_dir)


def tensor_to_proto(t: Tensor) -> TensorProto:
    """The TensorProto of ``t`` (its bytes read inline)."""
    return t.to_proto()


def negative_dims(tp: onnx.TensorProto) -> bool:
    """True when a tensor declares a negative dimension."""
    dims = tp.dims
    return bool(dims) and min(dims) < 0


def check_input_type(vi: onnx.ValueInfoProto, source: str) -> None:
    """Refuses a graph input of an unknown element type or with a negative dimension."""
    tp = vi.type
    if tp.WhichOneof("value") != "tensor_type":
        return
    elem = tp.tensor_type.elem_type
    if elem and elem not in KNOWN_DTYPES:
        raise FrontendError(f"{source}: input '{vi.name}' has the unknown element type {elem}")
    if not tp.tensor_type.HasField("shape"):
        return
    for d in tp.tensor_type.shape.dim:
        if d.WhichOneof("value") == "dim_value" and d.dim_value < 0:
            dims = [
                x.dim_value if x.HasField("dim_value") else x.dim_param or "?"
                for x in tp.tensor_type.shape.dim
            ]
            raise FrontendError(
                f"{source}: input '{vi.name}' is declared with a negative dimension in {dims}"
            )


#: Largest dense form (bytes) a sparse tensor may expand to: a corrupt or hostile shape must
#: not make loading allocate without bound.
MAX_DENSE_BYTES = 2**31


def sparse_to_dense(sp: onnx.SparseTensorProto, source: str, *, check_only: bool = False) -> Any:
    """The dense array of a sparse tensor whose values and indices are inline.

    Raises:
        FrontendError: the dims, the indices' shape or range, or the size are invalid.
    """
    name = sp.values.name or "<unnamed>"
    where = f"{source}: sparse tensor '{name}'"
    for part in (sp.values, sp.indices):
        if part.data_location == TensorProto.EXTERNAL:
            raise FrontendError(f"{where} stores data externally but was not loaded from a file")
    dims = tuple(sp.dims)
    if any(d < 0 for d in dims):
        raise FrontendError(f"{where} has a negative dimension in {list(dims)}")
    values = Tensor.from_proto(sp.values).numpy().reshape(-1)
    total = 1
    for d in dims:
        total *= d
    if total * values.dtype.itemsize > MAX_DENSE_BYTES:
        raise FrontendError(
            f"{where}: dense shape {list(dims)} needs {total * values.dtype.itemsize} bytes, "
            f"more than the {MAX_DENSE_BYTES} neffkit expands a sparse tensor to"
        )
    idx = Tensor.from_proto(sp.indices).numpy()
    nnz = values.size
    if idx.dtype.kind not in "iu":
        raise FrontendError(f"{where}: indices have type {idx.dtype}, expected int64")
    if idx.ndim == 1 and idx.shape[0] == nnz:
        flat = idx.astype(np.int64)
        bad: Any = (flat < 0) | (flat >= total)
    elif idx.ndim == 2 and idx.shape == (nnz, len(dims)):
        bounds = np.asarray(dims, dtype=np.int64)
        bad = ((idx < 0) | (idx >= bounds)).any(axis=1) if nnz else np.zeros(0, bool)
        flat = None
    else:
        raise FrontendError(
            f"{where}: indices have shape {list(idx.shape)}, expected [{nnz}] or "
            f"[{nnz}, {len(dims)}] for {nnz} values and dims {list(dims)}"
        )
    if bad.any():
        i = int(np.argmax(bad))
        raise FrontendError(
            f"{where}: index {idx[i].tolist()} (entry {i}) is out of range for dims {list(dims)}"
        )
    if check_only:
        return None
    if flat is None:
        flat = np.ravel_multi_index(tuple(idx.T), dims) if nnz else np.zeros(0, np.int64)
    dense = np.zeros(total, dtype=values.dtype)
    dense[flat] = values
    return dense.reshape(dims)
