"""``check_rewrite`` passes a right pass and names what a wrong one breaks."""

from __future__ import annotations

import numpy as np
import pytest

import neffkit.testing
from neffkit.ir.text import normalize, parse, print_body
from neffkit.passes.eliminate_dead_code import EliminateDeadCode
from neffkit.testing import check_rewrite, run_checked
from neffkit.testing.text import model_text
from tests.helpers import HidesChange, NegToRelu, Nudge

DEAD = model_text("m (float[2] x) => (float[2] y) { t = Relu(x) y = Neg(x) }")
CLEAN = model_text("m (float[2] x) => (float[2] y) { y = Neg(x) }")


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
    relu = model_text("m (float[2] x) => (float[2] y) { y = Relu(x) }")
    with pytest.raises(AssertionError, match=r"output 'y' changed: \d of 2 elements outside rtol"):
        check_rewrite(NegToRelu(), CLEAN, relu)
    check_rewrite(NegToRelu(), CLEAN, relu, numeric=False)


def test_a_second_run_that_changes_is_caught() -> None:
    relu = model_text("m (float[2] x) => (float[2] y) { y = Relu(x) }")
    with pytest.raises(AssertionError, match="second run changed"):
        check_rewrite(NegToRelu(every_time=True), CLEAN, relu, numeric=False)


def test_pipeline_text_runs_through_the_pass_manager() -> None:
    sig = "m (float[2] x) => (float[2] y)"
    folds = model_text(sig + "<float[2] w = {1, 2}> { n = Neg(w) y = Add(x, n) }")
    folded = model_text(sig + "<float[2] n = {-1, -2}> { y = Add(x, n) }")
    check_rewrite("fold,dce", folds, folded)
    with pytest.raises(AssertionError, match="the graph after the pass is"):
        check_rewrite("fold", folds, folded)  # fold alone leaves w to dce


def test_tolerances_default_to_the_compare_policy_and_can_be_given() -> None:
    sig = "m (float[2] x) => (float[2] y)"
    nudged = model_text(sig + "<float[2] w = {100, 200}> { y = Add(x, w) }")
    off = model_text(sig + "<float[2] w = {100.1, 200.1}> { y = Add(x, w) }")
    with pytest.raises(AssertionError, match=r"outside rtol=0.0001 atol=1e-05"):
        check_rewrite(Nudge(), nudged, off)
    check_rewrite(Nudge(), nudged, off, rtol=1e-2)


def test_run_checked_checks_numbers_and_the_rerun_and_returns_the_result() -> None:
    g = parse(DEAD)
    assert run_checked(EliminateDeadCode, g).changed is True
    assert print_body(g) == normalize(CLEAN)
    with pytest.raises(AssertionError, match="output 'y' changed"):
        run_checked(NegToRelu(), parse(CLEAN), feeds={"x": np.array([1, -1], np.float32)})
    run_checked(NegToRelu(), parse(CLEAN), numeric=False)
    with pytest.raises(AssertionError, match="second run changed"):
        run_checked(NegToRelu(every_time=True), parse(CLEAN), numeric=False)
    with pytest.raises(AssertionError, match="said changed=False but changed the graph"):
        run_checked(HidesChange(), parse(CLEAN), numeric=False)
