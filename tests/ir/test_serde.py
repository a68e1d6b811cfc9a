"""The IR's ONNX codec: attributes, tensors, types and whole models, both ways."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import AttributeProto, TensorProto, helper

from neffkit.errors import FrontendError
from neffkit.ir import Attr, Tensor, TensorType, serde
from neffkit.ir.text import print_body


@pytest.mark.parametrize(
    "value",
    [3, 2.5, "text", [1, 2], [0.5, 1.5], ["a", "b"], Tensor(np.arange(3, dtype=np.int64))],
)
def test_an_attribute_encodes_and_decodes_to_the_same_value(value: object) -> None:
    from neffkit.ir.core import infer_attribute_type

    ap = AttributeProto()
    serde.encode_attribute(Attr("k", infer_attribute_type(value), value), ap)
    back = serde.decode_attribute(ap)
    if isinstance(value, Tensor):
        assert back.equals(value)
    else:
        assert back == value


def test_a_lazy_attribute_decodes_once_and_is_written_back_as_its_proto() -> None:
    ap = helper.make_attribute("perm", [1, 0])
    a = serde.LazyAttr(ap)
    assert a.value == [1, 0] and a.value is a.value
    out = AttributeProto()
    serde.encode_attribute(a, out)
    assert out == ap and a.proto is ap


def test_types_and_tensors_round_trip() -> None:
    t = TensorType(TensorProto.FLOAT, [2, "n", None])
    tp = onnx.TypeProto()
    serde.type_to_proto(t, tp)
    assert serde.type_from_proto(tp) == t
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    back = serde.tensor_from_proto(serde.tensor_to_proto(Tensor(arr, "w")))
    np.testing.assert_array_equal(back.numpy(), arr)


def test_decode_then_encode_keeps_the_model() -> None:
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        m (float[2] x) => (float[2] y) {
            t = Transpose <perm = [0]> (x)
            y = Relu(t)
        }
    """)
    g = serde.decode_model(model)
    again = serde.decode_model(serde.to_onnx(g))
    assert print_body(again) == print_body(g)
    assert [n.op_type for n in again] == ["Transpose", "Relu"]


def test_decode_names_the_source_in_its_errors() -> None:
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        m (float[2] x) => (float[2] y) { y = Relu(z) }
    """)
    with pytest.raises(FrontendError, match="^here: node .* reads 'z'"):
        serde.decode_model(model, source="here")


def test_sparse_to_dense_refuses_indices_out_of_range() -> None:
    values = helper.make_tensor("s", TensorProto.FLOAT, [2], [1.0, 2.0])
    indices = helper.make_tensor("i", TensorProto.INT64, [2], [0, 9])
    sp = helper.make_sparse_tensor(values, indices, [4])
    with pytest.raises(FrontendError, match="out of range"):
        serde.sparse_to_dense(sp, "m.onnx")
    ok = helper.make_sparse_tensor(values, helper.make_tensor("i", 7, [2], [0, 3]), [4])
    np.testing.assert_array_equal(serde.sparse_to_dense(ok, "m.onnx"), [1, 0, 0, 2])
