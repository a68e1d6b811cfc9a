"""The torch op registry: lowerings found by pkgutil in ops/, one-input ops, lookup by domain."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest
import torch

import neffkit.backends.torch.ops as ops_package
from neffkit.backends.torch import registry
from neffkit.backends.torch.registry import lookup, lowers_call, op_modules

# Every op the torch backend lowered before the lowerings were cut by family; none may be lost.
EXPECTED_DEFAULT_DOMAIN = (
    "Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh Attention "
    "AveragePool BatchNormalization BitCast BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor "
    "Cast CastLike CausalConvWithState Ceil Celu CenterCropPad Clip Col2Im Compress Concat "
    "ConcatFromSequence Constant ConstantOfShape Conv ConvInteger ConvTranspose Cos Cosh "
    "CumProd CumSum DeformConv DepthToSpace DequantizeLinear Det Div Dropout "
    "DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather "
    "GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater "
    "GreaterOrEqual GridSample GroupNormalization HardSigmoid HardSwish Hardmax Identity If "
    "InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual "
    "LinearAttention Log LogSoftmax Loop LpNormalization LpPool MatMul MatMulInteger Max "
    "MaxPool MaxUnpool Mean MeanVarianceNormalization Min Mish Mod Mul Neg "
    "NegativeLogLikelihoodLoss NonMaxSuppression NonZero Not OneHot Optional OptionalGetElement "
    "OptionalHasElement Or PRelu Pad Pow QLinearConv QLinearMatMul QuantizeLinear "
    "RMSNormalization RNN Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp "
    "ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize "
    "ReverseSequence RoiAlign RotaryEmbedding Round Scan Scatter ScatterElements ScatterND Selu "
    "SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength "
    "SequenceMap Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax SoftmaxCrossEntropyLoss "
    "Softplus Softsign SpaceToDepth Split SplitToSequence Sqrt Squeeze Sub Sum SwiGLU Swish Tan "
    "Tanh TensorScatter ThresholdedRelu Tile TopK Transpose Trilu Unique Unsqueeze Upsample "
    "Where Xor "
).split()
EXPECTED_OTHER_DOMAINS = [("ai.onnx.preview", "FlexAttention")]


def test_every_op_lowered_before_is_still_lowered() -> None:
    expected = sorted(
        [("", op) for op in EXPECTED_DEFAULT_DOMAIN]
        + [tuple(pair) for pair in EXPECTED_OTHER_DOMAINS]
    )
    assert len(expected) == 185
    assert registry.supported_ops() == expected


def test_op_modules_are_every_file_in_ops() -> None:
    folder = Path(ops_package.__file__).parent
    files = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    assert [m.rsplit(".", 1)[1] for m in op_modules()] == files


def test_every_ops_module_registers_an_op() -> None:
    registry.supported_ops()
    owners = {fn.__module__ for fn in registry._REGISTRY.values()}
    owners |= {fn.__module__ for fn in registry._DOMAINS.values()}
    assert [m for m in op_modules() if m not in owners] == []
    # and nothing outside ops/ registers one (one-input ops name the module that registered them)
    assert sorted(owners) == op_modules()


def test_an_ops_module_that_fails_to_import_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(
        registry, "op_modules", lambda: ["neffkit.backends.torch.ops.no_such_family"]
    )
    with pytest.raises(ModuleNotFoundError):
        registry.lookup("", "Relu")
    assert registry._loaded is False  # not marked loaded: the next lookup raises again


def test_discovery_uses_pkgutil_not_a_list() -> None:
    found = [m.name for m in pkgutil.iter_modules(ops_package.__path__)]
    assert "arithmetic" in found and "shape" in found
    assert not hasattr(registry, "_OP_MODULES")


def test_lookup_reads_ai_onnx_as_the_default_domain() -> None:
    assert lookup("ai.onnx", "Relu") is lookup("", "Relu") is not None
    assert lookup("ai.onnx.preview", "FlexAttention") is not None
    assert lookup("", "NoSuchOp") is None
    assert lookup("com.example", "Relu") is None


def test_lowers_call_registers_a_one_call_lowering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    lowers_call("FrobCall", torch.neg, domain="com.example")
    fn = registry._REGISTRY[("com.example", "FrobCall")]
    assert fn.__module__ == __name__  # the module that registered it

    class Ctx:
        def call(self, f: object, *args: object) -> tuple[object, ...]:
            return (f, *args)

    assert fn(Ctx(), None, ["x"]) == (torch.neg, "x")  # type: ignore[arg-type]


def test_as_list() -> None:
    assert registry.as_list("a") == ["a"]
    assert registry.as_list(("a", "b")) == ("a", "b")


def test_registry_reexports_unsupported_for_lowering_authors() -> None:
    from neffkit.backends.torch.convert import Unsupported

    assert registry.Unsupported is Unsupported


def test_a_domain_lowering_takes_every_op_of_its_domain_but_a_named_one_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert registry.supported_domains() == ["aten"]
    whole = registry.lookup("aten", "special_i0e")
    assert whole is not None and whole is registry.lookup("aten", "anything_else")
    assert whole.__module__ == "neffkit.backends.torch.ops.aten"
    assert ("aten", "special_i0e") not in registry.supported_ops()

    def named(ctx: object, node: object, args: list) -> None:
        return None

    monkeypatch.setitem(registry._REGISTRY, ("aten", "special_i0e"), named)
    assert registry.lookup("aten", "special_i0e") is named
    assert registry.lookup("aten", "cumprod") is whole
    assert registry.lookup("no.such.domain", "special_i0e") is None
