"""``check_rewrite`` passes a right pass and names what a wrong one breaks."""

from __future__ import annotations

import pytest

import neffkit.testing
from neffkit.passes.eliminate_dead_code import EliminateDeadCode
from neffkit.testing import check_rewrite
from tests.helpers import NegToRelu

H = '<ir_version: 8, opset_import: ["" : 17]>\n'
DEAD = H + "m (float[2] x) => (float[2] y) { t = Relu(x) y = Neg(x) }"
CLEAN = H + "m (float[2] x) => (float[2] y) { y = Neg(x) }"


def test_a_right_pass_and_a_non_case_pass() -> None:
    g = check_rewrite(EliminateDeadCode(), DEAD, CLEAN)
    assert [n.op_type for n in g] == ["Neg"]
    check_rewrite(EliminateDeadCode(), CLEAN, None)
    assert neffkit.testing.check_rewrite is check_rewrite


def test_wrong_text_is_reported_with_the_graph_it_got() -> None:
    with pytest.raises(AssertionError, match="(?s)the graph after the pass is:.*y = Neg"):
        check_rewrite(EliminateDeadCode(), DEAD, DEAD)


def test_a_pass_firing_on_a_non_case_is_caught() -> None:
    with pytest.raises(AssertionError, match="must not fire"):
        check_rewrite(EliminateDeadCode(), DEAD, None)


def test_a_hidden_change_is_caught() -> None:
    with pytest.raises(AssertionError, match="changed=False but the graph changed"):
        check_rewrite(NegToRelu(lie=True), CLEAN, None, numeric=False)


def test_wrong_numbers_are_caught() -> None:
    relu = H + "m (float[2] x) => (float[2] y) { y = Relu(x) }"
    with pytest.raises(AssertionError, match=r"output 'y' changed: \d of 2 elements outside rtol"):
        check_rewrite(NegToRelu(), CLEAN, relu)
    check_rewrite(NegToRelu(), CLEAN, relu, numeric=False)


def test_a_second_run_that_changes_is_caught() -> None:
    relu = H + "m (float[2] x) => (float[2] y) { y = Relu(x) }"
    with pytest.raises(AssertionError, match="second run changed"):
        check_rewrite(NegToRelu(every_time=True), CLEAN, relu, numeric=False)
