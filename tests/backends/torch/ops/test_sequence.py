"""Torch-backend lowerings of the Sequence and Optional ops (ops/sequence.py).

Every onnx node / simple-model case that names sequences or optionals runs against its
recorded outputs; edge cases (positions, split forms, new_axis) run against onnxruntime;
modules without sequence-carrying control flow must script.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
import torch

import neffkit.backends.torch as tb
from neffkit.frontends.onnx import load
from neffkit.testing.conformance import compare_value, neffkit_torch_runner, run_case
from neffkit.testing.onnx_cases import Case, sequence_cases

_CASES = sequence_cases()
_CONTROL_FLOW = ("Loop", "If")


def test_the_sequence_cases_are_all_there() -> None:
    names = {c.name for c in _CASES}
    assert len(_CASES) >= 45
    for want in ("test_if_seq", "test_loop13_seq", "simple/test_sequence_model1"):
        assert want in names


@pytest.mark.parametrize("case", _CASES, ids=[c.name for c in _CASES])
def test_sequence_case_matches_recorded_outputs(case: Case) -> None:
    outcome = run_case(case, neffkit_torch_runner)
    assert outcome.status == "passed", f"{case.name}: {outcome.message}"


def _uses_control_flow(case: Case) -> bool:
    return any(n.op_type in _CONTROL_FLOW for n in case.load_model().graph.node)


_SCRIPTABLE = [c for c in _CASES if not _uses_control_flow(c)]


@pytest.mark.parametrize("case", _SCRIPTABLE, ids=[c.name for c in _SCRIPTABLE])
def test_sequence_case_scripts_and_the_scripted_module_agrees(case: Case) -> None:
    graph = load(case.load_model())
    scripted = torch.jit.script(tb.compile(graph))
    inputs, expected = case.data_sets[0]
    args = tb.prepare_inputs(graph, inputs)
    with torch.no_grad():
        outs = scripted(*args)
    got = [tb._to_numpy_value(o, v.dtype) for o, v in zip(outs, graph.outputs)]
    for e, g in zip(expected, got):
        assert compare_value(e, g, case.rtol, case.atol) == ""


# -- edge cases against onnxruntime -----------------------------------------------


def _model(text: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(text)


def _reference(model: onnx.ModelProto, feeds: dict[str, object]) -> list:
    """onnxruntime's outputs (the ONNX reference evaluator wraps an insert at position
    len(sequence) to the front, against the spec)."""
    import onnxruntime

    sess = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, feeds)


def _check(model: onnx.ModelProto, feeds: dict[str, object]) -> None:
    want = _reference(model, feeds)
    graph = load(model)
    got = tb.run(graph, feeds)
    assert len(got) == len(want)
    for w, g in zip(want, got):
        assert compare_value(w, g, 1e-6, 1e-6) == "", (w, g)
    torch.jit.script(tb.compile(graph))  # every edge model here must script


_HEAD = '<ir_version: 8, opset_import: ["" : 18]>\n'


@pytest.mark.parametrize("pos", [None, 0, 1, 2, -1, -2])
def test_sequence_insert_at_positions(pos: int | None) -> None:
    call = "SequenceInsert(s, z)" if pos is None else "SequenceInsert(s, z, p)"
    model = _model(
        _HEAD + "g (float[2] x, float[2] y, float[2] z, int64 p) => (float[3,2] out, int64 n) {\n"
        "  s = SequenceConstruct(x, y)\n"
        f"  t = {call}\n"
        "  out = ConcatFromSequence<axis = 0, new_axis = 1>(t)\n"
        "  n = SequenceLength(t)\n"
        "}"
    )
    feeds = {
        "x": np.array([1, 2], np.float32),
        "y": np.array([3, 4], np.float32),
        "z": np.array([5, 6], np.float32),
        "p": np.array(0 if pos is None else pos, np.int64),
    }
    _check(model, feeds)


@pytest.mark.parametrize("erase", ["SequenceErase(s)", "SequenceErase(s, p)"])
@pytest.mark.parametrize("pos", [0, -1, -3, 2])
def test_sequence_erase_and_at(erase: str, pos: int) -> None:
    model = _model(
        _HEAD + "g (float[2] x, float[2] y, float[2] z, int64 p, int64 q) => (float[2] out) {\n"
        "  s = SequenceConstruct(x, y, z)\n"
        f"  t = {erase}\n"
        "  out = SequenceAt(t, q)\n"
        "}"
    )
    feeds = {
        "x": np.array([1, 2], np.float32),
        "y": np.array([3, 4], np.float32),
        "z": np.array([5, 6], np.float32),
        "p": np.array(pos, np.int64),
        "q": np.array(-1, np.int64),
    }
    _check(model, feeds)


def test_sequence_at_out_of_range_is_an_error() -> None:
    model = _model(
        _HEAD + "g (float[2] x, int64 p) => (float[2] out) {\n"
        "  s = SequenceConstruct(x)\n"
        "  out = SequenceAt(s, p)\n"
        "}"
    )
    with pytest.raises(Exception, match="out of range"):
        tb.run(load(model), {"x": np.zeros(2, np.float32), "p": np.array(3, np.int64)})


@pytest.mark.parametrize(
    ("split", "keepdims", "axis"),
    [
        (None, 1, 0),
        (None, 0, 1),
        (None, 0, -1),
        (np.array(2, np.int64), 1, 1),
        (np.array(4, np.int64), 1, 1),
        (np.array([1, 3], np.int64), 1, 1),
        (np.array([2, 1, 1], np.int64), 0, -1),
    ],
)
def test_split_to_sequence_forms(split: np.ndarray | None, keepdims: int, axis: int) -> None:
    args = "x" if split is None else "x, sp"
    sp_in = "" if split is None else (", int64 sp" if split.ndim == 0 else ", int64[N] sp")
    # size-1 chunks without keepdims lost the axis: stack them on a new one instead
    new_axis = int(split is None and keepdims == 0)
    model = _model(
        _HEAD + f"g (float[3,4] x{sp_in}) => (float[?] cat, int64 n) {{\n"
        f"  s = SplitToSequence<axis = {axis}, keepdims = {keepdims}>({args})\n"
        "  n = SequenceLength(s)\n"
        f"  cat = ConcatFromSequence<axis = {axis}, new_axis = {new_axis}>(s)\n"
        "}"
    )
    feeds: dict[str, object] = {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}
    if split is not None:
        feeds["sp"] = split
    _check(model, feeds)
    # the sequence itself, element by element
    model.graph.output[0].name = "s"
    del model.graph.output[0].type.tensor_type.shape.dim[:]
    model.graph.output[0].type.CopyFrom(
        onnx.helper.make_sequence_type_proto(onnx.helper.make_tensor_type_proto(1, None))
    )
    del model.graph.node[2]
    _check(model, feeds)


@pytest.mark.parametrize("new_axis", [0, 1])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_from_sequence(new_axis: int, axis: int) -> None:
    model = _model(
        _HEAD + "g (float[2,3] x, float[2,3] y) => (float[?] out) {\n"
        "  s = SequenceConstruct(x, y)\n"
        f"  out = ConcatFromSequence<axis = {axis}, new_axis = {new_axis}>(s)\n"
        "}"
    )
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((2, 3)).astype(np.float32) for n in ("x", "y")}
    _check(model, feeds)


def test_sequence_empty_then_insert() -> None:
    model = _model(
        _HEAD + "g (float[2] x) => (int64 n, float[2] first) {\n"
        "  e = SequenceEmpty<dtype = 1>()\n"
        "  s = SequenceInsert(e, x)\n"
        "  n = SequenceLength(s)\n"
        "  zero = Constant<value = int64 {0}>()\n"
        "  first = SequenceAt(s, zero)\n"
        "}"
    )
    _check(model, {"x": np.array([1, 2], np.float32)})


def test_a_sequence_read_twice_is_not_changed_by_an_insert() -> None:
    model = _model(
        _HEAD + "g (float[2] x, float[2] y) => (int64 a, int64 b) {\n"
        "  s = SequenceConstruct(x)\n"
        "  t = SequenceInsert(s, y)\n"
        "  a = SequenceLength(s)\n"
        "  b = SequenceLength(t)\n"
        "}"
    )
    got = tb.run(load(model), {"x": np.zeros(2, np.float32), "y": np.ones(2, np.float32)})
    assert int(got[0]) == 1 and int(got[1]) == 2
