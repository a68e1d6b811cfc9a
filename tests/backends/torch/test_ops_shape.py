"""Torch-backend lowerings of shape and index ops (ops/shape*.py, ops/index*.py).

Checks the ONNX node conformance cases of these ops, the same single-node cases with their
shape-like inputs turned into initializers (the static-list path), edge cases against the ONNX
reference evaluator with constant, run-time and rank-unknown inputs, TorchScript scripting, and
that constant shapes appear as plain lists in the generated code.
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
    compare,
    neffkit_torch_runner,
    plain_node_cases,
    run_case,
)
from neffkit.testing.onnx_cases import Case

SHAPE_OPS = (
    "Shape Size Reshape Flatten Squeeze Unsqueeze Transpose Concat Split Slice Expand Tile Pad "
    "ConstantOfShape Range EyeLike Trilu CenterCropPad ReverseSequence Compress"
).split()
INDEX_OPS = (
    "Gather GatherElements GatherND Scatter ScatterElements ScatterND OneHot NonMaxSuppression "
    "RoiAlign TensorScatter"
).split()
OPS = SHAPE_OPS + INDEX_OPS

# Cases that fail for reasons outside these lowerings (names of conformance cases).
KNOWN_FAILURES: dict[str, str] = {
    name: "half-precision Softmax/MatMul rounding, not a shape op"
    for name in HALF_PRECISION_SOFTMAX_CASES
}

# In the "constant inputs" variants, these ops get all their inputs as initializers; the
# others keep their first (data) input and get the rest as initializers.
_ALL_CONST = {"ConstantOfShape", "Range"}


@functools.cache
def _cases() -> tuple[Case, ...]:
    """Plain cases using one of OPS whose ops all have a lowering already."""
    out = []
    for c in plain_node_cases(OPS, torch_dtypes=True):
        if all(lookup("", op) is not None for op in c.op_types):
            out.append(c)
    return tuple(out)


def _single_node_cases() -> list[Case]:
    return [c for c in _cases() if len(c.op_types) == 1 and c.op_types[0] in OPS]


def _case_ids() -> list[str]:
    return [c.name for c in _cases()]


@pytest.mark.parametrize("case", _cases(), ids=_case_ids())
def test_conformance(case: Case) -> None:
    outcome = run_case(case, neffkit_torch_runner)
    if case.name in KNOWN_FAILURES:
        if outcome.status != "passed":
            pytest.xfail(KNOWN_FAILURES[case.name])
        return
    assert outcome.status == "passed", f"{case.name}: {outcome.message}"


def test_every_op_is_lowered() -> None:
    missing = [op for op in OPS if lookup("", op) is None]
    assert not missing


@pytest.mark.parametrize(
    "op",
    "Transpose Reshape Flatten Squeeze Unsqueeze Concat Split Slice Gather GatherElements "
    "Expand Tile Pad Shape Size ConstantOfShape Range".split(),
)
def test_required_op_has_cases(op: str) -> None:
    # The issue requires every case of these ops to pass; test_conformance checks each one.
    assert any(op in c.op_types for c in _cases())


# -- the static path: conformance data with shape-like inputs as initializers -----------------


def _constified(case: Case, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, list]:
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


@pytest.mark.parametrize("case", _single_node_cases(), ids=[c.name for c in _single_node_cases()])
def test_conformance_with_constant_inputs(case: Case) -> None:
    for inputs, expected in case.data_sets:
        m, feed = _constified(case, inputs)
        _run_and_compare(m, feed, expected, case.rtol, case.atol, script=False)


def _one_case_per_op() -> list[Case]:
    seen: dict[str, Case] = {}
    for c in _single_node_cases():
        seen.setdefault(c.op_types[0], c)
    return list(seen.values())


@pytest.mark.parametrize("case", _one_case_per_op(), ids=[c.name for c in _one_case_per_op()])
@pytest.mark.parametrize("const", [False, True], ids=["runtime", "constant"])
def test_scripted(case: Case, const: bool) -> None:
    inputs, expected = case.data_sets[0]
    if const:
        m, feed = _constified(case, inputs)
    else:
        m, feed = case.load_model(), list(inputs)
    _run_and_compare(m, feed, expected, case.rtol, case.atol, script=True)


# -- edge cases against the ONNX reference evaluator ------------------------------------------

_MAX = np.iinfo(np.int64).max
_MIN = np.iinfo(np.int64).min
_F = np.float32


def _a(*shape: int) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=_F).reshape(shape)


def _i(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def _s(v: int) -> np.ndarray:
    return np.array(v, dtype=np.int32)


def _f(v: float) -> np.ndarray:
    return np.array(v, dtype=_F)


def _ones(*shape: int) -> np.ndarray:
    return np.ones(shape, dtype=_F)


# (id, opset, node, inputs): the node's inputs are declared from the arrays fed to them, its
# outputs are those left of "=" ("y" when the node has no "="); the first input is the data.
EDGE = [
    ("reshape_zero", 14, "Reshape(x, s)", [_a(2, 3, 4), _i(0, -1, 2)]),
    ("reshape_allowzero", 14, "Reshape<allowzero=1>(x, s)", [_a(0, 3), _i(3, 0)]),
    ("reshape_v1", 1, "Reshape<shape=[0,-1]>(x)", [_a(2, 3, 4)]),
    ("flatten_neg", 13, "Flatten<axis=-2>(x)", [_a(2, 3, 4, 5)]),
    ("flatten_0", 13, "Flatten<axis=0>(x)", [_a(2, 3, 4)]),
    ("flatten_rank", 13, "Flatten<axis=3>(x)", [_a(2, 3, 4)]),
    ("flatten_1d", 13, "Flatten(x)", [_a(5)]),
    ("squeeze_all", 13, "Squeeze(x)", [_a(1, 3, 1, 2)]),
    ("squeeze_v11", 11, "Squeeze<axes=[-2]>(x)", [_a(1, 3, 1, 2)]),
    ("unsqueeze_v11", 11, "Unsqueeze<axes=[0,-1]>(x)", [_a(3, 2)]),
    ("unsqueeze_neg", 13, "Unsqueeze(x, a)", [_a(3, 2), _i(-1, -3)]),
    ("unsqueeze_mixed", 13, "Unsqueeze(x, a)", [_a(3, 2), _i(2, -3)]),
    ("transpose_default", 13, "Transpose(x)", [_a(2, 3, 4)]),
    ("concat_empty", 13, "Concat<axis=-1>(x, z)", [_a(2, 0), _a(2, 3)]),
    ("split_uneven", 18, "a, b, c = Split<num_outputs=3, axis=-1>(x)", [_a(2, 7)]),
    ("split_zero_tail", 18, "a, b, c = Split<num_outputs=3>(x)", [_a(4)]),
    ("split_v11", 11, "a, b = Split<split=[1,3]>(x)", [_a(4, 2)]),
    ("split_v13_even", 13, "a, b = Split<axis=1>(x)", [_a(2, 6)]),
    ("slice_v1", 1, "Slice<starts=[1,-100], ends=[1000,-1], axes=[1,0]>(x)", [_a(3, 4)]),
    ("slice_rev_all", 13, "Slice(x, s, e, a, t)", [_a(3, 5), _i(-1), _i(_MIN), _i(-1), _i(-1)]),
    ("slice_rev_step", 13, "Slice(x, s, e, a, t)",
     [_a(3, 7), _i(_MAX, 2), _i(0, -100), _i(1, 0), _i(-2, -1)]),
    ("slice_step3", 13, "Slice(x, s, e, a, t)", [_a(3, 8), _i(2), _i(_MAX), _i(-1), _i(3)]),
    ("slice_empty_rev", 13, "Slice(x, s, e, a, t)", [_a(6), _i(1), _i(4), _i(0), _i(-1)]),
    ("slice_no_axes", 13, "Slice(x, s, e)", [_a(4, 4), _i(1, -3), _i(-1, _MAX)]),
    ("slice_mixed_axes", 13, "Slice(x, s, e, a)", [_a(4, 5), _i(1, -2), _i(3, 5), _i(0, -1)]),
    ("expand_both", 13, "Expand(x, s)", [_a(3, 1), _i(2, 1, 6)]),
    ("expand_smaller", 13, "Expand(x, s)", [_a(2, 3), _i(1)]),
    ("tile", 13, "Tile(x, r)", [_a(2, 3), _i(2, 1)]),
    ("pad_v2_reflect", 2, 'Pad<pads=[0,2,0,1], mode="reflect">(x)', [_a(2, 4)]),
    ("pad_v2_value", 2, "Pad<pads=[1,0,0,1], value=7.0>(x)", [_a(2, 3)]),
    ("pad_int_value", 13, "Pad(x, p, v)", [_a(2, 3).astype(np.int32), _i(1, -1, 0, 2), _s(5)]),
    ("pad_neg_edge", 13, 'Pad<mode="edge">(x, p)', [_a(3, 4), _i(2, -1, -1, 3)]),
    ("pad_wrap_big", 13, 'Pad<mode="wrap">(x, p)', [_a(2, 3), _i(0, 4, 1, 5)]),
    ("pad_reflect_3d", 13, 'Pad<mode="reflect">(x, p)', [_a(3, 3, 3), _i(1, 0, 2, 2, 1, 0)]),
    ("pad_axes", 18, 'Pad<mode="edge">(x, p, , a)', [_a(2, 3, 4), _i(1, 2), _i(-2)]),
    ("constantofshape_scalar", 20, "ConstantOfShape<value=int64[1] {7}>(s)", [_i()]),
    ("constantofshape_default", 20, "ConstantOfShape(s)", [_i(2, 3)]),
    ("range_int_neg", 11, "Range(a, b, c)", [_s(10), _s(-3), _s(-4)]),
    ("range_float", 11, "Range(a, b, c)", [_f(0.5), _f(2.7), _f(0.3)]),
    ("range_empty", 11, "Range(a, b, c)", [np.array(5), np.array(1), np.array(1)]),
    ("eyelike", 22, "EyeLike<k=-1, dtype=7>(x)", [_a(3, 5)]),
    ("trilu_k", 14, "Trilu<upper=0>(x, k)", [_a(2, 4, 5), np.array(-1)]),
    ("gather_neg", 13, "Gather<axis=1>(x, i)", [_a(3, 4), np.array([[0, -1], [-4, 2]])]),
    ("gather_scalar", 13, "Gather<axis=-1>(x, i)", [_a(3, 4), np.array(-2)]),
    ("gather_1d", 13, "Gather(x, i)", [_a(3, 4), _i(2, 0)]),
    ("gather_elements", 13, "GatherElements<axis=-1>(x, i)",
     [_a(2, 3), np.array([[-1, 0, 1], [2, -2, -3]])]),
    ("gathernd_b1", 13, "GatherND<batch_dims=1>(x, i)",
     [_a(2, 3, 4), np.array([[[1], [-1]], [[0], [2]]])]),
    ("gathernd_k2", 13, "GatherND(x, i)", [_a(3, 4, 2), np.array([[0, 1], [2, -1]])]),
    ("scatter_v10", 10, "Scatter<axis=-1>(x, i, u)", [_a(2, 3), _i(-1, 0)[:, None], _ones(2, 1)]),
    ("scatter_elements_add", 18, 'ScatterElements<axis=0, reduction="add">(x, i, u)',
     [_a(3, 2), np.array([[-1, 0], [2, 0]]), _ones(2, 2)]),
    ("scatternd_add", 18, 'ScatterND<reduction="add">(x, i, u)',
     [_a(4, 2), np.array([[1], [1], [-1]]), _ones(3, 2)]),
    ("onehot", 11, "OneHot<axis=0>(i, d, v)",
     [np.array([[0, -1], [5, 2]]), _f(3.0), np.array([-1.0, 4.0], _F)]),
    ("compress_flat", 11, "Compress(x, c)", [_a(2, 3), np.array([False, True, False, True])]),
    ("shape_slice", 21, "Shape<start=-3, end=-1>(x)", [_a(2, 3, 4, 5)]),
    ("center_crop_pad", 18, "CenterCropPad<axes=[-1, 0]>(x, s)", [_a(5, 4), _i(7, 2)]),
]  # fmt: skip

# Where the reference evaluator lacks the op version or rejects the case: the expected outputs.
_EXPECTED = {
    "reshape_v1": [_a(2, 3, 4).reshape(2, 12)],
    "scatter_v10": [np.array([[0, 1, 1], [1, 4, 5]], _F)],
    # numpy.pad (the reference) rejects negative pads; they crop.
    "pad_int_value": [np.pad(_a(2, 3)[:, 1:], ((1, 0), (0, 2)), constant_values=5).astype("i4")],
    "pad_neg_edge": [np.pad(_a(3, 4)[:-1, 1:], ((2, 0), (0, 3)), mode="edge")],
}

_TYPES = {"float32": "float", "int64": "int64", "int32": "int32", "bool": "bool"}


def _edge_model(opset: int, node: str, inputs: list[np.ndarray]) -> onnx.ModelProto:
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


@pytest.mark.parametrize("how", ["runtime", "constant", "unranked"])
@pytest.mark.parametrize("name, opset, node, inputs", EDGE, ids=[e[0] for e in EDGE])
def test_edge_cases(name: str, opset: int, node: str, inputs: list, how: str) -> None:
    model = _edge_model(opset, node, inputs)
    feeds = {vi.name: x for vi, x in zip(model.graph.input, inputs)}
    expected = _EXPECTED.get(name) or ReferenceEvaluator(model).run(None, feeds)
    m, feed = _variant(model, inputs, how)
    _run_and_compare(m, feed, list(expected), 1e-5, 1e-6, script=how != "runtime")


# -- run-time shapes, scripting and readable code ----------------------------------------------

_DYNAMIC_RESHAPE = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 3, 4] x) => (float[N, 12] y) {
    s = Shape(x)
    zero = Constant<value = int64 {0}>()
    n = Gather<axis = 0>(s, zero)
    axes = Constant<value = int64[1] {0}>()
    n1 = Unsqueeze(n, axes)
    rest = Constant<value = int64[1] {-1}>()
    target = Concat<axis = 0>(n1, rest)
    y = Reshape(x, target)
}
"""


def _dynamic_reshape_model() -> onnx.ModelProto:
    return onnx.parser.parse_model(_DYNAMIC_RESHAPE)


def test_runtime_shape_reshape_runs_and_scripts() -> None:
    g = load(_dynamic_reshape_model())
    gm = tb.compile(g)
    scripted = torch.jit.script(gm)
    for n in (1, 5):
        x = torch.randn(n, 3, 4)
        want = x.reshape(n, 12)
        assert torch.equal(gm(x)[0], want)
        assert torch.equal(scripted(x)[0], want)


_STATIC_MODEL = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[1, 150528] x) => (y, z, w) {
    s = Constant<value = int64[4] {1, 3, 224, 224}>()
    y = Reshape(x, s)
    starts = Constant<value = int64[1] {1}>()
    ends = Constant<value = int64[1] {3}>()
    axes = Constant<value = int64[1] {-1}>()
    z = Slice(y, starts, ends, axes)
    p = Constant<value = int64[8] {0, 0, 1, 1, 0, 0, 1, 1}>()
    w = Pad(y, p)
}
"""


def test_constant_shapes_emit_static_lists() -> None:
    gm = tb.compile(load(onnx.parser.parse_model(_STATIC_MODEL)))
    code = gm.code
    assert ".reshape([1, 3, 224, 224])" in code
    assert "slice(1, 3, None)" in code
    assert "pad(" in code and "[1, 1, 1, 1]" in code
    assert "int_list" not in code and "slice_dynamic" not in code
    x = torch.randn(1, 150528)
    y, z, w = torch.jit.script(gm)(x)
    assert torch.equal(y, x.reshape(1, 3, 224, 224))
    assert torch.equal(z, y[..., 1:3])
    assert w.shape == (1, 3, 226, 226)


def test_runtime_shape_uses_helper() -> None:
    code = tb.compile(load(_dynamic_reshape_model())).code
    assert "int_list" in code
