"""``unroll``: before/after as text on small loops (static count, early exit at every step,
scan outputs, growing carried values, loops in If, captured and nested loops), non-cases,
numbers against onnxruntime and the torch backend, and scaling."""

from __future__ import annotations

import time

import numpy as np
import pytest

from neffkit.execution import Runner
from neffkit.ir.text import parse
from neffkit.ir.verifier import verify
from neffkit.passes import PassContext, get_pass
from neffkit.testing import check_rewrite

H = '<ir_version: 8, opset_import: ["" : 17]>\n'
Unroll = get_pass("unroll")


def _body_loop(trip: str, cond: str, body: str, header: str = "(float[4] x)") -> str:
    return (
        H
        + f"m {header} => (float[4] y) {{\n"
        + f"    y = Loop ({trip}, {cond}, x) <body = b (int64 i, bool c, float[4] v)"
        + f" => (bool co, float[4] w) {{ {body} }}>\n}}"
    )


def test_a_static_count_becomes_straight_line_copies_reading_the_outer_value() -> None:
    before = (
        H
        + """m (float[4] x) => (float[4] y) {
        n = Constant <value = int64 {3}> ()
        y = Loop (n, , x) <body = b (int64 i, bool c, float[4] v) => (bool co, float[4] w) {
            co = Identity (c)
            w = Add (v, x)
        }>
    }"""
    )
    after = (
        H
        + """m (float[4] x) => (float[4] y)
        <bool true = {1}, bool co_s0, float[4] w_s0, bool co_s1, float[4] w_s1, bool co_s2> {
        n = Constant <value = int64 {3}> ()
        co_s0 = Identity (true)
        w_s0 = Add (x, x)
        co_s1 = Identity (co_s0)
        w_s1 = Add (w_s0, x)
        co_s2 = Identity (co_s1)
        y = Add (w_s1, x)
    }"""
    )
    g = check_rewrite(Unroll(), before, after)
    assert not any(n.op_type == "Loop" for n in g)


# exit after the first, a middle, the last step; none. The Identity hides the limit from the
# counter analysis (which would unroll only k + 1 steps: see the test after this one).
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_an_early_exit_freezes_the_carried_value(k: int) -> None:
    before = (
        H
        + """m (float[4] x, bool c0) => (float[4] y) {
        n = Constant <value = int64 {3}> ()
        y = Loop (n, c0, x) <body = b (int64 i, bool c, float[4] v) => (bool co, float[4] w) {
            k = Constant <value = int64 {K}> ()
            hidden = Identity (k)
            co = Less (i, hidden)
            w = Add (v, x)
        }>
    }"""
    ).replace("{K}", f"{{{k}}}")
    after = (
        H
        + """m (float[4] x, bool c0) => (float[4] y)
       <int64 iter_0 =  {0}, int64[0] scalar_shape =  {}, int64 iter_1 =  {1}, int64 iter_2 =
        {2}, bool co_s0, float[4] w_s0, bool scalar, bool running, bool co_s1, float[4] w_s1,
        bool scalar__1, bool running__2, bool co_s2, float[4] w_s2>
    {
       n = Constant <value: tensor = int64 {3}> ()
       k_s0 = Constant <value: tensor = int64 {K}> ()
       hidden_s0 = Identity (k_s0)
       co_s0 = Less (iter_0, hidden_s0)
       w_s0 = Add (x, x)
       scalar = Reshape (co_s0, scalar_shape)
       running = And (c0, scalar)
       k_s1 = Constant <value: tensor = int64 {K}> ()
       hidden_s1 = Identity (k_s1)
       co_s1 = Less (iter_1, hidden_s1)
       w_s1 = Add (w_s0, x)
       scalar__1 = Reshape (co_s1, scalar_shape)
       running__2 = And (running, scalar__1)
       k_s2 = Constant <value: tensor = int64 {K}> ()
       hidden_s2 = Identity (k_s2)
       co_s2 = Less (iter_2, hidden_s2)
       w_s2 = Add (w_s1, x)
       frozen = Where (c0, w_s0, x)
       frozen__3 = Where (running, w_s1, frozen)
       y = Where (running__2, w_s2, frozen__3)
    }"""
    ).replace("{K}", f"{{{k}}}")
    g = check_rewrite(Unroll(), before, after)
    x = np.arange(4, dtype=np.float32)
    for c0 in (True, False):  # a false initial condition runs no step
        got = Runner(g, "onnxruntime")({"x": x, "c0": np.array(c0)})[0]
        steps = min(k + 1, 3) if c0 else 0
        np.testing.assert_array_equal(got, x * (steps + 1))


def test_a_counter_in_the_exit_condition_bounds_a_while_loop() -> None:
    # m = 2, 4, 6 after steps 0, 1, 2: m < 5 fails after the third step, so 3 copies suffice
    before = (
        H
        + """m (float[4] x) => (float[4] y, int64 count) {
        t = Constant <value = bool {1}> ()
        zero = Constant <value = int64 {0}> ()
        y, count = Loop (, t, x, zero) <body = b (int64 i, bool c, float[4] v, int64 n)
                                        => (bool co, float[4] w, int64 m) {
            two = Constant <value = int64 {2}> ()
            five = Constant <value = int64 {5}> ()
            m = Add (n, two)
            w = Add (v, x)
            co = Less (m, five)
        }>
    }"""
    )
    after = (
        H
        + """m (float[4] x) => (float[4] y, int64 count)
       <int64[0] scalar_shape =  {}, int64 m_s0, float[4] w_s0, bool co_s0, bool scalar, int64
        m_s1, float[4] w_s1, bool co_s1, bool scalar__1, bool running, int64 m_s2, float[4] w_s2,
        bool co_s2>
    {
       t = Constant <value: tensor = bool {1}> ()
       zero = Constant <value: tensor = int64 {0}> ()
       two_s0 = Constant <value: tensor = int64 {2}> ()
       five_s0 = Constant <value: tensor = int64 {5}> ()
       m_s0 = Add (zero, two_s0)
       w_s0 = Add (x, x)
       co_s0 = Less (m_s0, five_s0)
       scalar = Reshape (co_s0, scalar_shape)
       two_s1 = Constant <value: tensor = int64 {2}> ()
       five_s1 = Constant <value: tensor = int64 {5}> ()
       m_s1 = Add (m_s0, two_s1)
       w_s1 = Add (w_s0, x)
       co_s1 = Less (m_s1, five_s1)
       scalar__1 = Reshape (co_s1, scalar_shape)
       running = And (scalar, scalar__1)
       two_s2 = Constant <value: tensor = int64 {2}> ()
       five_s2 = Constant <value: tensor = int64 {5}> ()
       m_s2 = Add (m_s1, two_s2)
       w_s2 = Add (w_s1, x)
       co_s2 = Less (m_s2, five_s2)
       frozen = Where (scalar, w_s1, w_s0)
       y = Where (running, w_s2, frozen)
       frozen__2 = Where (scalar, m_s1, m_s0)
       count = Where (running, m_s2, frozen__2)
    }"""
    )
    check_rewrite(Unroll(), before, after)


def test_scan_outputs_are_stacked_and_cut_to_the_steps_that_ran() -> None:
    before = (
        H
        + """m (float[4] x, float s) => (float[4] y, float[N, 4] ys) {
        n = Constant <value = int64 {2}> ()
        t = Constant <value = bool {1}> ()
        y, ys = Loop (n, t, x) <body = b (int64 i, bool c, float[4] v)
                                 => (bool co, float[4] w, float[4] z) {
            w = Mul (v, x)
            z = Add (w, s)
            m = ReduceMax <keepdims = 0> (w)
            co = Less (m, s)
        }>
    }"""
    )
    after = (
        H
        + """m (float[4] x, float s) => (float[4] y, float[N,4] ys)
       <int64[0] scalar_shape =  {}, int64 steps_1 =  {1}, int64[1] axis_0 =  {0}, int64[1]
        one_dim =  {1}, float[4] w_s0, float[4] z_s0, bool co_s0, bool scalar, float[4] w_s1,
        float[4] z_s1, bool co_s1, int64 steps_run>
    {
       n = Constant <value: tensor = int64 {2}> ()
       t = Constant <value: tensor = bool {1}> ()
       w_s0 = Mul (x, x)
       z_s0 = Add (w_s0, s)
       m_s0 = ReduceMax <keepdims: int = 0> (w_s0)
       co_s0 = Less (m_s0, s)
       scalar = Reshape (co_s0, scalar_shape)
       w_s1 = Mul (w_s0, x)
       z_s1 = Add (w_s1, s)
       m_s1 = ReduceMax <keepdims: int = 0> (w_s1)
       co_s1 = Less (m_s1, s)
       ran = Cast <to: int = 7> (scalar)
       steps_run = Add (steps_1, ran)
       y = Where (scalar, w_s1, w_s0)
       unsqueeze = Unsqueeze (z_s0, axis_0)
       unsqueeze__1 = Unsqueeze (z_s1, axis_0)
       stacked = Concat <axis: int = 0> (unsqueeze, unsqueeze__1)
       rows = Reshape (steps_run, one_dim)
       ys = Slice (stacked, axis_0, rows, axis_0)
    }"""
    )
    g = check_rewrite(Unroll(), before, after)
    x = np.full(4, 2, np.float32)
    for s, rows in ((1.0, 1), (100.0, 2)):  # exits after step 0; runs both
        _, ys = Runner(g, "onnxruntime")({"x": x, "s": np.array(s, np.float32)})
        assert ys.shape == (rows, 4)


def test_a_growing_carried_value_is_picked_by_the_steps_run() -> None:
    before = (
        H
        + """m (int64[1, 1] start) => (int64[1, N] tokens) {
        n = Constant <value = int64 {2}> ()
        t = Constant <value = bool {1}> ()
        tokens = Loop (n, t, start) <body = b (int64 i, bool c, int64[1, T] tv)
                                      => (bool co, int64[1, U] tw) {
            last = ReduceMax <keepdims = 1> (tv)
            tw = Concat <axis = 1> (tv, last)
            co = Not (c)
        }>
    }"""
    )
    after = (
        H
        + """m (int64[1,1] start) => (int64[1,N] tokens)
       <int64[0] scalar_shape =  {}, int64 steps_1 =  {1}, int64 steps_2 =  {2}, int64[1,?]
        tw_s0, bool co_s0, bool scalar, int64[1,?] tw_s1, bool co_s1, int64 steps_run>
    {
       n = Constant <value: tensor = int64 {2}> ()
       t = Constant <value: tensor = bool {1}> ()
       last_s0 = ReduceMax <keepdims: int = 1> (start)
       tw_s0 = Concat <axis: int = 1> (start, last_s0)
       co_s0 = Not (t)
       scalar = Reshape (co_s0, scalar_shape)
       last_s1 = ReduceMax <keepdims: int = 1> (tw_s0)
       tw_s1 = Concat <axis: int = 1> (tw_s0, last_s1)
       co_s1 = Not (co_s0)
       ran = Cast <to: int = 7> (scalar)
       steps_run = Add (steps_1, ran)
       less = Less (steps_run, steps_2)
       tokens = If (less) <then_branch: graph = steps_0_to_1 () => (int64[?,?] v__3)
          <int64 steps_1__1 =  {1}>
    {
          less__2 = Less (steps_run, steps_1__1)
          v__3 = If (less__2) <then_branch: graph = steps_0_to_0 () => (int64[1,1] identity) {
             identity = Identity (start)
          }, else_branch: graph = steps_1_to_1 () => (int64[1,?] identity__4) {
             identity__4 = Identity (tw_s0)
          }>
       }, else_branch: graph = steps_2_to_2 () => (int64[1,?] identity__5) {
          identity__5 = Identity (tw_s1)
       }>
    }"""
    )
    g = check_rewrite(Unroll(), before, after)
    got = Runner(g, "onnxruntime")({"start": np.array([[4]], np.int64)})[0]
    assert got.shape == (1, 2)  # one step ran: the exit is exact for a changing shape


def test_a_loop_in_an_if_branch() -> None:
    before = (
        H
        + """m (float[4] x, bool p) => (float[4] y) {
        y = If (p) <
            then_branch = g1 () => (float[4] a) {
                n = Constant <value = int64 {2}> ()
                a = Loop (n, , x) <body = b (int64 i, bool c, float[4] v) => (bool co, float[4] w) {
                    co = Identity (c)
                    w = Mul (v, x)
                }>
            },
            else_branch = g2 () => (float[4] e) { e = Neg (x) }
        >
    }"""
    )
    after = (
        H
        + """m (float[4] x, bool p) => (float[4] y) {
        y = If (p) <
            then_branch = g1 () => (float[4] a) <bool true = {1}, bool co_s0, float[4] w_s0,
                                                 bool co_s1> {
                n = Constant <value = int64 {2}> ()
                co_s0 = Identity (true)
                w_s0 = Mul (x, x)
                co_s1 = Identity (co_s0)
                a = Mul (w_s0, x)
            },
            else_branch = g2 () => (float[4] e) { e = Neg (x) }
        >
    }"""
    )
    check_rewrite(Unroll(), before, after)


def test_nested_loops_unroll_inside_out() -> None:
    before = (
        H
        + """m (float[4] x) => (float[4] y) {
        n = Constant <value = int64 {2}> ()
        y = Loop (n, , x) <body = b (int64 i, bool c, float[4] v) => (bool co, float[4] w) {
            co = Identity (c)
            w = Loop (n, , v) <body = b2 (int64 j, bool c2, float[4] u) => (bool co2, float[4] z) {
                co2 = Identity (c2)
                z = Add (u, x)
            }>
        }>
    }"""
    )
    g = parse(before)
    result = Unroll().run(g, PassContext())
    assert result.stats == {"loops_unrolled": 2, "steps": 4, "nodes_added": 14}
    assert not any(n.op_type == "Loop" for n in g.all_nodes())
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(Runner(g, "onnxruntime")({"x": x})[0], 5 * x)


def test_a_loop_without_a_bound_is_left_alone_and_reported() -> None:
    text = _body_loop("n", "", "co = Identity (c)  w = Add (v, x)", "(float[4] x, int64 n)")
    check_rewrite(Unroll(), text, None)
    assert Unroll().run(parse(text), PassContext()).stats == {"loops_left": 1}


@pytest.mark.parametrize("n", [0, 2, 4])
def test_max_trip_bounds_a_dynamic_trip_count(n: int) -> None:
    text = _body_loop(
        "n", "c0", "co = Identity (c)  f = Cast <to = 1> (i)  w = Add (v, f)",
        "(float[4] x, int64 n, bool c0)",
    )  # fmt: skip
    g = parse(text)
    assert Unroll(max_trip=4).run(g, PassContext()).changed
    verify(g)
    x = np.zeros(4, np.float32)
    for c0 in (True, False):
        feeds = {"x": x, "n": np.array(n, np.int64), "c0": np.array(c0)}
        want = Runner(parse(text), "onnxruntime")(feeds)[0]
        for backend in ("onnxruntime", "torch"):
            np.testing.assert_array_equal(Runner(g, backend)(feeds)[0], want)


def test_max_nodes_refuses_a_large_unroll() -> None:
    text = _body_loop("n", "", "co = Identity (c)  w = Add (v, x)")
    text = text.replace("y = Loop", "n = Constant <value = int64 {1000}> ()\n    y = Loop")
    g = parse(text)
    result = Unroll(max_nodes=100).run(g, PassContext())
    assert not result.changed and result.stats == {"loops_left": 1}


def test_a_decoder_loop_whose_exit_step_depends_on_the_input() -> None:
    text = (
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
    g = parse(text)
    assert Unroll().run(g, PassContext()).changed
    lengths = set()
    x = np.ones(4, np.float32)
    for lim in (0.0, 2.5, 3.5, 5.5, 100.0):  # 1, 2, 3 or 5 steps, or all 6
        feeds = {"start": np.array([[9]], np.int64), "x": x, "lim": np.array(lim, np.float32)}
        want = Runner(parse(text), "onnxruntime")(feeds)
        lengths.add(want[0].shape[1])
        for backend in ("onnxruntime", "torch"):
            for a, b in zip(want, Runner(g, backend)(feeds)):
                np.testing.assert_array_equal(a, b)
    assert lengths == {2, 3, 4, 6, 7}


def test_a_100_step_unroll_of_a_1000_node_body_is_near_linear() -> None:
    body = "co = Identity (c)  w0 = Add (v, x)  " + "  ".join(
        f"w{k + 1} = Add (w{k}, x)" for k in range(998)
    )
    text = _body_loop("n", "", body + "  w = Identity (w998)")
    text = text.replace("y = Loop", "n = Constant <value = int64 {100}> ()\n    y = Loop")
    g = parse(text)
    start = time.perf_counter()
    result = Unroll().run(g, PassContext())
    assert time.perf_counter() - start < 10  # about 0.5 s; a scan per step would take minutes
    assert result.stats["nodes_added"] == 100_100  # 1001 nodes a step
