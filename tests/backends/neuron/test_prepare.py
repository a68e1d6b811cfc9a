"""The rewrites on the backend's copy of a graph: value picks become ``Where``, partitions
read their weights as their own; the non-cases stay."""

from __future__ import annotations

import numpy as np

from neffkit.backends.neuron.prepare import own_weights, selects_to_where
from neffkit.execution import Runner
from neffkit.ir.text import parse

PICK = """
<ir_version: 8, opset_import: ["" : 17]>
m (float[2] a, float[2] b, bool c) => (float[2] y, float[?] z) {
    y = If (c) <then_branch = t () => (float[2] p) { p = Identity (a) },
                else_branch = e () => (float[2] q) { q = Identity (b) }>
    z = If (c) <then_branch = t2 () => (float[2] p2) { p2 = Identity (a) },
                else_branch = e2 () => (float[?] q2) { q2 = Concat <axis = 0> (a, b) }>
}
"""


def test_a_pick_between_two_values_becomes_where_and_nothing_else_does() -> None:
    g = parse(PICK)
    feeds = [
        {"a": np.array([1.0, 2.0], np.float32), "b": np.array([3.0, 4.0], np.float32), "c": c}
        for c in (np.array(True), np.array(False))
    ]
    want = [Runner(g, "onnxruntime")(f) for f in feeds]
    assert selects_to_where(g) == 1
    assert [n.op_type for n in g] == ["Where", "If"]  # the If that computes stays
    assert selects_to_where(g) == 0  # a second run changes nothing
    for f, w in zip(feeds, want):
        for got, expected in zip(Runner(g, "onnxruntime")(f), w):
            np.testing.assert_array_equal(got, expected)


def test_a_pick_of_two_shapes_stays_an_if() -> None:
    g = parse(PICK.replace("float[2] b", "float[3] b").replace("(float[2] q)", "(float[3] q)"))
    assert selects_to_where(g) == 0


def test_only_partition_graphs_take_the_outer_weights_as_their_own(partitioned) -> None:
    from neffkit.ir.clone import clone_graph

    g = clone_graph(partitioned)
    copied = own_weights(g)
    assert copied > 0
    assert own_weights(g) == 0  # nothing is read from outside any more
    assert not own_weights(parse(PICK))  # no partitions: nothing to do


HANDED_ON = """
<ir_version: 8, opset_import: ["" : 17]>
m (float[2] a, float[2] b, int64 i, int64 j, bool c) => (float[2] y, int64 k) {
    y, k = If (c) <then_branch = t () => (float[2] a, int64 j) { },
                   else_branch = e () => (float[2] q, int64 i) { q = Identity (b) }>
}
"""


def test_a_branch_that_returns_outer_values_as_they_are_is_a_pick() -> None:
    # what the unrolled steps' exit tests look like after the default pipeline: branches with
    # no node, several outputs; each output becomes one Where
    g = parse(HANDED_ON)
    feeds = [
        {
            "a": np.array([1.0, 2.0], np.float32),
            "b": np.array([3.0, 4.0], np.float32),
            "i": np.array(5, np.int64),
            "j": np.array(6, np.int64),
            "c": c,
        }
        for c in (np.array(True), np.array(False))
    ]
    want = [Runner(g, "onnxruntime")(f) for f in feeds]
    assert selects_to_where(g) == 1
    assert [n.op_type for n in g] == ["Where", "Where"]
    for f, w in zip(feeds, want):
        for got, expected in zip(Runner(g, "onnxruntime")(f), w):
            np.testing.assert_array_equal(got, expected)
