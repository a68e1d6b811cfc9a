"""neffkit.verify's default input sets (symbolic dims 3 and 7, the size-1 fallback, dims=)
and its comparison of sequence and optional outputs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.parser
import pytest

from neffkit.errors import NeffkitError
from neffkit.testing.text import model_text
from neffkit.verify import DEFAULT_DIM_SIZES, compare, verify


def _model(sig: str, body: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(model_text(f"g {sig} {{\n{body}\n}}", opset=18))


_SIG = "(float[batch, seq] x) => (float[batch, 1] y)"
#: The mean over the sequence ...
MEAN = _model(
    _SIG, "axes = Constant<value = int64[1] {1}>()\ny = ReduceMean<keepdims = 1>(x, axes)"
)
#: ... and a "rewrite" that is right only when the sequence has one element.
FIRST = _model(
    _SIG,
    "s = Constant<value = int64[1] {0}>()\ne = Constant<value = int64[1] {1}>()\n"
    "a = Constant<value = int64[1] {1}>()\ny = Slice(x, s, e, a)",
)


def test_the_default_sets_vary_the_symbolic_dims() -> None:
    assert DEFAULT_DIM_SIZES == (3, 7)
    report = verify(MEAN, MEAN)
    assert report.ok and report.input_sets == 2
    assert [s.dims for s in report.sets] == [{"batch": 3, "seq": 3}, {"batch": 7, "seq": 7}]
    assert [s.seed for s in report.sets] == [0, 1]
    text = str(report)
    assert "set 0: random seed 0, dims batch=3,seq=3: ok" in text
    assert "set 1: random seed 1, dims batch=7,seq=7: ok" in text
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["sets"][1]["dims"] == {"batch": 7, "seq": 7} and d["sets"][1]["ok"] is True


def test_a_bug_that_shows_only_at_sequence_length_above_1_is_caught() -> None:
    at_one = {"x": np.random.default_rng(0).standard_normal((1, 1)).astype(np.float32)}
    assert verify(MEAN, FIRST, at_one).ok  # what every check at size 1 saw
    report = verify(MEAN, FIRST)
    assert not report.ok
    assert [s.ok for s in report.sets] == [False, False]
    assert report.sets[0].failures == ["y"]
    assert "FAIL (y)" in str(report)


def test_dims_fix_chosen_sizes_and_the_others_still_vary() -> None:
    report = verify(MEAN, MEAN, dims={"seq": 1})
    assert [s.dims for s in report.sets] == [{"batch": 3, "seq": 1}, {"batch": 7, "seq": 1}]
    assert verify(MEAN, FIRST, dims={"seq": 1}).ok  # the user asked for sequence length 1
    with pytest.raises(NeffkitError, match="no dim named 'sq'"):
        verify(MEAN, MEAN, dims={"sq": 2})
    with pytest.raises(NeffkitError, match="cannot be combined with given inputs"):
        verify(MEAN, MEAN, {"x": np.zeros((1, 1), np.float32)}, dims={"seq": 2})


def test_a_size_the_model_fixes_falls_back_to_1_and_the_report_says_so() -> None:
    # x + w needs n = 4 or 1 (w is float[4]): sizes 3 and 7 cannot run on onnxruntime
    fixed = _model(
        "(float[batch, n] x) => (float[batch, ?] y)",
        "w = Constant<value = float[4] {1.0, 2.0, 3.0, 4.0}>()\ny = Add(x, w)",
    )
    report = verify(fixed, fixed)
    assert report.ok
    # only n falls back; batch still varies
    assert [s.dims for s in report.sets] == [{"batch": 3, "n": 1}, {"batch": 7, "n": 1}]
    note = report.sets[0].note
    assert "cannot run the reference with batch=3,n=3" in note
    assert note.endswith("this set uses size 1 for n")
    assert "broadcast" in note and "onnxruntime_src" not in note  # the gist of the error
    assert "note: onnxruntime cannot run the reference" in str(report)
    assert report.to_dict()["sets"][0]["note"] == note
    # sizes the user gives are not replaced: the error is theirs to see
    with pytest.raises(NeffkitError, match="onnxruntime failed"):
        verify(fixed, fixed, dims={"n": 3})
    assert verify(fixed, fixed, dims={"n": 4}).sets[0].dims == {"batch": 3, "n": 4}


def test_when_no_single_dim_helps_every_chosen_dim_falls_back() -> None:
    # a Reshape to [1, 1] needs a * b == 1
    one = _model(
        "(float[a, b] x) => (float[1, 1] y)",
        "s = Constant<value = int64[2] {1, 1}>()\ny = Reshape(x, s)",
    )
    report = verify(one, one)
    assert report.ok
    assert [s.dims for s in report.sets] == [{"a": 1, "b": 1}, {"a": 1, "b": 1}]
    assert report.sets[1].note.endswith("this set uses size 1 for a, b")


def test_unnamed_dims_get_one_consistent_size() -> None:
    add = _model("(float[?, 2] a, float[?, 2] b) => (float[?, 2] y)", "y = Add(a, b)")
    report = verify(add, add)
    assert report.ok and [s.dims for s in report.sets] == [{"?": 3}, {"?": 7}]


# -- sequences and optionals ----------------------------------------------------------------

_SEQ = "(float[batch, 4] x) => (seq(float) s)"


def _split(body_extra: str = "", split: str = "x") -> onnx.ModelProto:
    return _model(_SEQ, f"{body_extra}s = SplitToSequence<axis = 1, keepdims = 0>({split})")


def test_a_sequence_output_agrees_with_itself() -> None:
    report = verify(_split(), _split())
    assert report.ok, report.summary()
    s = report.outputs[0]
    assert (s.reference_shape, s.reference_dtype) == ((4,), "seq(float32)")
    assert s.elements == 4 * 3 + 4 * 7  # four elements of batch 3, then of batch 7


def test_a_sequence_element_that_differs_fails() -> None:
    other = _split("z = Relu(x)\n", "z")
    report = verify(_split(), other)
    assert not report.ok
    s = report.outputs[0]
    assert s.mismatches > 0 and s.max_abs_error is not None and s.max_abs_error > 0


def test_sequences_of_different_length_fail_with_a_note() -> None:
    shorter = _model(
        _SEQ,
        "k0 = Constant<value = int64[1] {0}>()\nk3 = Constant<value = int64[1] {3}>()\n"
        "k1 = Constant<value = int64[1] {1}>()\nh = Slice(x, k0, k3, k1)\n"
        "s = SplitToSequence<axis = 1, keepdims = 0>(h)",
    )
    report = verify(_split(), shorter, backend="onnxruntime")
    assert not report.ok
    assert "a sequence of 3 elements, the reference's has 4" in report.summary()


def test_compare_sequences_and_optionals_directly() -> None:
    a = [np.ones(2, np.float32), np.zeros(3, np.float32)]
    assert compare(a, [x.copy() for x in a]).ok
    off = compare(a, [np.ones(2, np.float32), np.full(3, 0.5, np.float32)])
    assert not off.ok and off.mismatches == 3 and off.max_abs_error == 0.5
    shape = compare(a, [np.ones(2, np.float32), np.zeros(4, np.float32)])
    assert not shape.ok and shape.note.startswith("element 1: shape [4] != reference [3]")
    assert not compare(a, np.ones(2, np.float32)).ok  # a sequence on one side only
    assert compare([], []).ok
    assert compare(None, None).ok
    assert "the candidate's optional is empty" in compare(a[0], None).note
    assert "the reference's optional is empty" in compare(None, a[0]).note
    assert compare(a[0], a[0].copy()).ok


def test_sequence_inputs_get_set_size_elements_and_loops_carry_them() -> None:
    from neffkit.api import random_inputs
    from neffkit.testing.onnx_cases import sequence_cases

    m = _model(
        "(seq(float[n]) s, float[n] x) => (seq(float) t, int64 k)",
        "t = SequenceInsert(s, x)\nk = SequenceLength(t)",
    )
    feeds = random_inputs(m, 0, default_size=3)
    assert len(feeds["s"]) == 3 and all(e.shape == (3,) for e in feeds["s"])
    report = verify(m, m)
    assert report.ok, report.summary()
    assert [o.reference_dtype for o in report.outputs] == ["seq(float32)", "int64"]
    # a Loop carrying a sequence (onnx's own test model), checked on both sets
    loop = next(c for c in sequence_cases() if c.name == "test_loop13_seq").load_model()
    assert verify(loop, loop).ok
