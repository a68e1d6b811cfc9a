"""``partition-unroll``: partitions chained by If gates, exact for every output length,
marked for backends, and kept through save/load; bad boundaries are refused."""

from __future__ import annotations

import numpy as np
import pytest

from neffkit.errors import NeffkitError
from neffkit.execution import Runner
from neffkit.ir.serde import decode_model, to_onnx
from neffkit.ir.text import parse
from neffkit.ir.verifier import verify
from neffkit.passes import PassContext, parse_pipeline
from neffkit.passes._unroll_steps import GATE_MARK, PARTITION_MARK
from neffkit.testing import check_pass, check_rewrite

H = '<ir_version: 8, opset_import: ["" : 17]>\n'


def _pass(spec: str):  # noqa: ANN202 - a Pass instance
    (p,) = parse_pipeline(spec).items
    return p


def test_two_partitions_and_the_gate_between_them() -> None:
    before = (
        H
        + """m (float[4] x, float lim) => (float[4] y) {
        n = Constant <value = int64 {2}> ()
        t = Constant <value = bool {1}> ()
        y = Loop (n, t, x) <body = b (int64 i, bool c, float[4] v) => (bool co, float[4] w) {
            w = Add (v, x)
            top = ReduceMax <keepdims = 0> (w)
            co = Less (top, lim)
        }>
    }"""
    )
    # step 0 runs in the graph; step 1 only if co_s0 holds; else y is step 0's value
    after = (
        H
        + """m (float[4] x, float lim) => (float[4] y)
        <int64[0] scalar_shape = {}, float[4] w_s0, bool co_s0, bool scalar> {
        n = Constant <value = int64 {2}> ()
        t = Constant <value = bool {1}> ()
        w_s0 = Add (x, x)
        top_s0 = ReduceMax <keepdims = 0> (w_s0)
        co_s0 = Less (top_s0, lim)
        scalar = Reshape (co_s0, scalar_shape)
        y = If (scalar) <
            then_branch = partition_1_to_1 () => (float[4] w_s1) <bool co_s1> {
                w_s1 = Add (w_s0, x)
                top_s1 = ReduceMax <keepdims = 0> (w_s1)
                co_s1 = Less (top_s1, lim)
            },
            else_branch = stop_in_0_to_0 () => (float[4] identity) {
                identity = Identity (w_s0)
            }
        >
    }"""
    )
    g = check_rewrite(_pass("partition-unroll{boundaries=1}"), before, after)
    (gate,) = [n for n in g if n.op_type == "If"]
    assert gate.doc_string == GATE_MARK
    assert gate.attr("then_branch").doc_string == f"{PARTITION_MARK} steps=1-1"
    back = decode_model(to_onnx(g))  # the marks are ordinary ONNX doc strings: they persist
    (gate,) = [n for n in back if n.op_type == "If"]
    assert gate.doc_string == GATE_MARK
    assert gate.attr("then_branch").doc_string == f"{PARTITION_MARK} steps=1-1"


DECODER = (
    H
    + """m (int64[1, 1] start, float[4] x, float lim) => (int64[1, N] toks, float[4] acc,
                                                     float[M, 4] sc) {
    n = Constant <value = int64 {6}> ()
    c0 = Constant <value = bool {1}> ()
    toks, acc, sc = Loop (n, c0, start, x) <body = b (int64 i, bool c, int64[1, T] tv,
            float[4] v) => (bool co, int64[1, U] tw, float[4] w, float[4] s) {
        shape = Constant <value = int64[2] {1, 1}> ()
        ii = Reshape (i, shape)
        tw = Concat <axis = 1> (tv, ii)
        w = Add (v, x)
        s = Mul (w, x)
        top = ReduceMax <keepdims = 0> (w)
        co = Less (top, lim)
    }>
}"""
)


@pytest.mark.parametrize(
    ("boundaries", "partitions"), [("2+4", 3), ("1+2+3+4+5", 6), ("3+50", 2), ("6", None)]
)
def test_every_output_length_matches_the_loop(boundaries: str, partitions: int | None) -> None:
    g = parse(DECODER)
    result = _pass(f"partition-unroll{{boundaries={boundaries}}}").run(g, PassContext())
    assert result.stats.get("partitions") == partitions  # one partition: a plain unroll
    verify(g)
    reference = Runner(parse(DECODER), "onnxruntime")
    runners = [Runner(g, "onnxruntime"), Runner(g, "torch")]
    lengths = set()
    x = np.ones(4, np.float32)
    for lim in (0.0, 2.5, 3.5, 4.5, 5.5, 6.5, 100.0):  # stops after 1, 2, ... 6 steps
        feeds = {"start": np.array([[9]], np.int64), "x": x, "lim": np.array(lim, np.float32)}
        want = reference(feeds)
        lengths.add(want[0].shape[1] - 1)
        for run in runners:
            for a, b in zip(want, run(feeds)):
                assert a.shape == b.shape
                np.testing.assert_array_equal(a, b)
    assert lengths == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize("text", ["0+5", "5+3", "2+2", "a+b", "+"])
def test_bad_boundaries_are_refused_before_anything_runs(text: str) -> None:
    with pytest.raises(NeffkitError, match="boundaries"):
        parse_pipeline(f"partition-unroll{{boundaries={text}}}")


def test_a_loop_without_a_bound_is_left_alone() -> None:
    text = (
        H
        + """m (float[4] x, int64 n) => (float[4] y) {
        y = Loop (n, , x) <body = b (int64 i, bool c, float[4] v) => (bool co, float[4] w) {
            co = Identity (c)
            w = Add (v, x)
        }>
    }"""
    )
    check_rewrite(_pass("partition-unroll{boundaries=1}"), text, None)


@pytest.mark.parametrize("spec", ["unroll", "partition-unroll{boundaries=1+2}"])
def test_generated_loops_keep_every_property(spec: str) -> None:
    ops = ["Loop", "If", "Add", "Mul", "Concat", "Relu", "Less", "And", "Where", "Cast", "Slice"]
    summary = check_pass(spec, max_examples=120, torch=True, ops=ops)
    assert summary.changed  # some generated loops were unrolled, not only left alone
