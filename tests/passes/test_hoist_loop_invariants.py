"""``hoist``: text before/after on small loops (non-cases included), nested loops, If in a
body, zero-trip loops, the Conformer decoder loop, and generated graphs with loops."""

from __future__ import annotations

import numpy as np
import pytest

from neffkit.execution.compare import compare_all, explain
from neffkit.execution.runner import Runner
from neffkit.ir.text import parse
from neffkit.ir.verifier import verify
from neffkit.passes import PassContext, get_pass, parse_pipeline
from neffkit.testing import check_pass, check_rewrite, run_checked

H = '<ir_version: 8, opset_import: ["" : 17]>\n'
Hoist = get_pass("hoist")

# A Loop that runs 3 times over a carried float[2,4] t, reading the outer w; BODY is its body.
LOOP = """m (float[2,4] x, float[4,4] w) => (float[2,4] y) {
    n = Constant <value = int64 {3}> ()
    c = Constant <value = bool {1}> ()
    %s
    y = Loop (n, c, x) <body = b (int64 i, bool c_in, float[2,4] t) => (bool c_out,
        float[2,4] t_out) {
        c_out = Identity (c_in)
        %s
    }>
}"""


def loop(outer: str, body: str) -> str:
    return H + LOOP % (outer, body)


def test_an_invariant_chain_moves_before_the_loop_in_order() -> None:
    check_rewrite(
        Hoist(),
        loop("", "a = Transpose (w)  k = Relu (a)  s = MatMul (t, k)  t_out = MatMul (s, k)"),
        loop("a = Transpose (w)  k = Relu (a)", "s = MatMul (t, k)  t_out = MatMul (s, k)"),
    )


def test_moved_values_are_the_same_objects_with_their_types() -> None:
    from neffkit.ir.text import parse

    g = parse(loop("", "k = Relu (w)  s = MatMul (t, k)  t_out = MatMul (s, k)"))
    body = next(n for n in g if n.op_type == "Loop").attr("body")
    relu = next(n for n in body if n.op_type == "Relu")
    k = relu.outputs[0]
    k.type = g.inputs[1].type
    Hoist().run(g, PassContext())
    verify(g)
    assert relu.graph is g and relu.outputs[0] is k and str(k.type) == "float[4,4]"
    assert sorted(n.op_type for n, _ in k.uses) == ["MatMul", "MatMul"]
    assert all(n.graph is body for n, _ in k.uses)


@pytest.mark.parametrize(
    "body",
    [
        # the iteration number, and what is computed from it
        "f = Cast <to = 1> (i)  t_out = Add (t, f)",
        # the condition
        "f = Cast <to = 1> (c_in)  t_out = Add (t, f)",
        # a carried value
        "a = Relu (t)  t_out = Neg (a)",
        # random ops differ on every iteration, even with invariant inputs
        "r = RandomUniformLike <seed = 1.0> (w)  s = MatMul (t, r)  t_out = Sub (s, s)",
    ],
)
def test_non_cases(body: str) -> None:
    check_rewrite(Hoist(), loop("", body), None, numeric="Random" not in body)


def test_a_body_constant_read_by_a_moved_node_is_copied_out() -> None:
    check_rewrite(
        Hoist(),
        H
        + """m (float[2,4] x) => (float[2,4] y) {
            n = Constant <value = int64 {2}> ()
            y = Loop (n, , x) <body = b (int64 i, bool c_in, float[2,4] t) => (bool c_out,
                float[2,4] t_out) <float[4] k = {1, 2, 3, 4}, float[4] j = {5, 6, 7, 8}> {
                c_out = Identity (c_in)
                e = Exp (k)
                s = Add (t, e)
                t_out = Add (s, j)
            }>
        }""",
        H
        + """m (float[2,4] x) => (float[2,4] y) <float[4] k = {1, 2, 3, 4}> {
            n = Constant <value = int64 {2}> ()
            e = Exp (k)
            y = Loop (n, , x) <body = b (int64 i, bool c_in, float[2,4] t) => (bool c_out,
                float[2,4] t_out) <float[4] j = {5, 6, 7, 8}> {
                c_out = Identity (c_in)
                s = Add (t, e)
                t_out = Add (s, j)
            }>
        }""",
    )


def test_nested_loops_a_node_invariant_in_both_goes_all_the_way_out() -> None:
    inner = """u = Loop (n, c, t) <body = b2 (int64 i2, bool c2, float[2,4] v) => (bool c2_out,
                float[2,4] v_out) {
                c2_out = Identity (c2)
                %s
            }>"""
    check_rewrite(
        Hoist(),
        loop(
            "",
            inner % "a = Relu (w)  h = Sigmoid (t)  q = MatMul (h, a)  v_out = Add (v, q)"
            + "  t_out = Neg (u)",
        ),
        loop(
            "a = Relu (w)",
            "h = Sigmoid (t)  q = MatMul (h, a)  "
            + inner % "v_out = Add (v, q)"
            + "  t_out = Neg (u)",
        ),
    )


def test_an_invariant_inner_loop_moves_as_a_whole() -> None:
    inner = """u = Loop (n, c, w) <body = b2 (int64 i2, bool c2, float[4,4] v) => (bool c2_out,
                float[4,4] v_out) {
                c2_out = Identity (c2)
                v_out = Neg (v)
            }>"""
    check_rewrite(
        Hoist(),
        loop("", inner + "  t_out = MatMul (t, u)"),
        loop(inner, "t_out = MatMul (t, u)"),
    )


IF = """z = If (%s) <
            then_branch = g1 () => (float[4,4] p) { p = Relu (%s) },
            else_branch = g2 () => (float[4,4] q) { q = Neg (w) }
        >"""


def test_an_if_whose_branches_read_only_invariant_values_moves() -> None:
    check_rewrite(
        Hoist(),
        loop("", "k = Abs (w)  " + IF % ("c", "k") + "  t_out = MatMul (t, z)"),
        loop("k = Abs (w)  " + IF % ("c", "k"), "t_out = MatMul (t, z)"),
    )


def test_an_if_whose_condition_is_per_iteration_stays() -> None:
    check_rewrite(Hoist(), loop("", IF % ("c_in", "w") + "  t_out = MatMul (t, z)"), None)


def test_an_if_whose_branch_reads_a_carried_value_stays() -> None:
    body = "tt = Transpose (t)  tm = MatMul (tt, t)  " + IF % ("c", "tm")
    check_rewrite(Hoist(), loop("", body + "  t_out = MatMul (t, z)"), None)


def test_an_if_with_a_random_op_in_a_branch_stays() -> None:
    body = IF.replace("p = Relu (%s)", "p = RandomUniformLike (%s)") % ("c", "w")
    check_rewrite(Hoist(), loop("", body + "  t_out = MatMul (t, z)"), None, numeric=False)


def test_a_body_constant_read_inside_a_moving_if_and_by_a_staying_node() -> None:
    # the If moves and reads an outer copy of k; the body keeps k for the node that stays
    branches = """z = If (c) <
            then_branch = g1 () => (float[4] p) { p = Relu (k) },
            else_branch = g2 () => (float[4] q) { q = Identity (k) }
        >"""
    text = """m (float[2,4] x) => (float[2,4] y) %s {
    n = Constant <value = int64 {2}> ()
    c = Constant <value = bool {1}> ()
    %s
    y = Loop (n, c, x) <body = b (int64 i, bool c_in, float[2,4] t) => (bool c_out,
        float[2,4] t_out) <float[4] k = {1, -2, 3, -4}> {
        c_out = Identity (c_in)
        %s
        s = Add (t, z)
        t_out = Mul (s, k)
    }>
}"""
    check_rewrite(
        Hoist(),
        H + text % ("", "", branches),
        H + text % ("<float[4] k = {1, -2, 3, -4}>", branches, ""),
    )


def test_a_moved_node_named_like_an_outer_node_gets_a_free_name() -> None:
    # body and outer graph may each have a node "a"; moved out, two nodes of one graph had
    # one name, which onnxruntime refuses (the hoisted model did not load)
    g = parse(loop("a = Neg (x)", "k = Transpose (w)  t_out = MatMul (t, k)"))
    next(n for n in g if n.op_type == "Neg").name = "a"
    body = next(n for n in g if n.op_type == "Loop").attr("body")
    next(n for n in body if n.op_type == "Transpose").name = "a"
    feeds = {"x": np.ones((2, 4), np.float32), "w": np.eye(4, dtype=np.float32)}
    run_checked(Hoist(), g, feeds=feeds)
    assert [n.name for n in g if n.name] == ["a", "a_1"]


def test_a_long_invariant_chain_moves_in_linear_time() -> None:
    import time

    from onnx import TensorProto

    from neffkit.ir.core import Graph, Node, Value
    from neffkit.ir.tensor import Tensor
    from neffkit.ir.types import TensorType

    g = Graph("m", opset_imports={"": 17})
    w = g.add_input(Value("w", TensorType(TensorProto.FLOAT, (4,))))
    x = g.add_input(Value("x", TensorType(TensorProto.FLOAT, (4,))))
    n = g.add_initializer(Value("n", const=Tensor(np.array(2, np.int64))))
    body = Graph("body")
    body.add_input(Value("i", TensorType(TensorProto.INT64, ())))
    c_in = body.add_input(Value("c_in", TensorType(TensorProto.BOOL, ())))
    t = body.add_input(Value("t", TensorType(TensorProto.FLOAT, (4,))))
    v = w
    for _ in range(50_000):
        v = body.append(Node("Neg", [v])).outputs[0]
    out = body.append(Node("Add", [t, v])).outputs[0]
    body.set_outputs([c_in, out])
    loop = Node("Loop", [n, None, x], outputs=[Value("y", TensorType(TensorProto.FLOAT, (4,)))])
    loop.set_attr("body", body)
    g.append(loop)
    g.add_output(loop.outputs[0])
    start = time.perf_counter()
    result = Hoist().run(g, PassContext())
    assert time.perf_counter() - start < 5  # about 0.3 s
    assert result.stats == {"nodes_hoisted": 50_000, "loops": 1}
    assert len(body) == 1 and len(g) == 50_001
    verify(g)


# -- zero-trip loops: what may run although the loop does not -------------------------------

ZERO = """m (float[2,4] x, float[4,4] w) => (float[2,4] y) {
    n = Constant <value = int64 {0}> ()
    bad = Constant <value = int64[2] {3, 3}> ()
    %s
    y = Loop (n, , x) <body = b (int64 i, bool c_in, float[2,4] t) => (bool c_out,
        float[2,4] t_out) {
        c_out = Identity (c_in)
        %s
    }>
}"""


def test_a_zero_trip_loop_keeps_ops_that_may_raise_and_moves_the_rest() -> None:
    # Reshape of 16 elements to [3, 3] would fail: hoisted, the model would fail although
    # the loop never runs
    check_rewrite(
        Hoist(),
        H + ZERO % ("", "a = Neg (w)  r = Reshape (a, bad)  s = MatMul (t, a)  t_out = Add (s, x)"),
        H + ZERO % ("a = Neg (w)", "r = Reshape (a, bad)  s = MatMul (t, a)  t_out = Add (s, x)"),
    )


def test_speculate_moves_what_may_raise_out_of_a_loop_that_may_not_run() -> None:
    (p,) = parse_pipeline("hoist{speculate=true}").items
    text = H + ZERO % ("", "a = Neg (w)  k = MatMul (w, a)  s = MatMul (t, k)  t_out = Add (s, x)")
    check_rewrite(
        p,
        text,
        H + ZERO % ("a = Neg (w)  k = MatMul (w, a)", "s = MatMul (t, k)  t_out = Add (s, x)"),
    )


@pytest.mark.parametrize(
    "header",
    [
        "m (float[2,4] x, float[4,4] w, int64 n) => (float[2,4] y) {",  # unknown trip count
        "m (float[2,4] x, float[4,4] w, bool n) => (float[2,4] y) {",  # unknown condition
    ],
)
def test_a_loop_that_may_not_run_keeps_a_matmul(header: str) -> None:
    trips = "(n, , x)" if "int64 n" in header else "(, n, x)"
    text = H + (
        header
        + "\n    two = Constant <value = int64 {2}> ()\n    y = Loop "
        + trips
        + """ <body = b (int64 i, bool c_in, float[2,4] t) => (bool c_out, float[2,4] t_out) {
        c_out = Less (i, two)
        k = MatMul (w, w)
        t_out = MatMul (t, k)
    }>
}"""
    )
    check_rewrite(Hoist(), text, None)


def test_scan_bodies_too() -> None:
    scan = """m (float[2,4] x, float[3,4] xs) => (float[2,4] y, float[3,4] ys) {
    %s
    y, ys = Scan (x, xs) <num_scan_inputs = 1, body = b (float[2,4] s, float[4] e) => (
        float[2,4] s_out, float[4] e_out) {
        %s
        s_out = Add (s, k)
        e_out = Mul (e, k)
    }>
}"""
    body = "v = Concat <axis = 0> (xs, xs)  k = ReduceSum <keepdims = 0> (v, axes)"
    check_rewrite(
        Hoist(),
        H + scan % ("axes = Constant <value = int64[1] {0}> ()", body),
        H + scan % ("axes = Constant <value = int64[1] {0}> ()  " + body, ""),
    )


# -- the Conformer decoder loop, and generated graphs ----------------------------------------


#: A small Conformer (same structure: 2 decoder layers, a data-dependent exit) keeps this fast.
SMALL = {"width": 32, "d_model": 32, "max_len": 12}


def test_the_conformer_cross_attention_projections_run_once() -> None:
    import neffkit
    from neffkit.examples.conformer import example_input, export_conformer_onnx
    from neffkit.ir.serde import to_onnx

    original = export_conformer_onnx(**SMALL).SerializeToString()
    g = neffkit.load(original)
    (loop,) = [n for n in g if n.op_type == "Loop"]
    body = loop.attr("body")
    before = {n for n in body if n.op_type == "MatMul"}
    result = Hoist().run(g, PassContext())
    verify(g)
    assert result.changed and result.stats["loops"] == 1
    # the key and value projections of the encoder output, in both decoder layers: they now
    # run once, before the loop, on the encoder output (a value of the top-level graph)
    moved = [n for n in before if n.graph is g]
    assert len(moved) == 4 and len(before) - len(moved) == sum(n.op_type == "MatMul" for n in body)
    assert len({n.inputs[0] for n in moved}) == 1 and moved[0].inputs[0].graph is g
    assert not Hoist().run(g, PassContext()).changed
    feeds = {"image": example_input(SMALL["width"])}
    want = Runner(original, "onnxruntime")(feeds)
    after = to_onnx(g).SerializeToString()
    for backend in ("onnxruntime", "torch"):
        got = Runner(after, backend)(feeds)
        for c in compare_all(want, got, names=["tokens"]):
            assert c.ok, f"{backend}: {explain(c)}"
        assert np.array_equal(want[0], got[0])


def test_generated_graphs_with_loops_keep_every_property() -> None:
    ops = ["Loop", "If", "Add", "Mul", "Relu", "Neg", "MatMul", "Reshape", "Transpose", "Cast"]
    summary = check_pass(Hoist, max_examples=60, ops=ops, max_ops=6, torch=True)
    # which graphs hypothesis draws depends on what else the session imported: 6 to 15 of the
    # 60 have a loop the pass changes
    assert summary.changed > 0, summary
