"""Output types of aten nodes TorchScript leaves untyped (frontends/torchscript/aten_types.py):
a run on meta tensors gives the dtype (and the rank when every input rank is known); a kept op
that makes or reads a complex or quantized tensor is refused naming the op and line."""

from __future__ import annotations

import inspect

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


# -- complex and quantized tensors made or read by kept ops: one error, op and line -----------


class Quantizes(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)
        return q.dequantize()


class QuantizedBuffer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("q", torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q.dequantize() + x


class ComplexInside(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.view_as_complex(x)
        return torch.view_as_real(z * z)


@pytest.mark.parametrize(
    ("cls", "op", "what", "marker"),
    [
        (Quantizes, "aten::quantize_per_tensor", "quantized tensor", "q = torch.quantize"),
        (QuantizedBuffer, "prim::Constant", "QInt8", "self.q.dequantize()"),
        (ComplexInside, "aten::view_as_complex", "complex tensor", "z = torch.view_as_complex"),
    ],
)
def test_complex_and_quantized_values_are_refused(cls: type, op: str, what: str,
                                                  marker: str) -> None:  # fmt: skip
    from neffkit.errors import FrontendError
    from neffkit.frontends.torchscript import load_torchscript

    with pytest.raises(FrontendError) as info:
        load_torchscript(torch.jit.script(cls()), example_inputs=(torch.randn(2, 2),))
    message = str(info.value)
    assert message.startswith(op) and what in message, message
    lines, start = inspect.getsourcelines(cls.forward)
    line = start + next(i for i, text in enumerate(lines) if marker in text)
    assert f"{__file__}:{line}" in message
