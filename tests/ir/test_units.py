"""Compiled-unit marks in the model: which top-level Loops run on the host."""

from __future__ import annotations

from neffkit.ir.text import parse
from neffkit.ir.units import HOST_LOOP_KEY, STEP_UNIT, host_loop_key, host_loops

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
m (float[2] x) => (float[2] y, float[2] z) {
    n = Constant <value = int64 {2}> ()
    y = Loop (n, , x) <body = a (int64 i, bool c, float[2] v) => (bool co, float[2] w) {
        co = Identity (c)
        w = Relu (v)
    }>
    z = Loop (n, , x) <body = b (int64 i, bool c, float[2] v) => (bool co, float[2] w) {
        co = Identity (c)
        w = Neg (v)
    }>
}
"""


def test_only_loops_marked_as_step_units_are_host_loops() -> None:
    g = parse(MODEL)
    first, second = [n for n in g if n.op_type == "Loop"]
    first.name, second.name = "decode", "other"
    assert host_loops(g) == []
    g.meta.metadata_props[host_loop_key(first)] = STEP_UNIT
    g.meta.metadata_props[HOST_LOOP_KEY + "other"] = "something else"
    assert host_loops(g) == [first]
    # asked from inside a body, the answer is still the model's
    assert host_loops(first.attr("body")) == [first]


def test_an_unnamed_loop_is_never_a_host_loop() -> None:
    g = parse(MODEL)
    g.meta.metadata_props[HOST_LOOP_KEY] = STEP_UNIT  # the key an unnamed Loop would have
    assert host_loops(g) == []
