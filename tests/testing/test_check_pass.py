"""``check_pass`` catches broken passes, each by the property it breaks, and hands back a
shrunk graph; a correct pass goes through."""

from __future__ import annotations

import numpy as np
import pytest

from neffkit.ir.text import parse
from neffkit.passes import Pass
from neffkit.testing import (
    CheckSummary,
    GeneratorError,
    PropertyFailure,
    check_graph,
    check_pass,
)
from neffkit.testing.text import model_text
from tests.helpers import (
    BadAttribute,
    BreaksUseLists,
    ClaimsChange,
    DoNothing,
    GrowsForever,
    HidesChange,
    Raises,
    SwapSubOperands,
)


def test_wrong_pass_is_caught_and_shrunk_to_a_tiny_graph() -> None:
    # Control flow off: a failure inside a Loop / If body cannot shrink out of the body, so
    # with it on the shrunk graph keeps the Loop / If around the Sub (4 or 5 nodes, not 3).
    with pytest.raises(PropertyFailure) as info:
        check_pass(SwapSubOperands, max_examples=200, seed=0, max_depth=0)
    err = info.value
    assert err.property == "numeric"
    assert err.pass_name == "test-swap-sub"
    assert err.node_count <= 3, err.text
    assert "Sub" in err.text or "Div" in err.text
    # the carried graph is the reproducer: the failure happens again on it
    with pytest.raises(PropertyFailure, match="numeric"):
        check_graph(SwapSubOperands(), err.graph)


def test_correct_pass_passes() -> None:
    check_pass(DoNothing(), max_examples=30)
    check_pass("cse,dce", max_examples=30)  # pipeline text works too


def test_the_summary_says_how_often_the_pass_changed_the_graph() -> None:
    idle = check_pass(DoNothing(), max_examples=30)
    assert idle == CheckSummary(examples=30, changed=0)
    busy = check_pass("dce", max_examples=30)
    assert busy.examples == 30 and 0 < busy.changed <= 30


@pytest.mark.parametrize(
    ("broken", "prop"),
    [
        (ClaimsChange, "changed-flag"),
        (HidesChange, "changed-flag"),
        (GrowsForever, "fixed-point"),
        (BreaksUseLists, "verifier"),
        (BadAttribute, "checker"),
        (Raises, "runs"),
    ],
)
def test_each_broken_property_is_named(broken: type[Pass], prop: str) -> None:
    with pytest.raises(PropertyFailure) as info:
        check_pass(broken, max_examples=30, seed=1)
    assert info.value.property == prop
    assert info.value.node_count <= 3, info.value.text


def test_check_graph_on_a_hand_written_graph() -> None:
    g = parse(model_text("g (float[2] x) => (float[2] y) { t = Relu(x) y = Sub(x, t) }", opset=18))
    feeds = {"x": np.array([-1.0, 2.0], np.float32)}
    with pytest.raises(PropertyFailure, match="output 0") as info:
        check_graph(SwapSubOperands(), g, feeds=feeds)
    assert info.value.property == "numeric"
    assert "Sub (x, t)" in info.value.text  # the graph as it was before the pass


def test_an_invalid_input_graph_is_not_blamed_on_the_pass() -> None:
    g = parse(model_text("g (float[2] x) => (float[2] y) { y = Relu(x) }", opset=18))
    g.outputs[0].type.dtype = 7  # declared int64, computed float: the checker refuses it
    with pytest.raises(GeneratorError):
        check_graph(DoNothing(), g)


def test_properties_can_be_chosen() -> None:
    check_pass(ClaimsChange, max_examples=10, properties=["runs", "verifier", "numeric"])


def test_the_reproducer_is_given_without_dead_nodes() -> None:
    # whatever hypothesis' shrinker leaves, a node nothing reads is not part of the reproducer
    from neffkit.testing.properties import _without_dead_nodes

    text = model_text(
        """
        g (float[2] x, float[2] y) => (float[2] z) {
            dead = Neg(x)
            b = Abs(y)
            z = Sub(x, b)
        }""",
        opset=18,
    )
    with pytest.raises(PropertyFailure) as info:
        check_graph(SwapSubOperands(), parse(text))
    assert info.value.node_count == 3
    smaller = _without_dead_nodes(SwapSubOperands(), info.value, None, ("numeric",))
    assert smaller.node_count == 2 and smaller.property == "numeric"
    assert "Neg" not in smaller.text
