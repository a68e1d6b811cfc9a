"""Value types: a tensor type is an element type plus a shape whose dims are ints or symbols.

Non-tensor ONNX types (sequences, optionals, maps, sparse tensors) are kept as an opaque
``TypeProto`` so a model round-trips even where neffkit does not reason about the type.
"""

from __future__ import annotations

from collections.abc import Sequence

from onnx import TypeProto

from neffkit.ir.tensor import dtype_name

#: A dimension: a static size, a symbol (``"batch"``), or ``None`` when unknown.
Dim = int | str | None
#: A shape: ``None`` when even the rank is unknown.
Shape = tuple[Dim, ...] | None


class TensorType:
    """An ONNX tensor type: element type (``TensorProto.FLOAT`` ...) and shape."""

    __slots__ = ("dtype", "shape", "_static")

    def __init__(self, dtype: int, shape: Sequence[Dim] | None = None) -> None:
        self.dtype = dtype
        self.shape: Shape = None if shape is None else tuple(shape)
        # computed once: passes ask for it on every value of every graph
        self._static = self.shape is not None and all(type(d) is int for d in self.shape)

    @property
    def rank(self) -> int | None:
        """Number of dims, or None when unknown."""
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        """True when every dim is a known int."""
        return self._static

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TensorType)
            and self.dtype == other.dtype
            and self.shape == other.shape
        )

    def __hash__(self) -> int:
        return hash((self.dtype, self.shape))

    def __repr__(self) -> str:
        if self.shape is None:
            return f"{dtype_name(self.dtype)}[?]"
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{dtype_name(self.dtype)}[{dims}]"


class OpaqueType:
    """A non-tensor type (sequence, optional, map, sparse) carried through unchanged."""

    __slots__ = ("proto",)

    def __init__(self, proto: TypeProto) -> None:
        self.proto = proto

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpaqueType) and self.proto == other.proto

    def __hash__(self) -> int:
        return hash(self.proto.SerializeToString(deterministic=True))

    def __repr__(self) -> str:
        return f"OpaqueType({self.proto.WhichOneof('value')})"


ValueType = TensorType | OpaqueType


def type_from_proto(tp: TypeProto) -> ValueType | None:
    """Reads a ``TypeProto``; returns None when it carries no information."""
    kind = tp.WhichOneof("value")
    if kind is None:
        return None
    if kind != "tensor_type":
        return OpaqueType(tp)
    tt = tp.tensor_type
    if not tt.HasField("shape"):
        return TensorType(tt.elem_type, None)
    dims: list[Dim] = []
    for d in tt.shape.dim:
        which = d.WhichOneof("value")
        if which == "dim_value":
            dims.append(d.dim_value)
        elif which == "dim_param":
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return TensorType(tt.elem_type, dims)


def type_to_proto(t: ValueType, out: TypeProto) -> None:
    """Writes ``t`` into the (empty) ``TypeProto`` ``out``."""
    if isinstance(t, OpaqueType):
        out.CopyFrom(t.proto)
        return
    tt = out.tensor_type
    tt.elem_type = t.dtype
    if t.shape is not None:
        shape = tt.shape
        shape.SetInParent()
        for d in t.shape:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            elif isinstance(d, str):
                dim.dim_param = d
