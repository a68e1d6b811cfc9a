"""The worklist driver: a rule set of its own runs through it as ``simplify``'s does, a pass
can be a thin client of it, and a rule that never stops firing is capped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph, Node
from neffkit.ir.text import parse
from neffkit.passes import Pass, PassContext, PassResult
from neffkit.passes.rewrite.driver import disabled_names, drive, run_rules
from neffkit.passes.rewrite.patterns import producer
from neffkit.passes.rewrite.registry import RuleSet
from neffkit.passes.rewrite.rewriter import Rewriter
from neffkit.testing import check_rewrite
from neffkit.testing.text import model_text

#: a rule set that only tests use: two rules, nothing from neffkit's own set
TINY = RuleSet("tiny")


@TINY.rule("Abs")
def fuse_abs_abs(node: Node, rw: Rewriter) -> bool:
    """Abs(Abs(x)) -> Abs(x)"""
    inner = producer(node.inputs[0], "Abs")
    if inner is None or inner.inputs[0] is None:
        return False
    rw.set_input(node, 0, inner.inputs[0])
    return True


@TINY.rule("Abs", "Neg", pattern="Abs(Neg(x)) -> Abs(x)")
def drop_neg_under_abs(node: Node, rw: Rewriter) -> bool:
    if node.op_type != "Abs":
        return False
    inner = producer(node.inputs[0], "Neg")
    if inner is None or inner.inputs[0] is None:
        return False
    rw.set_input(node, 0, inner.inputs[0])
    return True


@dataclass(frozen=True)
class Tidy(Pass):
    """A pass that runs its own rule set (not registered: a test-only client)."""

    name: ClassVar[str] = "tidy-abs"
    description: ClassVar[str] = "test-only rule set"
    disable: str = ""

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        return run_rules(graph, ctx, TINY, disable=self.disable)


def test_a_rule_set_of_its_own_runs_through_the_driver() -> None:
    before = model_text(
        "m (float[3] x) => (float[3] y)"
        " { n = Neg(x) a = Abs(n) b = Abs(a) i = Identity(b) y = Abs(i) }"
    )
    # the Identity stays: simplify's drop_identity is no rule of this set
    after = model_text("m (float[3] x) => (float[3] y) { b = Abs(x) i = Identity(b) y = Abs(i) }")
    g = check_rewrite(Tidy(), before, after)
    assert [n.op_type for n in g] == ["Abs", "Identity", "Abs"]
    result = Tidy().run(parse(before), PassContext())
    assert result.stats == {
        "drop_neg_under_abs": 1,
        "fuse_abs_abs": 1,
        "rewrites": 2,
        "dead_nodes_removed": 2,
    }


def test_a_rule_set_of_its_own_can_disable_its_rules_and_names_itself_in_errors() -> None:
    text = model_text("m (float[3] x) => (float[3] y) { n = Neg(x) y = Abs(n) }")
    check_rewrite(Tidy(disable="drop_neg_under_abs"), text, None)
    with pytest.raises(NeffkitError, match=r"tiny: unknown rule\(s\) drop_identity"):
        Tidy(disable="drop_identity").run(parse(text), PassContext())


def test_disabled_names_split_on_plus_bar_and_spaces() -> None:
    assert disabled_names("a+b|c d") == {"a", "b", "c", "d"}
    assert disabled_names("") == set()


def test_rewrite_loops_are_capped() -> None:
    def flip(node: Node, rw: Rewriter) -> bool:  # a rule that never stops "changing"
        node.set_attr("flip", 1 - node.attr("flip", 0))
        return True

    g = parse(model_text("m (float[2,3] x) => (float[2,3] y) { y = Relu(x) }"))
    rw = Rewriter(g, PassContext())
    counts = drive(g, rw, {"Relu": [flip]}, 5)
    assert counts == {"flip": 5} and rw.limit_hits == 1
