"""Torch-backend lowerings of elementwise ops, casts and reductions (ops/elementwise.py,
ops/elementwise_bits.py, ops/reduce.py).

Checks the ONNX node conformance cases of these ops, the Cast/CastLike/Clip cases whose data
the plain harness skips (TensorProto or numpy-scalar data), the single-node cases with their
axes/K/bounds inputs turned into initializers (the static path), TorchScript scripting, and edge
cases against the ONNX reference evaluator.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import onnx
import onnx.parser
import pytest
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import neffkit.backends.torch as tb
from neffkit.backends.torch.registry import lookup
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

ELEMENTWISE_OPS = (
    "Add Sub Mul Div Pow Mod Neg Abs Reciprocal Sqrt Exp Log Erf Ceil Floor Round Sign Sin Cos "
    "Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Relu LeakyRelu PRelu Elu Selu Celu Gelu "
    "HardSigmoid HardSwish Sigmoid Tanh Softplus Softsign Mish Swish ThresholdedRelu Shrink Clip "
    "Max Min Mean Sum Equal Less LessOrEqual Greater GreaterOrEqual Not And Or Xor BitShift "
    "BitwiseAnd BitwiseOr BitwiseXor BitwiseNot IsNaN IsInf Where Cast CastLike BitCast"
).split()
REDUCE_OPS = (
    "ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum "
    "ReduceLogSumExp ReduceSumSquare ArgMax ArgMin CumSum CumProd TopK NonZero Unique Hardmax "
    "Softmax LogSoftmax Det"
).split()
OPS = ELEMENTWISE_OPS + REDUCE_OPS
# The issue requires every case of these ops to pass (KNOWN_FAILURES documents the exceptions).
REQUIRED = (
    "Relu LeakyRelu Sigmoid Tanh Erf Gelu HardSigmoid HardSwish Softmax LogSoftmax Add Sub Mul "
    "Div Pow Sqrt Exp Log Neg Abs Reciprocal Equal Less Greater Not And Cast ReduceMean "
    "ReduceSum ReduceMax ArgMax TopK Clip Where"
).split()

KNOWN_FAILURES: dict[str, str] = {
    # torch has no string tensors; the backend refuses them when converting the inputs.
    "test_equal_string": "string tensors (torch has none)",
    "test_equal_string_broadcast": "string tensors (torch has none)",
    **{
        name: "fp16/bf16 softmax rounding differs from numpy's"
        for name in HALF_PRECISION_SOFTMAX_CASES
    },
    # Not these ops: lowering.to_torch turns a 0-d bfloat16 input into shape (1,)
    # (np.ascontiguousarray returns at least 1-d), so the Loop output gains a dimension.
    "test_range_bfloat16_type_positive_delta_expanded": "0-d bfloat16 inputs become 1-d",
}

# Element types torch has no dtype for: Cast/CastLike to or from them is refused.
_NO_TORCH_DTYPE = ("INT4", "UINT4", "INT2", "UINT2", "FLOAT4E2M1", "FLOAT8E8M0")


@functools.cache
def _cases() -> tuple[Case, ...]:
    """Plain cases using one of OPS whose ops (subgraphs included) all have a lowering."""
    return tuple(
        c for c in plain_node_cases(OPS, torch_dtypes=True) if all_ops_lowered(c.load_model())
    )


@pytest.mark.parametrize("case", _cases(), ids=[c.name for c in _cases()])
def test_conformance(case: Case) -> None:
    outcome = run_case(case, neffkit_torch_runner)
    if case.name in KNOWN_FAILURES:
        if outcome.status != "passed":
            pytest.xfail(KNOWN_FAILURES[case.name])
        return
    assert outcome.status == "passed", f"{case.name}: {outcome.message}"


def test_every_op_is_lowered() -> None:
    assert [op for op in OPS if lookup("", op) is None] == []


@pytest.mark.parametrize("op", REQUIRED)
def test_required_op_has_cases(op: str) -> None:
    # test_conformance (and test_tensorproto_cases for Cast and Clip) checks each case.
    assert any(op in c.op_types for c in _cases() + _tensorproto_cases())


# -- cases whose data are TensorProtos or numpy scalars (the plain harness skips them) -------


def _as_array(a: object) -> np.ndarray:
    return numpy_helper.to_array(a) if isinstance(a, onnx.TensorProto) else np.asarray(a)


@functools.cache
def _tensorproto_cases() -> tuple[Case, ...]:
    """Cases using one of OPS with tensor inputs and outputs whose data are TensorProtos or
    numpy scalars (Cast, CastLike, Clip, CumSum, ...), with the data as numpy arrays."""
    out = []
    for c in node_cases():
        if not set(OPS) & set(c.op_types) or is_plain_tensor_case(c):
            continue
        g = c.load_model().graph
        if any(v.type.WhichOneof("value") != "tensor_type" for v in [*g.input, *g.output]):
            continue
        if not all_ops_lowered(c.load_model()):
            continue
        sets = [([_as_array(a) for a in i], [_as_array(a) for a in o]) for i, o in c.data_sets]
        out.append(Case(c.name, c.model, sets, c.rtol, c.atol, op_types=c.op_types))
    return tuple(out)


@pytest.mark.parametrize("case", _tensorproto_cases(), ids=[c.name for c in _tensorproto_cases()])
def test_tensorproto_cases(case: Case) -> None:
    outcome = run_case(case, neffkit_torch_runner)
    if any(f"{t}_to" in case.name or f"to_{t}" in case.name for t in _NO_TORCH_DTYPE):
        assert outcome.status == "error"  # refused (or the input cannot be converted)
        return
    assert outcome.status == "passed", f"{case.name}: {outcome.message}"


# -- the static path: axes / K / bounds inputs as initializers --------------------------------

_CONST_INPUT_OPS = {"Clip", "CumSum", "CumProd", "TopK", *[op for op in OPS if "Reduce" in op]}


def _constified(case: Case, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, list]:
    """The case's model with inputs after the first as initializers, and the first one fed."""
    m = copy.deepcopy(case.load_model())
    for vi, arr in list(zip(m.graph.input, inputs))[1:]:
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(arr), vi.name))
    keep = m.graph.input[0]
    del m.graph.input[:]
    m.graph.input.append(keep)
    return m, [inputs[0]]


def _run_and_compare(
    model: onnx.ModelProto, feed: list, expected: list, rtol: float, atol: float, script: bool
) -> None:
    g = load(model)
    module = torch.jit.script(tb.compile(g)) if script else None
    got = tb.run(g, feed, module=module)
    assert len(got) == len(expected)
    for i, (e, o) in enumerate(zip(expected, got)):
        msg = compare(e, o, rtol, atol)
        assert not msg, f"output {i}: {msg}"


def _const_cases() -> list[Case]:
    return [
        c
        for c in _cases() + _tensorproto_cases()
        if len(c.op_types) == 1 and c.op_types[0] in _CONST_INPUT_OPS and len(c.data_sets[0][0]) > 1
    ]


@pytest.mark.parametrize("case", _const_cases(), ids=[c.name for c in _const_cases()])
def test_conformance_with_constant_inputs(case: Case) -> None:
    # scripted, so the static (constant axes / K / bounds) lowerings are checked in TorchScript
    for inputs, expected in case.data_sets:
        m, feed = _constified(case, inputs)
        _run_and_compare(m, feed, expected, case.rtol, case.atol, script=True)


def _one_case_per_op() -> list[Case]:
    seen: dict[str, Case] = {}
    for c in _cases():
        if len(c.op_types) == 1 and c.name not in KNOWN_FAILURES:
            seen.setdefault(c.op_types[0], c)
    return list(seen.values())


@pytest.mark.parametrize("case", _one_case_per_op(), ids=[c.name for c in _one_case_per_op()])
def test_scripted_case(case: Case) -> None:
    inputs, expected = case.data_sets[0]
    _run_and_compare(case.load_model(), list(inputs), expected, case.rtol, case.atol, script=True)


_SCRIPT_MODEL = """
<ir_version: 9, opset_import: ["" : 20]>
g (float[2,3,4] x, int32[2,3,4] i, uint64[4] u, int64[1] axes) => (
    float[2,3,4] y, int32[2,3,4] q, bool[4] lt, uint64[4] d, int32[2,4] s, float[2,2,4] tv,
    int64[2,2,4] ti, float[2,3,4] w, float16[2,3,4] h, float[2,1,4] rm, int32[2,3,4] cs,
    int64[2,1,4] am, int64[2,3,4] sh
) {
    lo = Constant <value = float {-1.0}> ()
    hi = Constant <value = float {1.0}> ()
    seven = Constant <value = int32 {7}> ()
    k = Constant <value = int64[1] {2}> ()
    zero = Constant <value = float {0.0}> ()
    one = Constant <value = int64 {1}> ()
    x2 = Add (x, x)
    c = Clip (x2, lo, hi)
    y = Softmax <axis = 1> (c)
    ai = Abs (i)
    ai7 = Add (ai, seven)
    q = Div (i, ai7)
    um = Max (u, u)
    lt = Less (u, um)
    uu = Add (u, u)
    d = Div (u, uu)
    s = ReduceSum <keepdims = 0> (i, axes)
    tv, ti = TopK <axis = 1> (x, k)
    pos = Greater (x, zero)
    nx = Neg (x)
    w = Where (pos, x, nx)
    g = Gelu <approximate = "tanh"> (x)
    h = Cast <to = 10> (g)
    rm = ReduceMax (x, axes)
    cs = CumSum <exclusive = 1, reverse = 1> (i, one)
    rx = Round (x)
    am = ArgMax <axis = 1, select_last_index = 1> (rx)
    i64 = Cast <to = 7> (i)
    ai64 = Abs (i64)
    sh = BitShift <direction = "LEFT"> (i64, ai64)
}
"""


def test_scripted_module_matches_eager() -> None:
    graph = load(onnx.parser.parse_model(_SCRIPT_MODEL))
    gm = tb.compile(graph)
    scripted = torch.jit.script(gm)
    rng = np.random.default_rng(0)
    feed = [
        rng.standard_normal((2, 3, 4)).astype(np.float32) * 3,
        rng.integers(-50, 50, (2, 3, 4)).astype(np.int32),
        np.array([1, 2**63 + 5, 2**64 - 1, 7], dtype=np.uint64),
        np.array([1], dtype=np.int64),
    ]
    eager = tb.run(graph, feed, module=gm)
    script = tb.run(graph, feed, module=scripted)
    ref = ReferenceEvaluator(onnx.parser.parse_model(_SCRIPT_MODEL)).run(
        None, dict(zip(["x", "i", "u", "axes"], feed))
    )
    for e, s, r in zip(eager, script, ref):
        assert e.dtype == s.dtype == r.dtype
        np.testing.assert_array_equal(e, s)
        np.testing.assert_allclose(e.astype(np.float64), r.astype(np.float64), rtol=1e-3, atol=1e-6)


# -- edge cases against the ONNX reference evaluator ------------------------------------------

_F = np.float32
_U64 = np.array([0, 1, 7, 2**63 - 1, 2**63, 2**63 + 12345, 2**64 - 2, 2**64 - 1], dtype=np.uint64)


def _a(*shape: int) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=_F).reshape(shape)


# (id, opset, node text, input declarations, inputs)
EDGE = [
    (
        "div_u64_big",
        18,
        "y = Div(a, b)",
        "uint64[8] a, uint64[8] b",
        [_U64, np.array([3, 1, 2, 2**63 + 1, 5, 2**63, 2**64 - 1, 2**32 + 1], dtype=np.uint64)],
    ),
    (
        "mod_u64_big",
        18,
        "y = Mod(a, b)",
        "uint64[8] a, uint64[8] b",
        [_U64, np.array([3, 1, 2, 2**63 + 1, 5, 2**63, 2**64 - 1, 2**32 + 1], dtype=np.uint64)],
    ),
    ("less_u64_big", 18, "y = Less(a, b)", "uint64[8] a, uint64[8] b", [_U64, _U64[::-1].copy()]),
    ("min_u64_big", 18, "y = Min(a, b)", "uint64[8] a, uint64[8] b", [_U64, _U64[::-1].copy()]),
    (
        "shift_right_u64_big",
        18,
        'y = BitShift<direction="RIGHT">(a, b)',
        "uint64[8] a, uint64[8] b",
        [_U64, np.array([0, 1, 3, 63, 64, 1, 7, 62], dtype=np.uint64)],
    ),
    (
        "int_div_trunc",
        18,
        "y = Div(a, b)",
        "int32[4] a, int32[4] b",
        [np.array([7, -7, 7, -7], np.int32), np.array([2, 2, -2, -2], np.int32)],
    ),
    (
        "pow_int_float",
        18,
        "y = Pow(a, b)",
        "int32[3] a, float[3] b",
        [np.array([2, 3, 4], np.int32), np.array([2.0, 0.5, 3.0], _F)],
    ),
    ("clip_v6", 6, "y = Clip<min=-1.5, max=2.5>(x)", "float[2,3] x", [_a(2, 3) - 2]),
    (
        "clip_int_runtime_bounds",
        13,
        "y = Clip(x, lo, hi)",
        "int32[5] x, int32 lo, int32 hi",
        [np.arange(-2, 3, dtype=np.int32), np.array(-1, np.int32), np.array(1, np.int32)],
    ),
    (
        "cast_f8_nosat",
        19,
        "y = Cast<to=17, saturate=0>(x)",
        "float[6] x",
        [np.array([1.0, 460.0, 470.0, 1e6, -np.inf, np.nan], _F)],
    ),
    (
        "cast_f8_sat",
        19,
        "y = Cast<to=19>(x)",
        "float[5] x",
        [np.array([1.0, 6e4, 1e6, -np.inf, np.inf], _F)],
    ),
    (
        "topk_ties_smallest",
        11,
        "v, i = TopK<largest=0>(x, k)",
        "float[2,5] x, int64[1] k",
        [np.array([[1, 0, 1, 0, 1], [2, 2, 2, 2, 2]], _F), np.array([3], np.int64)],
    ),
    (
        "argmin_last",
        13,
        "y = ArgMin<axis=1, keepdims=0, select_last_index=1>(x)",
        "float[2,4] x",
        [np.array([[1, 0, 0, 2], [3, 3, 3, 3]], _F)],
    ),
    (
        "reduce_max_empty_static",
        13,
        "y = ReduceMax<axes=[1], keepdims=0>(x)",
        "int32[2,0,3] x",
        [np.zeros((2, 0, 3), np.int32)],
    ),
    (
        "reduce_max_empty_dynamic",
        13,
        "y = ReduceMax<axes=[1], keepdims=1>(x)",
        "float[N,0] x",
        [np.zeros((3, 0), _F)],
    ),
    (
        "reduce_min_empty_runtime",
        18,
        "y = ReduceMin<keepdims=1>(x, a)",
        "float[2,0] x, int64[1] a",
        [np.zeros((2, 0), _F), np.array([1], np.int64)],
    ),
    (
        "reduce_prod_int_axes",
        13,
        "y = ReduceProd<axes=[0,2]>(x)",
        "int32[2,3,2] x",
        [np.arange(1, 13, dtype=np.int32).reshape(2, 3, 2) % 5 + 1],
    ),
    (
        "reduce_sum_noop_v13",
        13,
        "y = ReduceSum<noop_with_empty_axes=1>(x)",
        "float[2,3] x",
        [_a(2, 3)],
    ),
    (
        "reduce_l2_int",
        18,
        "y = ReduceL2<keepdims=0>(x, a)",
        "int64[2,3] x, int64[1] a",
        [np.array([[3, 4, 0], [1, 1, 1]], np.int64), np.array([1], np.int64)],
    ),
    (
        "cumprod_exclusive_int",
        26,
        "y = CumProd<exclusive=1>(x, a)",
        "int32[2,3] x, int32 a",
        [np.array([[1, 2, 3], [4, 5, 6]], np.int32), np.array(1, np.int32)],
    ),
    (
        "unique_unsorted_axis",
        11,
        "y, i, r, c = Unique<sorted=0, axis=0>(x)",
        "float[4,2] x",
        [np.array([[2, 1], [0, 1], [2, 1], [0, 0]], _F)],
    ),
    ("nonzero", 13, "y = NonZero(x)", "float[2,3] x", [np.array([[0, 1, 0], [2, 0, 3]], _F)]),
    (
        "det_batch",
        11,
        "y = Det(x)",
        "float[2,2,2] x",
        [np.array([[[1, 2], [3, 4]], [[2, 0], [0, 2]]], _F)],
    ),
    (
        "isinf_neither",
        10,
        "y = IsInf<detect_positive=0, detect_negative=0>(x)",
        "float[2] x",
        [np.array([np.inf, 1], _F)],
    ),
    (
        "shrink_bias",
        9,
        "y = Shrink<lambd=1.0, bias=0.5>(x)",
        "float[5] x",
        [np.array([-2, -1, 0, 1, 2], _F)],
    ),
    (
        "bitcast_f16_bf16",
        26,
        "y = BitCast<to=16>(x)",
        "float16[3] x",
        [np.array([1.0, -2.5, 0.0], np.float16)],
    ),
]


def _edge_model(opset: int, node: str, decl: str, ir_version: int = 10) -> onnx.ModelProto:
    """A one-node model with inferred output types."""
    outs = node.split("=")[0].replace(" ", "").split(",")
    text = (
        f'<ir_version: {ir_version}, opset_import: ["" : {opset}]>\n'
        f"g ({decl}) => ({', '.join(outs)}) {{ {node} }}"
    )
    return onnx.shape_inference.infer_shapes(onnx.parser.parse_model(text))


@pytest.mark.parametrize(
    ("opset", "node", "decl", "inputs"), [e[1:] for e in EDGE], ids=[e[0] for e in EDGE]
)
def test_edge_case_matches_reference(opset: int, node: str, decl: str, inputs: list) -> None:
    model = _edge_model(opset, node, decl)
    expected = ReferenceEvaluator(model).run(
        None, dict(zip([i.name for i in model.graph.input], inputs))
    )
    for script in (False, True):
        if "BitCast" in node and script:
            continue  # BitCast between float kinds calls back into Python when scripted
        _run_and_compare(model, list(inputs), expected, 1e-5, 1e-6, script=script)


# Before opset 13 Softmax, LogSoftmax and Hardmax coerce the input to 2-D at ``axis``; the
# ONNX reference evaluator applies the opset-13 (single axis) semantics, onnxruntime does not.
OLD_SOFTMAX = [
    ("softmax_v11_axis1", 11, "y = Softmax<axis=1>(x)", "float[2,3,4] x", [_a(2, 3, 4) / 7]),
    ("logsoftmax_v11_axis0", 11, "y = LogSoftmax<axis=0>(x)", "float[2,3] x", [_a(2, 3) / 5]),
    (
        "hardmax_v11",
        11,
        "y = Hardmax<axis=1>(x)",
        "float[2,2,2] x",
        [np.array([[[1, 3], [3, 0]], [[0, 0], [0, 0]]], _F)],
    ),
]


@pytest.mark.parametrize(
    ("opset", "node", "decl", "inputs"),
    [e[1:] for e in OLD_SOFTMAX],
    ids=[e[0] for e in OLD_SOFTMAX],
)
def test_old_softmax_matches_onnxruntime(opset: int, node: str, decl: str, inputs: list) -> None:
    import onnxruntime as ort

    model = _edge_model(opset, node, decl, ir_version=7)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": inputs[0]})
    _run_and_compare(model, list(inputs), expected, 1e-5, 1e-6, script=True)


def test_intermediate_dtype_is_inferred() -> None:
    # No value_info: the ReduceSum input's int32 dtype is followed through Abs and Cast.
    model = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 13]>\n'
        "g (float[2,3] x) => (int32[2] y) { a = Constant<value = int64[1] {1}>()\n"
        "c = Cast<to=6>(x)\n b = Abs(c)\n y = ReduceSum<keepdims=0>(b, a) }"
    )
    gm = tb.compile(load(model))
    assert "dtype = torch.int32" in gm.code and "getattr" not in gm.code
    out = tb.run(load(model), [np.array([[1.5, -2, 3], [4, 5, -6]], _F)])[0]
    assert out.dtype == np.int32 and out.tolist() == [6, 15]
