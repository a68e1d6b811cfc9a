"""Value types: tensor types (dtype + shape of ints, symbols and unknowns), opaque non-tensor
types kept whole, and the TypeProto round trip of both."""

from __future__ import annotations

import pytest
from onnx import TensorProto, TypeProto, helper

from neffkit.ir.types import OpaqueType, TensorType, type_from_proto, type_to_proto


def test_shape_is_a_tuple_and_rank_follows_it() -> None:
    t = TensorType(TensorProto.FLOAT, [2, "N", None])
    assert t.shape == (2, "N", None)
    assert t.rank == 3
    assert TensorType(TensorProto.FLOAT, []).rank == 0
    assert TensorType(TensorProto.FLOAT).shape is None
    assert TensorType(TensorProto.FLOAT).rank is None


@pytest.mark.parametrize(
    ("shape", "static"),
    [([], True), ([2, 3], True), ([2, "N"], False), ([None], False), (None, False)],
)
def test_is_static_only_when_every_dim_is_a_known_int(shape: list | None, static: bool) -> None:
    assert TensorType(TensorProto.FLOAT, shape).is_static is static


def test_equal_types_hash_alike() -> None:
    a = TensorType(TensorProto.FLOAT, [1, "N"])
    b = TensorType(TensorProto.FLOAT, (1, "N"))
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != TensorType(TensorProto.FLOAT16, [1, "N"])
    assert a != TensorType(TensorProto.FLOAT, [1, "M"])
    assert a != TensorType(TensorProto.FLOAT)
    assert a != (TensorProto.FLOAT, (1, "N"))


def test_repr_shows_dtype_and_dims() -> None:
    assert repr(TensorType(TensorProto.FLOAT, [2, "N", None])) == "float[2,N,?]"
    assert repr(TensorType(TensorProto.INT64)) == "int64[?]"
    assert repr(TensorType(TensorProto.BOOL, [])) == "bool[]"


def _sequence_of_floats() -> TypeProto:
    return helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))


def test_opaque_types_compare_by_their_proto() -> None:
    a, b = OpaqueType(_sequence_of_floats()), OpaqueType(_sequence_of_floats())
    assert a == b and hash(a) == hash(b)
    other = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    assert a != OpaqueType(other)
    assert a != TensorType(TensorProto.FLOAT, [2])
    assert repr(a) == "OpaqueType(sequence_type)"


def test_an_empty_type_proto_reads_as_unknown() -> None:
    assert type_from_proto(TypeProto()) is None


def test_a_tensor_type_reads_dims_of_every_kind() -> None:
    tp = helper.make_tensor_type_proto(TensorProto.INT8, [3, "batch", None])
    assert type_from_proto(tp) == TensorType(TensorProto.INT8, [3, "batch", None])


def test_a_tensor_type_without_a_shape_has_unknown_rank() -> None:
    tp = helper.make_tensor_type_proto(TensorProto.FLOAT, None)
    assert type_from_proto(tp) == TensorType(TensorProto.FLOAT, None)
    scalar = helper.make_tensor_type_proto(TensorProto.FLOAT, [])
    assert type_from_proto(scalar) == TensorType(TensorProto.FLOAT, [])  # rank 0, not unknown


def test_a_non_tensor_type_is_kept_opaque() -> None:
    tp = _sequence_of_floats()
    t = type_from_proto(tp)
    assert isinstance(t, OpaqueType)
    assert t.proto == tp


@pytest.mark.parametrize(
    "t",
    [
        TensorType(TensorProto.FLOAT, [2, "N", None]),
        TensorType(TensorProto.INT64, []),
        TensorType(TensorProto.BFLOAT16, None),
        OpaqueType(_sequence_of_floats()),
    ],
    ids=repr,
)
def test_types_round_trip_through_type_proto(t: TensorType | OpaqueType) -> None:
    out = TypeProto()
    type_to_proto(t, out)
    assert type_from_proto(out) == t


def test_written_protos_are_what_onnx_would_write() -> None:
    out = TypeProto()
    type_to_proto(TensorType(TensorProto.FLOAT, [2, "N", None]), out)
    assert out == helper.make_tensor_type_proto(TensorProto.FLOAT, [2, "N", None])
    scalar = TypeProto()
    type_to_proto(TensorType(TensorProto.FLOAT, []), scalar)
    assert scalar.tensor_type.HasField("shape")  # a scalar keeps its empty shape
    unranked = TypeProto()
    type_to_proto(TensorType(TensorProto.FLOAT), unranked)
    assert not unranked.tensor_type.HasField("shape")
