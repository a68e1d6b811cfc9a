"""PassManager: pipelines, fixed points, verification, rollback on failure, reports."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import pytest

from neffkit.errors import PassError
from neffkit.ir.core import Graph, Node
from neffkit.ir.text import parse, print_body
from neffkit.passes import Pass, PassContext, PassManager, PassResult
from neffkit.testing.text import model_text
from tests.helpers import ClaimsChange, KeepsGrowing

MODEL = (
    model_text("""m (float[2] x) => (float[2] y)
    <float[2] w1 = {1.0, 2.0}, float[2] w2 = {1.0, 2.0}> {
    a = Add(x, w1) b = Add(x, w2) d = Exp(a) y = Mul(a, b) }""")
)


@dataclass(frozen=True)
class _Explode(Pass):
    """Test pass: corrupts the graph then raises (or only corrupts)."""

    name: ClassVar[str] = "test-explode"
    description: ClassVar[str] = "test: break the graph"
    raise_error: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        first = next(iter(graph))
        first.outputs[0].replace_all_uses_with(graph.inputs[0])
        graph.insert_before(first, Node("Neg", [first.outputs[0]], name="broken"))
        if self.raise_error:
            raise RuntimeError("boom")
        return PassResult(True, {})


def test_group_runs_to_a_fixed_point_and_reports_per_pass() -> None:
    g = parse(MODEL)
    report = PassManager("(dedup,cse,dce)", verify_each=True).run(g)
    assert print_body(g) == print_body(
        parse(
            model_text(
                "m (float[2] x) => (float[2] y) <float[2] w1 = {1.0, 2.0}> "
                "{ a = Add(x, w1) y = Mul(a, a) }"
            )
        )
    )
    names = [r.name for r in report.records]
    # round 2: dedup and cse run again (the graph changed since they ran); dce is skipped,
    # nothing having changed since its own run
    assert names == ["dedup", "cse", "dce", "dedup", "cse"]
    assert report.nodes_before == 4 and report.nodes_after == 2
    assert report.bytes_before == 16 and report.bytes_after == 8
    assert "dedup" in report.table() and report.to_dict()["per_pass"]["cse"]["runs"] == 2


def test_a_pass_that_claims_a_change_cannot_keep_its_group_spinning(registered_pass) -> None:
    g = parse(MODEL)
    report = PassManager(f"({registered_pass(ClaimsChange)}){{max-iter=4}}").run(g)
    assert len(report.records) == 1  # nothing changed since it ran: the rerun is skipped


def test_group_iteration_cap_bounds_a_pass_that_keeps_changing(registered_pass) -> None:
    g = parse(MODEL)
    report = PassManager(f"({registered_pass(KeepsGrowing)}){{max-iter=3}}").run(g)
    assert len(report.records) == 3 and all(r.changed for r in report.records)


def test_failing_pass_is_named_with_its_history_and_the_graph_is_restored(
    registered_pass,
) -> None:
    registered_pass(_Explode)
    g = parse(MODEL)
    before = print_body(g)
    with pytest.raises(PassError) as e:
        PassManager("dedup,test-explode,dce").run(g)
    assert "pass 'test-explode' failed" in str(e.value) and "boom" in str(e.value)
    assert e.value.previous == ["dedup"]
    # restored to the state after dedup (before the failing pass), not to the start
    assert print_body(g) != before
    assert "broken" not in print_body(g)
    assert len(g.initializers) == 1


def test_pass_that_breaks_the_ir_is_caught_by_the_verifier(registered_pass) -> None:
    registered_pass(_Explode)
    g = parse(MODEL)
    with pytest.raises(PassError, match="before it is defined"):
        PassManager("test-explode{raise-error=false}").run(g)
    assert print_body(g) == print_body(parse(MODEL))


def test_print_ir_after_only_when_changed() -> None:
    g = parse(MODEL)
    out = io.StringIO()
    PassManager("dedup,dedup,cse", print_ir_after={"dedup"}, out=out).run(g)
    assert out.getvalue().count("IR after dedup") == 1
    assert "IR after cse" not in out.getvalue()


@dataclass(frozen=True)
class _Off(Pass):
    """Adds ``delta`` to every Add's second operand: Add(x, c) -> Add(Add(x, c), delta)."""

    name: ClassVar[str] = "test-off"
    delta: float = 1e-3

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        import numpy as np

        from neffkit.ir.core import Value
        from neffkit.ir.tensor import Tensor

        for node in list(graph):
            if node.op_type == "Add" and node.name != "off":
                out = node.outputs[0]
                shifted = Node("Add", [out, None], name="off")
                graph.insert_after(node, shifted)
                c = Value("delta", const=Tensor(np.array(self.delta, np.float32)))
                graph.add_initializer(c)
                shifted.set_input(1, c)
                out.replace_all_uses_with(shifted.outputs[0])
                shifted.set_input(0, out)
                return PassResult(True)
        return PassResult(False)


OFF = model_text("m (float[2] x) => (float[2] y) <float[2] c = {100.0, 200.0}> { y = Add(x, c) }")


def test_verify_each_compares_under_the_dtype_policy_or_the_given_tolerances(
    registered_pass,
) -> None:
    registered_pass(_Off)
    # 1e-3 on values near 100-200 is within float32's rtol 1e-4 ...
    PassManager("test-off", verify_each=True).run(parse(OFF))
    # ... 1e-1 is not, unless the caller allows it
    with pytest.raises(PassError, match=r"test-off.*output 0 \('y'\) changed: 2 of 2 elements"):
        PassManager("test-off{delta=0.1}", verify_each=True).run(parse(OFF))
    PassManager("test-off{delta=0.1}", verify_each=True, atol=0.2).run(parse(OFF))
    with pytest.raises(PassError, match=r"outside rtol=0 atol=1e-06"):
        PassManager("test-off", verify_each=True, rtol=0.0, atol=1e-6).run(parse(OFF))
