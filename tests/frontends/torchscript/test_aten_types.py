"""Output types of aten nodes TorchScript leaves untyped (frontends/torchscript/aten_types.py):
a run on meta tensors gives the dtype (and the rank when every input rank is known)."""

from __future__ import annotations

import pytest
from onnx import TensorProto

torch = pytest.importorskip("torch")

from neffkit.frontends.torchscript.aten_types import meta_output_types  # noqa: E402
from neffkit.ir import TensorType, Value  # noqa: E402

CUMPROD = "aten::cumprod(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor"
F, D, I64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64


def _v(dtype: int, shape: list | None) -> Value:
    return Value("v", TensorType(dtype, shape))


def test_dtype_keyword_sets_the_output_dtype_rank_kept_when_known() -> None:
    args = {"self": _v(F, [2, "n", 4]), "dim": 1, "dtype": 7}
    assert meta_output_types(CUMPROD, args, 1) == [TensorType(D, [None] * 3)]


def test_unknown_rank_gives_the_dtype_only() -> None:
    args = {"self": _v(F, None), "dim": 1, "dtype": 7}
    assert meta_output_types(CUMPROD, args, 1) == [TensorType(D, None)]


def test_several_outputs_and_tensor_lists() -> None:
    schema = "aten::max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor i)"
    got = meta_output_types(schema, {"self": _v(F, [3, 4]), "dim": 1}, 2)
    assert got == [TensorType(F, [None]), TensorType(I64, [None])]
    cat = "aten::cat(Tensor[] tensors, int dim=0) -> Tensor"
    assert meta_output_types(cat, {"tensors": [_v(F, [2]), _v(F, [3])]}, 1) == [
        TensorType(F, [None])
    ]


@pytest.mark.parametrize(
    ("schema", "args"),
    [
        (CUMPROD, {"self": _v(F, [2, 3]), "dim": _v(I64, [])}),  # a run-time int
        (CUMPROD, {"self": _v(F, [2, 3])}),  # a required argument missing
        (CUMPROD, {"self": _v(F, [2, 3]), "dim": 5}),  # the call itself fails
        ("aten::no_such_op(Tensor self) -> Tensor", {"self": _v(F, [2])}),
    ],
)
def test_not_known_is_none(schema: str, args: dict) -> None:
    assert meta_output_types(schema, args, 1) is None
