"""``unroll`` and ``partition-unroll`` on nasty but valid loops: values passed through, exits
the spec and onnxruntime read differently, run-time trip counts, shapes that change on the
steps past the exit, names the copies would take, sequences and optionals, empty bodies.
Each test says what the pass did wrong before."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from onnx import TensorProto

from neffkit.execution import Runner
from neffkit.ir.text import parse
from neffkit.passes import PassContext, get_pass
from neffkit.testing import check_rewrite, run_checked
from tests.passes.test_unroll_loops import H, Unroll, _body_loop


@pytest.mark.parametrize(
    ("dtype", "np_dtype"), [("int16", np.int16), ("uint64", np.uint64), ("float", np.float32)]
)
def test_a_carried_value_passed_through_needs_no_freezing(dtype: str, np_dtype: type) -> None:
    # u goes out as it came in: every step holds p, so the loop's q is p whatever the exit.
    # It was frozen with Where(running, p, p), which onnxruntime has no int16 / uint64 kernel
    # for: the unrolled model of a valid one did not load.
    before = (
        H
        + """m (float[4] x, T[3] p) => (float[4] y, T[3] q) {
        n = Constant <value = int64 {2}> ()
        t = Constant <value = bool {1}> ()
        y, q = Loop (n, t, x, p) <body = b (int64 i, bool c, float[4] v, T[3] u)
                                => (bool co, float[4] w, T[3] u) {
            s = ReduceSum <keepdims = 0> (v)
            zero = Constant <value = float {0.0}> ()
            co = Less (s, zero)
            w = Neg (v)
        }>
    }"""
    ).replace("T[", f"{dtype}[")
    after = (
        H
        + """m (float[4] x, T[3] p) => (float[4] y, T[3] q)
        <int64[0] scalar_shape =  {}, bool co_s0, float[4] w_s0, bool scalar, bool co_s1,
        float[4] w_s1> {
       n = Constant <value: tensor = int64 {2}> ()
       t = Constant <value: tensor = bool {1}> ()
       s_s0 = ReduceSum <keepdims: int = 0> (x)
       zero_s0 = Constant <value: tensor = float {0}> ()
       co_s0 = Less (s_s0, zero_s0)
       w_s0 = Neg (x)
       scalar = Reshape (co_s0, scalar_shape)
       s_s1 = ReduceSum <keepdims: int = 0> (w_s0)
       zero_s1 = Constant <value: tensor = float {0}> ()
       co_s1 = Less (s_s1, zero_s1)
       w_s1 = Neg (w_s0)
       y = Where (scalar, w_s1, w_s0)
       q = Identity (p)
    }"""
    ).replace("T[", f"{dtype}[")
    g = check_rewrite(Unroll(), before, after)
    p = np.array([3, 0, 9]).astype(np_dtype)
    for sign in (1.0, -1.0):  # one step runs; both run
        x = np.arange(1, 5, dtype=np.float32) * sign
        y, q = Runner(g, "onnxruntime")({"x": x, "p": p})
        np.testing.assert_array_equal(y, -x if sign > 0 else x)
        np.testing.assert_array_equal(q, p)
    partitioned = parse(before)
    get_pass("partition-unroll")(boundaries="1").run(partitioned, PassContext())
    assert not any(
        n.op_type == "Where" and n.outputs[0].dtype != TensorProto.FLOAT
        for n in partitioned.all_nodes()
    )
    y, q = Runner(partitioned, "onnxruntime")({"x": -np.ones(4, np.float32), "p": p})
    np.testing.assert_array_equal(q, p)


def test_a_computed_exit_without_a_condition_input_is_left_alone() -> None:
    # Loop(M, "", x) whose body computes cond_out: the spec ignores it (4 steps, 104) but
    # onnxruntime stops on it (1 step, 101). Unrolled by the spec it disagreed with
    # onnxruntime; by onnxruntime, with the spec: it is left alone.
    text = _body_loop(
        "n",
        "",
        "one = Constant <value = float {1.0}> ()  w = Add (v, one)"
        "  s = ReduceSum <keepdims = 0> (w)  lim = Constant <value = float {20.0}> ()"
        "  co = Less (s, lim)",
        "(float[4] x, int64 n)",
    )
    g = parse(text)
    assert Unroll(max_trip=4).run(g, PassContext()).stats == {"loops_left": 1}
    assert get_pass("partition-unroll")(max_trip=4, boundaries="2").run(g, PassContext()).stats == {
        "loops_left": 1
    }
    for cond_out in ("co = Identity (c)", "co = Constant <value = bool {1}> ()"):  # for loops
        bounded = parse(text.replace("co = Less (s, lim)", cond_out))
        assert Unroll(max_trip=4).run(bounded, PassContext()).stats["loops_unrolled"] == 1


def test_a_trip_count_of_no_declared_type_is_read_as_int64() -> None:
    # M and the condition computed by Casts whose outputs carry no type (as in the onnx
    # backend tests' expanded Range): M's scalar copy was typed bool, so the unrolled model
    # did not load in onnxruntime (output arg of type bool, expected int64)
    text = _body_loop(
        "n", "c0", "co = Identity (c)  f = Cast <to = 1> (i)  w = Add (v, f)",
        "(float[4] x, float k)",
    ).replace(
        "    y = Loop",
        "    n = Cast <to = 7> (k)\n    c0 = Cast <to = 9> (k)\n    y = Loop",
    )  # fmt: skip
    for partitions in ("", "2"):
        g = parse(text)
        assert (
            get_pass("partition-unroll")(max_trip=4, boundaries=partitions)
            .run(g, PassContext())
            .changed
        )
        x = np.zeros(4, np.float32)
        for k in (0.0, 1.0, 3.0):
            got = Runner(g, "onnxruntime")({"x": x, "k": np.array(k, np.float32)})[0]
            np.testing.assert_array_equal(got, x + k * (k - 1) / 2)


SLICE_BY_STEP = (
    H
    + """m (float[5] x, int64 n) => (float[1] y, float[?,1] ys) {
    t = Constant <value = bool {1}> ()
    z = Constant <value = float[1] {0.0}> ()
    y, ys = Loop (n, t, z) <body = b (int64 i, bool c, float[1] v) => (bool co, float[1] w,
                                                                      float[1] s) {
        co = Identity (c)
        one = Constant <value = int64 {1}> ()
        e = Add (i, one)
        zero = Constant <value = int64[1] {0}> ()
        st = Unsqueeze (i, zero)
        en = Unsqueeze (e, zero)
        sl = Slice (x, st, en)
        w = Add (v, sl)
        s = Identity (w)
    }>
}"""
)


@pytest.mark.parametrize(
    "pipeline", ["unroll{max-trip=8}", "partition-unroll{max-trip=8,boundaries=2}"]
)
def test_steps_past_a_run_time_trip_count_index_in_range(pipeline: str) -> None:
    # the onnx backend test loop11's pattern: x[i:i+1] summed, M fed. Steps i >= M run too;
    # they read x[M-1:M] now. They read x[i:i+1] before, empty for i >= 5, and the Where that
    # freezes y broadcast it: y came out empty whenever M < 8.
    g = parse(SLICE_BY_STEP)
    run_checked(pipeline, g, feeds={"x": np.arange(1, 6, dtype=np.float32), "n": np.array(3)})
    x = np.arange(1, 6, dtype=np.float32)
    for n in (0, 1, 3, 5):
        feeds = {"x": x, "n": np.array(n, np.int64)}
        want = Runner(parse(SLICE_BY_STEP), "onnxruntime")(feeds)
        for backend in ("onnxruntime", "torch"):
            got = Runner(g, backend)(feeds)
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)


WHILE_IN_RANGE = (
    H
    + """m (float[3] x) => (float[1] y, int64 kk) {
    n = Constant <value = int64 {5}> ()
    t = Constant <value = bool {1}> ()
    z = Constant <value = float[1] {0.0}> ()
    k0 = Constant <value = int64 {0}> ()
    y, kk = Loop (n, t, z, k0) <body = b (int64 i, bool c, float[1] v, int64 k)
                               => (bool co, float[1] w, int64 k2) {
        one = Constant <value = int64 {1}> ()
        zero = Constant <value = int64[1] {0}> ()
        k2 = Add (k, one)
        st = Unsqueeze (k, zero)
        en = Unsqueeze (k2, zero)
        sl = Slice (x, st, en)
        w = Add (v, sl)
        len = Size (x)
        co = Less (k2, len)
    }>
}"""
)


@pytest.mark.parametrize("pipeline", ["unroll", "partition-unroll{boundaries=2}"])
def test_a_value_sliced_by_a_carried_index_keeps_its_shape_past_the_exit(pipeline) -> None:
    # while k < len(x): v += x[k:k+1]. The steps after the exit (3 of 5 run) slice x[3:4],
    # empty; v froze with Where(running, v_t, frozen), which broadcast [0] against [1]: y came
    # out empty (partitioned: an error). v's shape rests on a Slice bound that changes with
    # the step, so the steps run pick v by their count (If tree), exact for any shape.
    g = parse(WHILE_IN_RANGE)
    run_checked(pipeline, g, feeds={"x": np.arange(1, 4, dtype=np.float32)})
    y, kk = Runner(g, "onnxruntime")({"x": np.arange(1, 4, dtype=np.float32)})
    np.testing.assert_array_equal(y, np.array([6.0], np.float32))
    assert kk == 3
    # the counter's Add keeps one shape on every step: it is still frozen by Where
    frozen = [n for n in g.all_nodes() if n.op_type == "Where"]
    assert frozen and all(n.outputs[0].dtype != TensorProto.FLOAT for n in frozen)


@pytest.mark.parametrize("pipeline", ["unroll", "partition-unroll{boundaries=1}"])
def test_scan_rows_that_change_shape_past_the_exit_are_stacked_as_they_ran(pipeline) -> None:
    # ys gets x[k:k+2] each step; past the exit x[2:4] has one element, not two, and the
    # Concat of every step's row failed at run time. Those rows are now stacked in the
    # branch of an If tree picked by the steps run: only rows that ran are concatenated.
    text = (
        WHILE_IN_RANGE.replace("float[1] y, int64 kk)", "float[1] y, int64 kk, float[?,2] ys)")
        .replace("y, kk = Loop", "y, kk, ys = Loop")
        .replace("int64 k2) {", "int64 k2, float[2] pair) {")
        .replace(
            "co = Less (k2, len)",
            "two = Constant <value = int64 {2}> ()\n        k3 = Add (k, two)\n"
            "        en2 = Unsqueeze (k3, zero)\n        pair = Slice (x, st, en2)\n"
            "        co = Less (k3, len)",
        )
    )
    g = parse(text)
    x = np.arange(1, 4, dtype=np.float32)
    run_checked(pipeline, g, feeds={"x": x})
    y, kk, ys = Runner(g, "onnxruntime")({"x": x})
    np.testing.assert_array_equal(ys, np.array([[1, 2], [2, 3]], np.float32))
    np.testing.assert_array_equal(y, np.array([3.0], np.float32))
    assert kk == 2


@pytest.mark.parametrize("pipeline", ["unroll", "partition-unroll{boundaries=1}"])
def test_copies_named_like_nodes_the_graph_has_get_other_names(pipeline) -> None:
    # the body's "w" is copied as "w_s0", "w_s1"; the graph already has nodes of those names
    # (and one named like the partition gate). onnxruntime refuses a graph with two nodes of
    # one name: the unrolled model did not load.
    g = parse(
        _body_loop(
            "n",
            "c0",
            "co = Less (i, k)  w = Add (v, x)",
            "(float[4] x, bool c0, int64 k)",
        ).replace("    y = Loop", "    n = Constant <value = int64 {3}> ()\n    y = Loop")
    )
    loop = next(n for n in g if n.op_type == "Loop")
    loop.name = "L"
    next(n for n in g if n.op_type == "Constant").name = "w_s0"
    for n in loop.attr("body"):
        n.name = {"Add": "w", "Less": "L/partition_gate_1"}[n.op_type]
    feeds = {"x": np.ones(4, np.float32), "c0": np.array(True), "k": np.array(1)}
    run_checked(pipeline, g, feeds=feeds)
    for sub in g.all_graphs():
        names = [n.name for n in sub if n.name]
        assert len(names) == len(set(names)), names
    assert "w_s0_1" in [n.name for n in g]


def test_unrolling_a_loop_split_marked_drops_its_mark() -> None:
    # split marks the loop by name in the model's metadata; once unrolled, the mark named
    # no node, and a loop later given that name would have been taken for a host loop
    g = parse(
        _body_loop("n", "", "co = Identity (c)  w = Add (v, x)").replace(
            "    y = Loop", "    n = Constant <value = int64 {2}> ()\n    y = Loop"
        )
    )
    get_pass("split")().run(g, PassContext())
    assert g.meta.metadata_props
    assert Unroll().run(g, PassContext()).changed
    assert not g.meta.metadata_props


SEQUENCE_LOOP = (
    H
    + """m (float[2] x, int64 k) => (seq(float) out) {
    n = Constant <value = int64 {3}> ()
    e = SequenceEmpty <dtype = 1> ()
    t = Constant <value = bool {1}> ()
    out = Loop (n, t, e) <body = b (int64 i, bool c, seq(float) s) => (bool co, seq(float) s2) {
        co = Identity (c)
        s2 = SequenceInsert (s, x)
    }>
}"""
)


def test_a_sequence_carried_through_every_step_unrolls() -> None:
    g = parse(SEQUENCE_LOOP)
    assert Unroll().run(g, PassContext()).stats["loops_unrolled"] == 1
    feeds = {"x": np.arange(2, dtype=np.float32), "k": np.array(1)}
    got = Runner(g, "onnxruntime")(feeds)[0]
    assert len(got) == 3 and all(np.array_equal(a, feeds["x"]) for a in got)


@pytest.mark.parametrize(
    "change", [("co = Identity (c)", "co = Less (i, k)"), ("Loop (n,", "Loop (k,")]
)
def test_a_sequence_carried_past_a_possible_exit_is_left_alone(change, caplog) -> None:
    # the exit would pick a step's sequence with Identity (opset 14) in If branches: the
    # unrolled model of onnx's test_loop13_seq did not load (opset 11)
    g = parse(SEQUENCE_LOOP.replace(*change))
    with caplog.at_level(logging.INFO, logger="neffkit.passes.unroll"):
        assert Unroll(max_trip=3).run(g, PassContext()).stats == {"loops_left": 1}
    assert "it may stop early and carries 's', not a tensor" in caplog.text


def test_a_carried_value_optional_in_and_sequence_out_is_left_alone(caplog) -> None:
    # as onnx's test_loop16_seq_none: the body reads optional(seq) and returns seq; step
    # t + 1's copy fed a seq to OptionalHasElement (the model did not load)
    text = (
        SEQUENCE_LOOP.replace("seq(float) s)", "optional(seq(float)) s)")
        .replace(
            "s2 = SequenceInsert (s, x)",
            "s1 = OptionalGetElement (s)\n        s2 = SequenceInsert (s1, x)",
        )
        .replace(
            "e = SequenceEmpty <dtype = 1> ()",
            "e0 = SequenceEmpty <dtype = 1> ()\n    e = Optional (e0)",
        )
    )
    g = parse(text)
    with caplog.at_level(logging.INFO, logger="neffkit.passes.unroll"):
        assert Unroll().run(g, PassContext()).stats == {"loops_left": 1}
    assert "comes in as optional_type, out as sequence_type" in caplog.text


def test_max_nodes_counts_a_step_of_an_empty_body_as_one_node() -> None:
    # the body passes everything through: 0 nodes a copy, so a billion copies passed
    # max-nodes and the pass ran for ever
    text = (
        H
        + """m (float[4] x, bool b) => (float[4] y) {
        n = Constant <value = int64 {1000000000}> ()
        y = Loop (n, b, x) <body = g (int64 i, bool c, float[4] v) => (bool c, float[4] v) {}>
    }"""
    )
    g = parse(text)
    assert Unroll().run(g, PassContext()).stats == {"loops_left": 1}
    few = parse(text.replace("1000000000", "3"))
    run_checked(Unroll(), few, feeds={"x": np.ones(4, np.float32), "b": np.array(False)})
