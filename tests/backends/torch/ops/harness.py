"""The harness of the op-family tests (tests/backends/torch/ops/test_<family>.py).

Each family test gives its ops; the harness finds their ONNX node conformance cases and makes
the constant-input, scripted and edge-case variants. Three forms, kept as they were before the
lowerings were cut by family: ``math`` (elementwise math, logic, casts, reductions: constant
axes/K/bounds scripted), ``nn`` (conv, pooling, normalization, ...: xfail markers, scalar data)
and ``shape`` (shape, layout, indexing: shape-like inputs as initializers, edge cases run,
constant and unranked). Each op belongs to one form (``FORM``).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence

import numpy as np
import onnx
import onnx.parser
import pytest
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import neffkit.backends.onnxruntime as ort_backend
import neffkit.backends.torch as tb
from neffkit.backends.torch.registry import lookup, supported_ops
from neffkit.frontends.onnx import load
from neffkit.testing.conformance import (
    HALF_PRECISION_SOFTMAX_CASES,
    all_ops_lowered,
    compare,
    neffkit_torch_runner,
    plain_node_cases,
    run_case,
)
from neffkit.testing.onnx_cases import Case, is_plain_tensor_case, node_cases
from tests.backends.torch.ops.edge_cases import MATH_EDGE, SHAPE_EDGE, SHAPE_EXPECTED

# -- which form each op's cases take -----------------------------------------------------------

_MATH_ELEMENTWISE = (
    "Add Sub Mul Div Pow Mod Neg Abs Reciprocal Sqrt Exp Log Erf Ceil Floor Round Sign Sin Cos "
    "Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Relu LeakyRelu PRelu Elu Selu Celu Gelu "
    "HardSigmoid HardSwish Sigmoid Tanh Softplus Softsign Mish Swish ThresholdedRelu Shrink Clip "
    "Max Min Mean Sum Equal Less LessOrEqual Greater GreaterOrEqual Not And Or Xor BitShift "
    "BitwiseAnd BitwiseOr BitwiseXor BitwiseNot IsNaN IsInf Where Cast CastLike BitCast"
).split()
_MATH_REDUCE = (
    "ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum "
    "ReduceLogSumExp ReduceSumSquare ArgMax ArgMin CumSum CumProd TopK NonZero Unique Hardmax "
    "Softmax LogSoftmax Det"
).split()
MATH_OPS = _MATH_ELEMENTWISE + _MATH_REDUCE
# The issue requires every case of these ops to pass (KNOWN_FAILURES documents the exceptions).
MATH_REQUIRED = (
    "Relu LeakyRelu Sigmoid Tanh Erf Gelu HardSigmoid HardSwish Softmax LogSoftmax Add Sub Mul "
    "Div Pow Sqrt Exp Log Neg Abs Reciprocal Equal Less Greater Not And Cast ReduceMean "
    "ReduceSum ReduceMax ArgMax TopK Clip Where"
).split()
NN_OPS = (
    "Conv ConvTranspose BatchNormalization InstanceNormalization LayerNormalization "
    "GroupNormalization RMSNormalization LpNormalization MeanVarianceNormalization LRN MatMul "
    "Gemm Einsum MatMulInteger Dropout MaxPool AveragePool GlobalAveragePool GlobalMaxPool "
    "GlobalLpPool LpPool MaxUnpool Resize Upsample DepthToSpace SpaceToDepth Attention "
    "RotaryEmbedding GridSample AffineGrid Col2Im RNN LSTM GRU QuantizeLinear DequantizeLinear "
    "DynamicQuantizeLinear QLinearMatMul ConvInteger QLinearConv NegativeLogLikelihoodLoss "
    "SoftmaxCrossEntropyLoss DeformConv CausalConvWithState LinearAttention FlexAttention SwiGLU"
).split()
# The issue requires every case of these ops to pass.
NN_REQUIRED = (
    "Conv ConvTranspose BatchNormalization InstanceNormalization LayerNormalization MatMul Gemm "
    "Einsum MaxPool AveragePool GlobalAveragePool Resize Dropout"
).split()
SHAPE_OPS = (
    "Shape Size Reshape Flatten Squeeze Unsqueeze Transpose Concat Split Slice Expand Tile Pad "
    "ConstantOfShape Range EyeLike Trilu CenterCropPad ReverseSequence Compress"
).split()
INDEX_OPS = (
    "Gather GatherElements GatherND Scatter ScatterElements ScatterND OneHot NonMaxSuppression "
    "RoiAlign TensorScatter"
).split()
SHAPE_FORM_OPS = SHAPE_OPS + INDEX_OPS
# The issue requires every case of these ops to pass; the shape-form conformance checks each one.
SHAPE_REQUIRED = (
    "Transpose Reshape Flatten Squeeze Unsqueeze Concat Split Slice Gather GatherElements "
    "Expand Tile Pad Shape Size ConstantOfShape Range"
).split()
# Checked in the math form too since the cut by family (no group listed them before).
PLAIN_OPS = "Constant Identity If Loop Scan".split()
FORM = {
    **dict.fromkeys(PLAIN_OPS, "math"),
    **dict.fromkeys(MATH_OPS, "math"),
    **dict.fromkeys(NN_OPS, "nn"),
    **dict.fromkeys(SHAPE_FORM_OPS, "shape"),
}
REQUIRED = {"math": MATH_REQUIRED, "nn": NN_REQUIRED, "shape": SHAPE_REQUIRED}


def ops_of(family: str) -> list[str]:
    """The op types ``ops/<family>.py`` registers a lowering for, sorted."""
    from neffkit.backends.torch.registry import _REGISTRY

    supported_ops()
    module = f"neffkit.backends.torch.ops.{family}"
    return sorted(op for (_, op), fn in _REGISTRY.items() if fn.__module__ == module)


def _in_form(ops: Sequence[str], form: str) -> tuple[str, ...]:
    return tuple(op for op in ops if FORM.get(op) == form)


def _param(case: Case, form: str, *rest: object) -> object:
    return pytest.param(case, form, *rest, id=case.name)


@functools.cache
def _family_of() -> dict[str, str]:
    """Op type -> the ops/ module (family) that lowers it."""
    from neffkit.backends.torch.registry import _REGISTRY

    supported_ops()
    return {op: fn.__module__.rsplit(".", 1)[1] for (_, op), fn in _REGISTRY.items()}


def _subject(case: Case) -> str:
    """The op a node case is named after (``test_reduce_sum_...`` -> ``ReduceSum``)."""
    named = case.name.removeprefix("test_").replace("_", "").lower()
    ops = sorted(_family_of(), key=len, reverse=True)
    return next((op for op in ops if named.startswith(op.lower())), "")


def _owned(cases: Sequence[Case], ops: Sequence[str], form: str) -> list[Case]:
    """The cases among ``cases`` that the family of ``ops`` runs in ``form``.

    A case using ops of several families is picked by each of them; it runs once, under the
    family of the op it is named after when that family picks it, else the first by name.
    """
    family = _family_of()
    out = []
    for c in cases:
        picking = {family[op] for op in c.op_types if op in family and FORM.get(op) == form}
        subject = family.get(_subject(c), "")
        owner = subject if subject in picking else min(picking, default="")
        if any(family.get(op) == owner for op in ops):
            out.append(c)
    return out


def conformance_params(ops: Sequence[str]) -> list[object]:
    """``(case, form)`` for every plain conformance case using one of ``ops`` (each case under
    one family only)."""
    out = []
    for form, select in (("math", _math_cases), ("nn", _nn_cases), ("shape", _shape_cases)):
        mine = _in_form(ops, form)
        out += [_param(c, form) for c in _owned(select(mine), mine, form)]
    return out


def check_conformance(case: Case, form: str, request: pytest.FixtureRequest) -> None:
    """Runs one conformance case in its form (known failures xfail)."""
    if form == "math":
        _check_math_case(case)
    elif form == "nn":
        _check_nn_case(case, request)
    else:
        _check_shape_case(case)


def other_data_params(ops: Sequence[str]) -> list[object]:
    """Cases the plain harness skips for their data (TensorProtos, numpy scalars), as arrays."""
    out = []
    for form, select in (("math", _math_tensorproto_cases), ("nn", _nn_scalar_cases)):
        mine = _in_form(ops, form)
        out += [_param(c, form) for c in _owned(select(mine), mine, form)]
    return out


def check_other_data(case: Case, form: str, request: pytest.FixtureRequest) -> None:
    if form == "math":
        _check_math_tensorproto_case(case)
    else:
        _check_nn_case(case, request)


def constant_input_params(ops: Sequence[str]) -> list[object]:
    """Single-node cases whose shape-like / axes / K / bounds inputs can become initializers."""
    out = [_param(c, "math") for c in _math_const_cases(_in_form(ops, "math"))]
    out += [_param(c, "shape") for c in _shape_single_node_cases(_in_form(ops, "shape"))]
    return out


def check_constant_inputs(case: Case, form: str) -> None:
    for inputs, expected in case.data_sets:
        if form == "math":
            # scripted, so the static (constant axes / K / bounds) lowerings are checked in
            # TorchScript
            m, feed = _math_constified(case, inputs)
            run_and_compare(m, feed, expected, case.rtol, case.atol, script=True)
        else:
            m, feed = _shape_constified(case, inputs)
            run_and_compare(m, feed, expected, case.rtol, case.atol, script=False)


def scripted_params(ops: Sequence[str]) -> list[object]:
    """One single-op case per op, scripted (shape form: with run-time and constant inputs)."""
    out = [_param(c, "math", False) for c in _math_one_case_per_op(_in_form(ops, "math"))]
    for c in _shape_one_case_per_op(_in_form(ops, "shape")):
        out += [
            pytest.param(c, "shape", const, id=f"{c.name}-{'constant' if const else 'runtime'}")
            for const in (False, True)
        ]
    return out


def check_scripted(case: Case, form: str, const: bool) -> None:
    inputs, expected = case.data_sets[0]
    if const:
        m, feed = _shape_constified(case, inputs)
    else:
        m, feed = case.load_model(), list(inputs)
    run_and_compare(m, feed, expected, case.rtol, case.atol, script=True)


def nn_script_sample(ops: Sequence[str]) -> list[Case]:
    """Up to 5 single-op cases per nn-form op, spread over its cases (scripting compiles a
    helper whole, so a few cases cover its code; all of them would take half a minute)."""
    by_op: dict[str, list[Case]] = {}
    for c in _nn_cases(_in_form(ops, "nn")):
        if len(c.op_types) == 1 and c.name not in NN_KNOWN_FAILURES:
            by_op.setdefault(c.op_types[0], []).append(c)
    out = []
    for cases in by_op.values():
        step = max(1, len(cases) // 5)
        out += cases[::step][:5]
    return out


def check_nn_modules_script(ops: Sequence[str]) -> None:
    """Modules lowered from the nn-form conformance cases of ``ops`` script and agree."""
    failures = []
    for c in nn_script_sample(ops):
        graph = load(c.load_model())
        try:
            scripted = torch.jit.script(tb.compile(graph))
        except Exception as e:  # noqa: BLE001 - collect every failure
            failures.append(f"{c.name}: {str(e).splitlines()[0]}")
            continue
        ins, outs = c.data_sets[0]
        got = tb.run(graph, ins, module=scripted)
        for want, g in zip(outs, got, strict=True):
            msg = compare(want, g, c.rtol, c.atol)
            if msg:
                failures.append(f"{c.name}: {msg}")
    assert not failures, "\n".join(failures)


def required_params(ops: Sequence[str]) -> list[object]:
    """``(op, form)`` for the ops of ``ops`` whose every case the issue requires to pass."""
    return [
        pytest.param(op, form, id=op) for form, req in REQUIRED.items() for op in req if op in ops
    ]


def check_required(op: str, form: str) -> None:
    if form == "math":
        # the conformance (and the TensorProto-data cases for Cast and Clip) checks each case
        every = tuple(MATH_OPS)
        assert any(op in c.op_types for c in _math_cases(every) + _math_tensorproto_cases(every))
    elif form == "shape":
        assert any(op in c.op_types for c in _shape_cases(tuple(SHAPE_FORM_OPS)))
    else:
        # every single-op case of the op is checked and none is a known failure
        checked = {c.name for c in _nn_cases(tuple(NN_OPS))}
        for c in plain_node_cases([op], torch_dtypes=True):
            if c.name.startswith("test_training_dropout"):
                continue  # training-mode Dropout is random; the issue asks for inference Dropout
            if len(c.op_types) == 1:
                assert c.name in checked, f"{c.name} is not checked"
                assert c.name not in NN_KNOWN_FAILURES


def edge_params(ops: Sequence[str]) -> list[object]:
    """Hand-written one-node models of ``ops`` (math form: scripted and not; shape form:
    inputs fed at run time, as constants, and with the data input unranked)."""
    out = [pytest.param("math", e[1:], "", id=e[0]) for e in MATH_EDGE if _edge_op(e[2]) in ops]
    for e in SHAPE_EDGE:
        if _edge_op(e[2]) in ops:
            out += [
                pytest.param("shape", e, how, id=f"{e[0]}-{how}")
                for how in ("runtime", "constant", "unranked")
            ]
    return out


def _edge_op(node: str) -> str:
    call = node.split("=", 1)[1] if "=" in node.split("<")[0].split("(")[0] else node
    return call.strip().split("<")[0].split("(")[0].strip()


def check_edge(form: str, edge: tuple, how: str) -> None:
    if form == "math":
        opset, node, decl, inputs = edge
        model = math_edge_model(opset, node, decl)
        expected = ReferenceEvaluator(model).run(
            None, dict(zip([i.name for i in model.graph.input], inputs))
        )
        for script in (False, True):
            if "BitCast" in node and script:
                continue  # BitCast between float kinds calls back into Python when scripted
            run_and_compare(model, list(inputs), expected, 1e-5, 1e-6, script=script)
        return
    name, opset, node, inputs = edge
    model = _shape_edge_model(opset, node, inputs)
    feeds = {vi.name: x for vi, x in zip(model.graph.input, inputs)}
    expected = SHAPE_EXPECTED.get(name) or ReferenceEvaluator(model).run(None, feeds)
    m, feed = _variant(model, inputs, how)
    run_and_compare(m, feed, list(expected), 1e-5, 1e-6, script=how != "runtime")


def run_and_compare(
    model: onnx.ModelProto, feed: list, expected: list, rtol: float, atol: float, script: bool
) -> None:
    g = load(model)
    module = torch.jit.script(tb.compile(g)) if script else None
    got = tb.run(g, feed, module=module)
    assert len(got) == len(expected)
    for i, (e, o) in enumerate(zip(expected, got)):
        msg = compare(e, o, rtol, atol)
        assert not msg, f"output {i}: {msg}"


# -- math form (elementwise math, logic, casts, reductions) ---------------------------------

MATH_KNOWN_FAILURES: dict[str, str] = {
    # torch has no string tensors; the backend refuses them when converting the inputs.
    "test_equal_string": "string tensors (torch has none)",
    "test_equal_string_broadcast": "string tensors (torch has none)",
    **{
        name: "fp16/bf16 softmax rounding differs from numpy's"
        for name in HALF_PRECISION_SOFTMAX_CASES
    },
    # Not these ops: convert.to_torch turns a 0-d bfloat16 input into shape (1,)
    # (np.ascontiguousarray returns at least 1-d), so the Loop output gains a dimension.
    "test_range_bfloat16_type_positive_delta_expanded": "0-d bfloat16 inputs become 1-d",
    # Scan before opset 9 has a batch axis and sequence_lens; the lowering refuses it.
    "test_scan_sum": "Scan-8 (batched) is refused",
}

# Element types torch has no dtype for: Cast/CastLike to or from them is refused.
_NO_TORCH_DTYPE = ("INT4", "UINT4", "INT2", "UINT2", "FLOAT4E2M1", "FLOAT8E8M0")


@functools.cache
def _math_cases(ops: tuple[str, ...]) -> tuple[Case, ...]:
    """Plain cases using one of ``ops`` whose ops (subgraphs included) all have a lowering."""
    return tuple(
        c for c in plain_node_cases(ops, torch_dtypes=True) if all_ops_lowered(c.load_model())
    )


def _check_math_case(case: Case) -> None:
    outcome = run_case(case, neffkit_torch_runner)
    if case.name in MATH_KNOWN_FAILURES:
        if outcome.status != "passed":
            pytest.xfail(MATH_KNOWN_FAILURES[case.name])
        return
    assert outcome.status == "passed", f"{case.name}: {outcome.message}"


def _as_array(a: object) -> np.ndarray:
    return numpy_helper.to_array(a) if isinstance(a, onnx.TensorProto) else np.asarray(a)


@functools.cache
def _math_tensorproto_cases(ops: tuple[str, ...]) -> tuple[Case, ...]:
    """Cases using one of ``ops`` with tensor inputs and outputs whose data are TensorProtos or
    numpy scalars (Cast, CastLike, Clip, CumSum, ...), with the data as numpy arrays."""
    out = []
    for c in node_cases():
        if not set(ops) & set(c.op_types) or is_plain_tensor_case(c):
            continue
        g = c.load_model().graph
        if any(v.type.WhichOneof("value") != "tensor_type" for v in [*g.input, *g.output]):
            continue
        if not all_ops_lowered(c.load_model()):
            continue
        sets = [([_as_array(a) for a in i], [_as_array(a) for a in o]) for i, o in c.data_sets]
        out.append(Case(c.name, c.model, sets, c.rtol, c.atol, op_types=c.op_types))
    return tuple(out)


def _check_math_tensorproto_case(case: Case) -> None:
    outcome = run_case(case, neffkit_torch_runner)
    if any(f"{t}_to" in case.name or f"to_{t}" in case.name for t in _NO_TORCH_DTYPE):
        assert outcome.status == "error"  # refused (or the input cannot be converted)
        return
    assert outcome.status == "passed", f"{case.name}: {outcome.message}"


_CONST_INPUT_OPS = {"Clip", "CumSum", "CumProd", "TopK", *[op for op in MATH_OPS if "Reduce" in op]}


def _math_constified(case: Case, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, list]:
    """The case's model with inputs after the first as initializers, and the first one fed."""
    m = copy.deepcopy(case.load_model())
    for vi, arr in list(zip(m.graph.input, inputs))[1:]:
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(arr), vi.name))
    keep = m.graph.input[0]
    del m.graph.input[:]
    m.graph.input.append(keep)
    return m, [inputs[0]]


def _math_const_cases(ops: tuple[str, ...]) -> list[Case]:
    return [
        c
        for c in _math_cases(ops) + _math_tensorproto_cases(ops)
        if len(c.op_types) == 1 and c.op_types[0] in _CONST_INPUT_OPS and len(c.data_sets[0][0]) > 1
    ]


def _math_one_case_per_op(ops: tuple[str, ...]) -> list[Case]:
    seen: dict[str, Case] = {}
    for c in _math_cases(ops):
        if len(c.op_types) == 1 and c.name not in MATH_KNOWN_FAILURES:
            seen.setdefault(c.op_types[0], c)
    return list(seen.values())


def math_edge_model(opset: int, node: str, decl: str, ir_version: int = 10) -> onnx.ModelProto:
    """A one-node model with inferred output types."""
    outs = node.split("=")[0].replace(" ", "").split(",")
    text = (
        f'<ir_version: {ir_version}, opset_import: ["" : {opset}]>\n'
        f"g ({decl}) => ({', '.join(outs)}) {{ {node} }}"
    )
    return onnx.shape_inference.infer_shapes(onnx.parser.parse_model(text))


# -- nn form (conv, pooling, normalization, resize, attention, recurrent, quantization) -----

NN_KNOWN_FAILURES = {
    # Attention function expansions in fp16/bf16 (they use MatMul, hence listed here): the
    # first node that differs from the ONNX reference is Softmax (elementwise family), whose
    # numpy reference rounds every step to 16 bits while torch accumulates in float32. The
    # MatMuls are exact. The Attention op itself passes these cases.
    **{name: "Softmax half-precision rounding" for name in HALF_PRECISION_SOFTMAX_CASES},
    # Dropout in training mode with ratio > 0 is random (numpy's RandomState in the reference):
    # the lowering raises at run time rather than return different random numbers.
    "test_training_dropout_default": "random training-mode Dropout",
    "test_training_dropout_default_mask": "random training-mode Dropout",
    "test_training_dropout": "random training-mode Dropout",
    "test_training_dropout_mask": "random training-mode Dropout",
}


@functools.cache
def _nn_cases(ops: tuple[str, ...]) -> list[Case]:
    """Plain cases that use one of ``ops`` and whose every op has a lowering."""
    return [c for c in plain_node_cases(ops, torch_dtypes=True) if all_ops_lowered(c.load_model())]


def _nn_scalar_cases(ops: tuple[str, ...]) -> list[Case]:
    """Cases of nn ops skipped by the plain harness only because their data holds numpy
    scalars; the scalars become 0-d arrays."""
    out = []
    for c in node_cases():
        if is_plain_tensor_case(c) or not set(c.op_types) & set(ops):
            continue
        g = c.load_model().graph
        if any(v.type.WhichOneof("value") != "tensor_type" for v in [*g.input, *g.output]):
            continue
        sets = [([np.asarray(a) for a in i], [np.asarray(a) for a in o]) for i, o in c.data_sets]
        if any(a.dtype == object for i, o in sets for a in i + o):
            continue
        if not all_ops_lowered(c.load_model()):
            continue
        out.append(Case(c.name, c.model, sets, c.rtol, c.atol, op_types=c.op_types))
    return out


def _check_nn_case(case: Case, request: pytest.FixtureRequest) -> None:
    reason = NN_KNOWN_FAILURES.get(case.name)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))
    outcome = run_case(case, neffkit_torch_runner)
    assert outcome.status == "passed", f"{case.name}: {outcome.message}"


# -- shape form (shape, layout, indexing, generators) ---------------------------------------

# Cases that fail for reasons outside these lowerings (names of conformance cases).
SHAPE_KNOWN_FAILURES: dict[str, str] = {
    name: "half-precision Softmax/MatMul rounding, not a shape op"
    for name in HALF_PRECISION_SOFTMAX_CASES
}

# In the "constant inputs" variants, these ops get all their inputs as initializers; the
# others keep their first (data) input and get the rest as initializers.
_ALL_CONST = {"ConstantOfShape", "Range"}


@functools.cache
def _shape_cases(ops: tuple[str, ...]) -> tuple[Case, ...]:
    """Plain cases using one of ``ops`` whose ops all have a lowering already."""
    out = []
    for c in plain_node_cases(ops, torch_dtypes=True):
        if all(lookup("", op) is not None for op in c.op_types):
            out.append(c)
    return tuple(out)


def _shape_single_node_cases(ops: tuple[str, ...]) -> list[Case]:
    return [c for c in _shape_cases(ops) if len(c.op_types) == 1 and c.op_types[0] in ops]


def _check_shape_case(case: Case) -> None:
    outcome = run_case(case, neffkit_torch_runner)
    if case.name in SHAPE_KNOWN_FAILURES:
        if outcome.status != "passed":
            pytest.xfail(SHAPE_KNOWN_FAILURES[case.name])
        return
    assert outcome.status == "passed", f"{case.name}: {outcome.message}"


def _shape_constified(case: Case, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, list]:
    """The case's model with shape-like inputs as initializers, and the inputs still fed."""
    m = copy.deepcopy(case.load_model())
    op = case.op_types[0]
    keep, feed = [], []
    for k, (vi, arr) in enumerate(zip(list(m.graph.input), inputs)):
        if k >= 1 or op in _ALL_CONST:
            m.graph.initializer.append(numpy_helper.from_array(arr, vi.name))
        else:
            keep.append(vi)
            feed.append(arr)
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m, feed


def _shape_one_case_per_op(ops: tuple[str, ...]) -> list[Case]:
    seen: dict[str, Case] = {}
    for c in _shape_single_node_cases(ops):
        seen.setdefault(c.op_types[0], c)
    return list(seen.values())


_TYPES = {"float32": "float", "int64": "int64", "int32": "int32", "bool": "bool"}


def _shape_edge_model(opset: int, node: str, inputs: list[np.ndarray]) -> onnx.ModelProto:
    head = node.split("<")[0].split("(")[0]
    outs, call = [t.strip() for t in node.split("=", 1)] if "=" in head else ("y", node)
    names = [n.strip() for n in call[call.rindex("(") + 1 : call.rindex(")")].split(",")]
    names = [n for n in names if n]
    decl = ", ".join(
        f"{_TYPES[str(a.dtype)]}[{','.join(map(str, a.shape))}] {n}" if a.ndim else
        f"{_TYPES[str(a.dtype)]} {n}"
        for n, a in zip(names, inputs)
    )  # fmt: skip
    body = f"{outs} = {call}"
    return onnx.parser.parse_model(
        f'<ir_version: 8, opset_import: ["" : {opset}]>\ng ({decl}) => ({outs}) {{ {body} }}'
    )


def _variant(model: onnx.ModelProto, inputs: list, how: str) -> tuple[onnx.ModelProto, list]:
    """``runtime``: all inputs fed; ``constant``: inputs after the first (all of them for
    ConstantOfShape and Range) are initializers; ``unranked``: like constant, with the data
    input's shape undeclared."""
    m = copy.deepcopy(model)
    if how == "runtime":
        return m, list(inputs)
    first = 0 if m.graph.node[0].op_type in _ALL_CONST and how == "constant" else 1
    keep = list(m.graph.input)[:first]
    for vi, arr in zip(list(m.graph.input)[first:], inputs[first:]):
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(arr), vi.name))
    del m.graph.input[:]
    m.graph.input.extend(keep)
    if how == "unranked":
        m.graph.input[0].type.tensor_type.ClearField("shape")
    return m, list(inputs[:first])


# -- onnxruntime agreement of hand-written models ---------------------------------------------


def model_of(text: str) -> onnx.ModelProto:
    """A model from ONNX's textual syntax."""
    return onnx.parser.parse_model(text)


def agree(model: onnx.ModelProto, inputs: list[np.ndarray], script: bool = True) -> str:
    """Runs eager torch, scripted torch and onnxruntime; returns the generated code."""
    want = ort_backend.run(model, inputs)
    graph = load(model)
    gm = tb.compile(graph)
    got = tb.run(graph, inputs, module=gm)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
        assert g.dtype == w.dtype
    if script:
        scripted = tb.run(graph, inputs, module=torch.jit.script(gm))
        for w, g in zip(want, scripted, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    return gm.code


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    """Standard normal float32 values, reproducible by ``seed``."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
