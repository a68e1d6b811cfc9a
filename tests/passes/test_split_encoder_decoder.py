"""``split``: Loops marked as host loops in metadata_props, value-selecting Ifs in the body
rewritten, non-cases, and the Conformer's numbers unchanged on onnxruntime and torch."""

from __future__ import annotations

import numpy as np
import pytest

import neffkit
from neffkit.examples import example_input, export_conformer_onnx
from neffkit.examples.conformer import EOS_ID
from neffkit.execution import Runner
from neffkit.ir.clone import clone_graph
from neffkit.ir.serde import to_onnx
from neffkit.ir.tensor import Tensor
from neffkit.ir.text import parse, print_graph
from neffkit.ir.units import HOST_LOOP_KEY, host_loops
from neffkit.passes.base import PassContext
from neffkit.passes.registry import get_pass
from neffkit.passes.split_encoder_decoder import SplitEncoderDecoder
from neffkit.testing import check_rewrite

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'

COUNTER = (
    HEADER
    + """
m (float[2] x) => (float[2] y) {
    n = Constant <value = int64 {4}> ()
    c = Constant <value = bool {1}> ()
    y = Loop (n, c, x) <body = g (int64 i, bool ci, float[2] v) => (bool co, float[2] w) {
        co = Identity (ci)
        w = Add (v, x)
    }>
}
"""
)


def test_names_and_marks_a_top_level_loop() -> None:
    after = COUNTER.replace("y = Loop", "[host_loop_0] y = Loop")
    g = check_rewrite(SplitEncoderDecoder(), COUNTER, after)
    assert g.meta.metadata_props == {HOST_LOOP_KEY + "host_loop_0": "step"}
    assert [n.name for n in host_loops(g)] == ["host_loop_0"]


def test_keeps_the_name_a_loop_has() -> None:
    before = COUNTER.replace("y = Loop", "[decode] y = Loop")
    g = check_rewrite(SplitEncoderDecoder(), before, before)
    assert g.meta.metadata_props == {HOST_LOOP_KEY + "decode": "step"}


def test_a_loop_sharing_its_name_gets_its_own() -> None:
    before = COUNTER.replace("y = Loop", "[same] y = Loop").replace(
        "float[2] y) {", "float[2] y) {\n    [same] x2 = Relu (x)"
    )
    after = before.replace("[same] y = Loop", "[host_loop_0] y = Loop")
    # onnxruntime refuses two nodes of one name: no numbers before the pass
    g = check_rewrite(SplitEncoderDecoder(), before, after, numeric=False)
    assert g.meta.metadata_props == {HOST_LOOP_KEY + "host_loop_0": "step"}


def test_marking_survives_the_onnx_round_trip() -> None:
    g = parse(COUNTER)
    SplitEncoderDecoder().run(g, PassContext())
    again = neffkit.load(to_onnx(g))
    assert [n.name for n in host_loops(again)] == ["host_loop_0"]


SELECT = (
    HEADER
    + """
m (float[2] x, bool[1] s) => (float[2] y, bool b) {
    n = Constant <value = int64 {3}> ()
    c = Constant <value = bool {1}> ()
    t = Constant <value = bool {1}> ()
    f = Constant <value = bool {0}> ()
    y, b = Loop (n, c, x, s) <body = g (int64 i, bool ci, float[2] v, bool[1] k)
            => (bool co, float[2] w, bool[1] k2) {
        co = Identity (ci)
        p = Identity (k)
        r = If (p) <then_branch = th () => (bool o1) { o1 = Identity (t) },
                    else_branch = el () => (bool o2) { o2 = Identity (f) }>
        w = Add (v, x)
        k2 = Not (k)
    }>
}
"""
)


def test_an_if_that_selects_a_bool_becomes_and_or() -> None:
    # the If's output is unread in this loop body; make it the cond so it matters
    before = SELECT.replace("co = Identity (ci)", "co = Identity (r)")
    g = parse(before)
    feeds = {"x": np.ones(2, np.float32), "s": np.array([True])}
    want = Runner(g, "onnxruntime")(feeds)
    result = SplitEncoderDecoder().run(g, PassContext())
    assert result.stats == {"host_loops": 1, "if_to_where": 1}
    body = host_loops(g)[0].attr("body")
    ops = [n.op_type for n in body]
    assert "If" not in ops and ops.count("And") == 2 and "Or" in ops and "Not" in ops
    for s in (True, False):
        feeds = {"x": np.ones(2, np.float32), "s": np.array([s])}
        for backend in ("onnxruntime", "torch"):
            got = Runner(g, backend)(feeds)
            ref = Runner(parse(before), "onnxruntime")(feeds)
            for a, b in zip(got, ref):
                np.testing.assert_array_equal(a, b)
    assert len(want) == 2


def test_an_if_that_selects_a_float_becomes_where() -> None:
    before = (
        HEADER
        + """
m (float[2] x, bool[1] s) => (float[2] y) {
    n = Constant <value = int64 {3}> ()
    c = Constant <value = bool {1}> ()
    a = Constant <value = float[2] {1.0, 2.0}> ()
    z = Constant <value = float[2] {-1.0, 5.0}> ()
    y = Loop (n, c, x) <body = g (int64 i, bool ci, float[2] v) => (bool co, float[2] w) {
        co = Identity (ci)
        r = If (s) <then_branch = th () => (float[2] o1) { o1 = Identity (a) },
                    else_branch = el () => (float[2] o2) { o2 = Identity (z) }>
        w = Add (v, r)
    }>
}
"""
    )
    g = check_rewrite(SplitEncoderDecoder(), before, _printed_after(before))
    body = host_loops(g)[0].attr("body")
    assert [n.op_type for n in body] == ["Identity", "Reshape", "Where", "Add"]


def test_an_if_whose_branch_returns_its_own_constant_becomes_where() -> None:
    # as the exporter writes the Conformer's exit test: one branch returns its own initializer
    before = (
        HEADER
        + """
m (float[2] x, bool[1] s) => (float[2] y) {
    n = Constant <value = int64 {3}> ()
    c = Constant <value = bool {1}> ()
    z = Constant <value = float[2] {-1.0, 5.0}> ()
    y = Loop (n, c, x) <body = g (int64 i, bool ci, float[2] v) => (bool co, float[2] w) {
        co = Identity (ci)
        r = If (s) <then_branch = th () => (float[2] o1) <float[2] o1 = {1.0, 2.0}> { },
                    else_branch = el () => (float[2] o2) { o2 = Identity (z) }>
        w = Add (v, r)
    }>
}
"""
    )
    g = parse(before)
    result = SplitEncoderDecoder().run(g, PassContext())
    assert result.stats == {"host_loops": 1, "if_to_where": 1}
    body = host_loops(g)[0].attr("body")
    assert [n.op_type for n in body] == ["Identity", "Reshape", "Where", "Add"]
    assert body.initializers["o1"].const.numpy().tolist() == [1.0, 2.0]
    for s in (True, False):
        feeds = {"x": np.ones(2, np.float32), "s": np.array([s])}
        ref = Runner(parse(before), "onnxruntime")(feeds)[0]
        for backend in ("onnxruntime", "torch"):
            np.testing.assert_array_equal(Runner(g, backend)(feeds)[0], ref)


def _printed_after(before: str) -> str:
    """The expected text: the loop named, the If replaced by Reshape + Where."""
    g = parse(before)
    SplitEncoderDecoder().run(g, PassContext())
    return print_graph(g)


def test_an_if_that_computes_stays() -> None:
    before = (
        HEADER
        + """
m (float[2] x, bool[1] s) => (float[2] y) {
    n = Constant <value = int64 {3}> ()
    c = Constant <value = bool {1}> ()
    y = Loop (n, c, x) <body = g (int64 i, bool ci, float[2] v) => (bool co, float[2] w) {
        co = Identity (ci)
        w = If (s) <then_branch = th () => (float[2] o1) { o1 = Add (v, x) },
                    else_branch = el () => (float[2] o2) { o2 = Identity (v) }>
    }>
}
"""
    )
    after = before.replace("y = Loop", "[host_loop_0] y = Loop")
    g = check_rewrite(SplitEncoderDecoder(), before, after)
    assert "If" in [n.op_type for n in host_loops(g)[0].attr("body")]


def test_does_not_fire_without_a_top_level_loop() -> None:
    plain = HEADER + "\nm (float[2] x) => (float[2] y) { y = Relu (x) }"
    check_rewrite(SplitEncoderDecoder(), plain, None)


def test_a_loop_inside_an_if_is_left_alone_and_counted() -> None:
    before = (
        HEADER
        + """
m (float[2] x, bool s) => (float[2] y) {
    y = If (s) <then_branch = th () => (float[2] o1) {
        n = Constant <value = int64 {2}> ()
        c = Constant <value = bool {1}> ()
        o1 = Loop (n, c, x) <body = g (int64 i, bool ci, float[2] v) => (bool co, float[2] w) {
            co = Identity (ci)
            w = Add (v, x)
        }>
    }, else_branch = el () => (float[2] o2) { o2 = Identity (x) }>
}
"""
    )
    g = parse(before)
    result = SplitEncoderDecoder().run(g, PassContext())
    assert not result.changed and result.stats == {"nested_loops_left": 1}
    assert not g.meta.metadata_props


def test_is_registered_as_split() -> None:
    assert get_pass("split") is SplitEncoderDecoder


@pytest.fixture(scope="module")
def conformer() -> neffkit.Graph:
    # a small Conformer (same structure: the Loop, its If and its exit at EOS) keeps this fast
    small = {"d_model": 32, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 1}
    return neffkit.load(export_conformer_onnx(width=32, max_len=20, **small))


def with_eos_bias(graph: neffkit.Graph, bias: float) -> neffkit.Graph:
    """A copy of the Conformer whose EOS logit bias is ``bias`` (larger: shorter outputs)."""
    g = clone_graph(graph)
    v = g.initializers["decoder.out.bias"]
    assert v.const is not None
    arr = v.const.numpy().copy()
    arr[EOS_ID] = bias
    v.const = Tensor(arr)
    return g


def test_conformer_outputs_unchanged_on_onnxruntime_and_torch(conformer) -> None:
    lengths = []
    # EOS at the first step, a middle one, later, and never (all 20 steps run)
    for bias in (8.0, 3.0, 2.0, -4.0):
        original = with_eos_bias(conformer, bias)
        split = clone_graph(original)
        result = SplitEncoderDecoder().run(split, PassContext())
        assert result.stats == {"host_loops": 1, "if_to_where": 1}
        x = example_input(32, 0)
        want = Runner(original, "onnxruntime")([x])[0]
        lengths.append(want.shape[1])
        np.testing.assert_array_equal(Runner(split, "onnxruntime")([x])[0], want)
        np.testing.assert_array_equal(Runner(split, "torch")([x])[0], want)
    assert lengths == [1, 4, 14, 20]
