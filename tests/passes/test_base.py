"""What a pass is: results, the shared context, option checking however a pass is made, the
option listing and pipeline text of one pass, and the helpers every pass uses (subgraphs in
post-order, purity)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph, Node
from neffkit.ir.text import parse
from neffkit.passes.base import (
    Pass,
    PassContext,
    PassResult,
    all_graphs_postorder,
    check_option,
    is_pure,
    option,
)
from neffkit.testing.text import model_text


@dataclass(frozen=True)
class _Options(Pass):
    """Test pass (not registered): one option of each type."""

    name: ClassVar[str] = "test-base-options"
    flag: bool = option(False, "a switch")
    count: int = option(2, "a count")
    ratio: float = option(0.5, "a ratio")
    label: str = option("", "a name")
    ops: list = field(default_factory=list)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        return PassResult(False)


def test_a_result_is_true_when_it_changed_something() -> None:
    assert PassResult(True)
    assert not PassResult(False, {"rewrites": 0})
    a, b = PassResult(False), PassResult(False)
    a.stats["n"] = 1
    assert b.stats == {}  # each result has its own counters


def test_the_context_defaults() -> None:
    ctx = PassContext()
    assert (ctx.target, ctx.max_constant_bytes, ctx.keep_overridable_inputs) == (
        "torch",
        64 * 1024 * 1024,
        False,
    )
    ctx.options["x"] = 1
    assert PassContext().options == {}


def test_the_base_class_runs_nothing() -> None:
    with pytest.raises(NotImplementedError):
        Pass().run(Graph("g"), PassContext())


def test_options_lists_kebab_names_types_defaults_and_help() -> None:
    assert _Options.options() == [
        ("flag", "bool", False, "a switch"),
        ("count", "int", 2, "a count"),
        ("ratio", "float", 0.5, "a ratio"),
        ("label", "str", "", "a name"),
        ("ops", "list", [], ""),
    ]


def test_spec_prints_only_options_that_differ_from_their_default() -> None:
    assert _Options().spec() == "test-base-options"
    assert _Options(flag=True, ratio=1.5).spec() == "test-base-options{flag=true,ratio=1.5}"
    assert _Options(label="x", ops=["Abs"]).spec() == "test-base-options{label=x,ops=['Abs']}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flag": 1}, "option 'flag' of pass 'test-base-options' takes true or false, got 1"),
        ({"count": True}, "takes an integer, got True"),
        ({"count": 2.0}, "takes an integer, got 2.0"),
        ({"count": -1}, "takes a non-negative integer, got -1"),
        ({"ratio": "1"}, "takes a number, got '1'"),
        ({"ratio": False}, "takes a number, got False"),
        ({"ratio": -0.1}, "takes a non-negative number"),
        ({"ratio": float("nan")}, "takes a non-negative number"),
        ({"ratio": float("inf")}, "takes a non-negative number"),
        ({"label": 3}, "takes a string, got 3"),
    ],
)
def test_a_pass_made_in_python_checks_its_options(kwargs: dict, message: str) -> None:
    with pytest.raises(NeffkitError, match=message):
        _Options(**kwargs)


def test_good_option_values_are_kept() -> None:
    p = _Options(flag=True, count=0, ratio=3, label="a", ops=["Relu"])
    assert (p.flag, p.count, p.ratio, p.label, p.ops) == (True, 0, 3, "a", ["Relu"])


def test_check_option_names_the_option_in_kebab_case() -> None:
    with pytest.raises(NeffkitError, match="^option 'max-bytes' of pass 'fold' takes an integer"):
        check_option("fold", "max_bytes", 0, "big")
    check_option("p", "anything", None, object())  # options without a typed default: unchecked


def test_option_carries_its_help_text() -> None:
    (f,) = [f for f in dataclasses.fields(_Options) if f.name == "count"]
    assert (f.default, f.metadata["help"]) == (2, "a count")


NESTED = model_text("""
m (bool c, float[2] x) => (float[2] y) {
    y = If(c) <then_branch = g1 () => (float[2] a) {
                   a = If(c) <then_branch = g3 () => (float[2] p) { p = Neg(x) },
                              else_branch = g4 () => (float[2] q) { q = Abs(x) }> },
               else_branch = g2 () => (float[2] b) { b = Relu(x) }>
}""")


def test_all_graphs_postorder_visits_subgraphs_before_their_holders() -> None:
    g = parse(NESTED)
    order = list(all_graphs_postorder(g))
    assert len(order) == 5 and len(set(map(id, order))) == 5
    assert order[-1] is g
    position = {id(sub): i for i, sub in enumerate(order)}
    for sub in order[:-1]:
        holder = sub.parent.graph
        assert position[id(sub)] < position[id(holder)]


def test_all_graphs_postorder_of_a_flat_graph_is_the_graph() -> None:
    g = parse(model_text("m (float x) => (float y) { y = Neg(x) }"))
    assert list(all_graphs_postorder(g)) == [g]


@pytest.mark.parametrize(
    ("op", "domain", "pure"),
    [
        ("Relu", "", True),
        ("Add", "ai.onnx", True),
        ("RandomNormal", "", False),
        ("RandomUniformLike", "", False),
        ("Multinomial", "", False),
        ("Bernoulli", "", False),
        ("Dropout", "", False),
        ("Relu", "com.example", False),  # unknown semantics: assume effects
    ],
)
def test_is_pure(op: str, domain: str, pure: bool) -> None:
    assert is_pure(Node(op, [], domain=domain)) is pure
