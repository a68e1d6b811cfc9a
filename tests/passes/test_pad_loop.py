"""``pad-loop``: text before/after on a small growing loop, every rule exact against onnxruntime
and the torch backend (attention over the steps so far, reductions, positions, the last
positions, early exit at the first, a middle and the last step), refusals that name the node,
generated loops, and the Conformer."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from neffkit.backends.torch import to_torchscript
from neffkit.execution import Runner
from neffkit.ir.clone import clone_graph
from neffkit.ir.core import Graph
from neffkit.ir.text import parse
from neffkit.ir.units import host_loops
from neffkit.passes import PassContext, get_pass, parse_pipeline
from neffkit.passes.manager import PassManager
from neffkit.testing import check_pass, check_rewrite, run_checked
from tests.passes.test_unroll_loops_conformer import MAX_LEN, _images, _small_conformer

H = '<ir_version: 8, opset_import: ["" : 17]>\n'
PadLoop = get_pass("pad-loop")


def _decoder(body: str, trip: int = 5, cond: str = "") -> str:
    """A loop over ``t`` (``[1, L, 4]``, L = 1 + steps so far) whose body computes the new row
    ``r`` (``[1, 1, 4]``) from ``t``; ``co`` may be given by the body (else it is ``c``)."""
    co = "" if "co =" in body else "co = Identity (c)"
    return (
        H
        + "m (float[1,1,4] x, float[4,4] w, float thr) => (float[1,?,4] y) {\n"
        + f"    n = Constant <value = int64 {{{trip}}}> ()\n"
        + f"    y = Loop (n, {cond}, x) <body = b (int64 i, bool c, float[1,?,4] t)"
        + " => (bool co, float[1,?,4] t2) {\n"
        + f"        {co}\n{body}\n"
        + "        t2 = Concat <axis = 1> (t, r)\n    }>\n}"
    )


# the last position of t, through w: the usual "logits of the last token"
LAST = """
        k1 = Constant <value = int64 {-1}> ()
        last = Gather <axis = 1> (h, k1)
        z = MatMul (last, w)
        a1 = Constant <value = int64[1] {1}> ()
        zt = Tanh (z)
        r = Unsqueeze (zt, a1)
"""

BODIES = {
    # split into two heads of 2 and back, the shapes read from the data (as exported)
    "heads": """
        sh = Shape (t)
        z0 = Constant <value = int64[1] {0}> ()
        o1 = Constant <value = int64[1] {1}> ()
        b = Gather <axis = 0> (sh, z0)
        ln = Gather <axis = 0> (sh, o1)
        two = Constant <value = int64[2] {2, 2}> ()
        shp = Concat <axis = 0> (b, ln, two)
        hd = Reshape (t, shp)
        ht = Transpose <perm = [0, 2, 1, 3]> (hd)
        htt = Transpose <perm = [0, 1, 3, 2]> (ht)
        s = MatMul (ht, htt)
        p = Softmax <axis = -1> (s)
        c = MatMul (p, ht)
        back = Transpose <perm = [0, 2, 1, 3]> (c)
        four = Constant <value = int64[1] {4}> ()
        flat = Concat <axis = 0> (b, ln, four)
        h = Reshape (back, flat)
"""
    + LAST,
    # attention of every position over every position so far, then the last row
    "attention": """
        tt = Transpose <perm = [0, 2, 1]> (t)
        s = MatMul (t, tt)
        p = Softmax <axis = -1> (s)
        h = MatMul (p, t)
"""
    + LAST,
    # causal attention with the mask built from positions (as exported from PyTorch)
    "causal": """
        sh = Shape (t)
        one = Constant <value = int64 {1}> ()
        zero = Constant <value = int64 {0}> ()
        ln = Gather <axis = 0> (sh, one)
        pos = Range (zero, ln, one)
        a0 = Constant <value = int64[1] {0}> ()
        a1b = Constant <value = int64[1] {1}> ()
        pq = Unsqueeze (pos, a1b)
        pk = Unsqueeze (pos, a0)
        fut = Greater (pk, pq)
        tt = Transpose <perm = [0, 2, 1]> (t)
        s = MatMul (t, tt)
        big = Constant <value = float {-10000.0}> ()
        sm = Where (fut, big, s)
        p = Softmax <axis = -1> (sm)
        h = MatMul (p, t)
"""
    + LAST,
    # reductions over the steps so far: mean, max, sum, argmax
    "reduce": """
        m1 = ReduceMean <axes = [1], keepdims = 1> (t)
        m2 = ReduceMax <axes = [1], keepdims = 1> (t)
        ax = Constant <value = int64[1] {1}> ()
        m3 = ReduceSum <keepdims = 1> (t, ax)
        am = ArgMax <axis = 1, keepdims = 1> (t)
        amf = Cast <to = 1> (am)
        d12 = Sub (m1, m2)
        m3t = Mul (m3, thr)
        s3 = Add (d12, m3t)
        s4 = Add (s3, amf)
        r = Tanh (s4)
""",
    # position features from the length, a cumulative sum, the last two positions
    "positions": """
        sh = Shape (t)
        one = Constant <value = int64 {1}> ()
        zero = Constant <value = int64 {0}> ()
        ln = Gather <axis = 0> (sh, one)
        posi = Range (zero, ln, one)
        pos = Cast <to = 1> (posi)
        a02 = Constant <value = int64[2] {0, 2}> ()
        posb = Unsqueeze (pos, a02)
        tp = Add (t, posb)
        cs = CumSum (tp, one)
        st = Constant <value = int64[1] {-1}> ()
        en = Constant <value = int64[1] {9223372036854775807}> ()
        axs = Constant <value = int64[1] {1}> ()
        tail = Slice (cs, st, en, axs)
        lenf = Cast <to = 1> (ln)
        ts = ReduceSum <keepdims = 1> (tail, axs)
        r = Div (ts, lenf)
""",
}


def _feeds(x_scale: float = 1.0, thr: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": (x_scale * rng.standard_normal((1, 1, 4))).astype(np.float32),
        "w": rng.standard_normal((4, 4)).astype(np.float32),
        "thr": np.array(thr, np.float32),
    }


def _same(before: str, feeds: dict[str, np.ndarray]) -> Graph:
    """Pads a copy; outputs equal on onnxruntime and the torch backend. Returns the result."""
    g = parse(before)
    ref = Runner(clone_graph(g), "onnxruntime")(feeds)[0]
    result = run_checked(PadLoop(), g, feeds=feeds)
    assert result.changed and result.stats.get("loops_padded") == 1, result.stats
    for backend in ("onnxruntime", "torch"):
        got = Runner(g, backend)(feeds)[0]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    return g


@pytest.mark.parametrize("name", sorted(BODIES))
def test_each_body_pads_exactly(name: str) -> None:
    g = _same(_decoder(BODIES[name]), _feeds())
    (loop,) = [n for n in g if n.op_type == "Loop"]
    body = loop.attr("body")
    # one shape: the buffer [1, 1 + 5, 4] and every value of the body static
    assert body.inputs[2].shape == (1, 6, 4)
    loose = [v.name for n in body for v in n.outputs if v.type is None or not v.type.is_static]
    assert loose == []


EXIT = """
        rs = ReduceSum <keepdims = 0> (r)
        co = Less (rs, thr)
"""


@pytest.mark.parametrize("body", ["causal", "heads"])
def test_a_symbolic_batch_stays_symbolic(body: str) -> None:
    # the batch is a symbol everywhere: the walk relates dims through it, not through numbers
    before = (
        _decoder(BODIES[body])
        .replace("float[1,1,4] x", "float[B,1,4] x")
        .replace("float[1,?,4]", "float[B,?,4]")
    )
    feeds = _feeds()
    feeds["x"] = np.random.default_rng(1).standard_normal((3, 1, 4)).astype(np.float32)
    g = _same(before, feeds)
    body = [n for n in g if n.op_type == "Loop"][0].attr("body")
    assert body.inputs[2].shape == ("B", 6, 4)


@pytest.mark.parametrize(("thr", "steps"), [(-100.0, 1), (-1.0, 2), (0.0, 3), (100.0, 5)])
def test_early_exit_keeps_the_steps_that_ran(thr: float, steps: int) -> None:
    # the exit reads the new row: after the first step, a middle one, or never (5 steps)
    body = BODIES["attention"] + EXIT
    before = _decoder(body, cond="c0").replace(
        "    y = Loop", "    c0 = Constant <value = bool {1}> ()\n    y = Loop"
    )
    feeds = _feeds(thr=thr)
    g = _same(before, feeds)
    assert Runner(g, "torch")(feeds)[0].shape == (1, 1 + steps, 4)


def test_text_before_and_after() -> None:
    before = (
        H
        + """m (float[1,1] x) => (float[1,?] y) {
        n = Constant <value = int64 {2}> ()
        y = Loop (n, , x) <body = b (int64 i, bool c, float[1,?] t) => (bool co, float[1,?] t2) {
            co = Identity (c)
            k = Constant <value = int64 {-1}> ()
            last = Gather <axis = 1> (t, k)
            a = Constant <value = int64[1] {1}> ()
            rl = Relu (last)
            r = Unsqueeze (rl, a)
            t2 = Concat <axis = 1> (t, r)
        }>
    }"""
    )
    # the buffer holds 1 + 2 positions; the last position is read at L - 1, the new row
    # written at L; the loop also carries L, and the tokens are cut to it after the loop
    after = (
        H
        + """m (float[1,1] x) => (float[1,?] y)
        <int64[4] pad_pads = {0,0,0,2}, int64 pad_len0 = {1}, int64[1] pad_one = {1},
         int64[1] pad_zero = {0}, int64 n, float[1,3] pad_buffer, float[1,3] y__1,
         int64 pad_len_final, int64[1] reshape> {
        n = Constant <value = int64 {2}> ()
        pad_buffer = Pad (x, pad_pads)
        y__1, pad_len_final = Loop (n, , pad_buffer, pad_len0) <body = b (int64 i, bool c,
            float[1,3] t, int64 pad_len) => (bool co, float[1,3] t2, int64 pad_len_next)
            <int64[1,3] pad_const = {0,1,2}, int64 pad_const_1 = {1}, int64 k, int64 pad_add,
             float[1] last, int64[1] a, float[1] rl, float[1,1] r, bool[1,3] pad_equal> {
            co = Identity (c)
            k = Constant <value = int64 {-1}> ()
            pad_add = Add (k, pad_len)
            last = Gather <axis = 1> (t, pad_add)
            a = Constant <value = int64[1] {1}> ()
            rl = Relu (last)
            r = Unsqueeze (rl, a)
            pad_equal = Equal (pad_const, pad_len)
            t2 = Where (pad_equal, r, t)
            pad_len_next = Add (pad_len, pad_const_1)
        }>
        reshape = Reshape (pad_len_final, pad_one)
        y = Slice (y__1, pad_zero, reshape, pad_one)
    }"""
    )
    check_rewrite(PadLoop(), before, after)


REFUSALS = {
    # a second Concat along the steps: not the carried growth
    "Concat": (
        "        d = Concat <axis = 1> (t, t)\n        h = Relu (d)\n" + LAST,
        "concatenates",
    ),
    # a reverse running sum reads later positions, which padding fills with garbage
    "CumSum": (
        "        ax = Constant <value = int64 {1}> ()\n"
        "        h = CumSum <reverse = 1> (t, ax)\n" + LAST,
        "reverse cumulative sum",
    ),
    # an op the pass does not know along the steps
    "TopK": (
        "        kk = Constant <value = int64[1] {1}> ()\n"
        "        h, ix = TopK <axis = 1> (t, kk)\n" + LAST,
        "not known to keep positions apart",
    ),
    # normalizing over the steps mixes valid and padded positions
    "LayerNormalization": (
        "        sc = Constant <value = float[4] {1, 1, 1, 1}> ()\n"
        "        h = LayerNormalization <axis = 1> (t, sc)\n" + LAST,
        "normalizes over the padded axis",
    ),
}


@pytest.mark.parametrize("op", sorted(REFUSALS))
def test_a_body_that_padding_would_change_is_left_alone_naming_the_node(
    op: str, caplog: pytest.LogCaptureFixture
) -> None:
    body, why = REFUSALS[op]
    with caplog.at_level(logging.WARNING, "neffkit.passes.pad_loop"):
        g = parse(_decoder(body))
        result = PadLoop().run(g, PassContext())
    assert result.stats == {"loops_left": 1}
    assert [n.op_type for n in g if n.op_type == "Loop"] == ["Loop"]
    assert not any(v.name == "pad_len" for n in g for v in n.attr("body", g).inputs)
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"({op})" in message or f"the {op} node" in message
    assert why in message


def test_a_loop_without_a_static_bound_or_longer_than_max_len_is_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = _decoder(BODIES["attention"]).replace(
        "float thr)", "float thr, int64 m)"
    ).replace("Loop (n,", "Loop (m,")
    long = _decoder(BODIES["attention"], trip=5)
    with caplog.at_level(logging.WARNING, "neffkit.passes.pad_loop"):
        assert PadLoop().run(parse(runtime), PassContext()).stats == {"loops_left": 1}
        assert PadLoop(max_len=3).run(parse(long), PassContext()).stats == {"loops_left": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert "no static bound" in messages[0]
    assert "may run 5 steps, more than max-len=3" in messages[1]


def test_a_longer_max_len_only_makes_the_buffer_larger() -> None:
    g = _same(_decoder(BODIES["causal"], trip=3), _feeds())
    assert [n for n in g if n.op_type == "Loop"][0].attr("body").inputs[2].shape == (1, 4, 4)
    before = _decoder(BODIES["causal"], trip=3)
    g = parse(before)
    ref = Runner(clone_graph(g), "onnxruntime")(_feeds())[0]
    assert PadLoop(max_len=10).run(g, PassContext()).stats == {"loops_padded": 1}
    np.testing.assert_allclose(Runner(g, "torch")(_feeds())[0], ref, rtol=1e-5, atol=1e-6)
    assert [n for n in g if n.op_type == "Loop"][0].attr("body").inputs[2].shape == (1, 11, 4)


def test_growing_at_the_front_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    before = _decoder(BODIES["attention"]).replace("(t, r)", "(r, t)")
    with caplog.at_level(logging.WARNING, "neffkit.passes.pad_loop"):
        assert PadLoop().run(parse(before), PassContext()).stats == {"loops_left": 1}
    assert "grows at its front" in caplog.records[0].getMessage()


def test_generated_growing_loops_keep_every_property(caplog: pytest.LogCaptureFixture) -> None:
    ops = ["Loop", "If", "Add", "Mul", "Concat", "Relu", "Less", "And", "Where", "Cast",
           "Slice", "ReduceSum", "Softmax", "MatMul", "Transpose", "Gather"]  # fmt: skip
    with caplog.at_level(logging.INFO, "neffkit.passes.pad_loop"):
        summary = check_pass(PadLoop, max_examples=100, torch=True, ops=ops, loops=True)
    assert summary.changed
    padded = [r for r in caplog.records if "positions padded to" in r.getMessage()]
    assert len(padded) >= 3  # generated loops that grew were padded, not only left alone


@pytest.mark.parametrize(("eos_bias", "lengths"), [(4.0, {1}), (-0.5, {2, MAX_LEN})])
def test_the_conformer_pads_exactly_and_its_host_loop_step_is_traced(
    eos_bias: float, lengths: set[int]
) -> None:
    rolled = _small_conformer(eos_bias)
    g = _small_conformer(eos_bias)
    spec = f"pad-loop{{max-len={MAX_LEN}}},(shape-infer,fold,simplify,cse,dce)"
    PassManager(parse_pipeline(spec)).run(g)
    (loop,) = [n for n in g if n.op_type == "Loop"]
    body = loop.attr("body")
    assert body.inputs[2].shape == (1, MAX_LEN + 1)  # BOS + MAX_LEN tokens
    assert all(v.type is not None and v.type.is_static for n in body for v in n.outputs)
    PassManager(parse_pipeline("split")).run(g)
    images = _images()
    module, how = to_torchscript(g, {"image": images[0]})
    assert how.endswith("encoder traced, step traced")  # one shape: traced once for all steps
    reference = Runner(rolled, "onnxruntime")
    runners = [Runner(g, "onnxruntime"), Runner(g, "torch")]
    seen = set()
    for image in images:
        want = reference({"image": image})[0]
        seen.add(want.shape[1])
        for run in runners:
            np.testing.assert_array_equal(run({"image": image})[0], want)
        out = module(torch.from_numpy(image))
        out = out[0] if isinstance(out, tuple) else out
        np.testing.assert_array_equal(out.numpy(), want)
    assert seen == lengths


def test_the_padded_loop_keeps_its_name_and_host_loop_mark() -> None:
    before = _decoder(BODIES["attention"]).replace("    y = Loop", "    [decode] y = Loop")
    g = parse(before)
    PassManager(parse_pipeline("split,pad-loop")).run(g)
    (loop,) = [n for n in g if n.op_type == "Loop"]
    assert loop.name == "decode"
    assert [n.name for n in host_loops(g)] == ["decode"]
