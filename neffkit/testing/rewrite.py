"""``check_rewrite``: a pass test stated as text, the graph before and the graph after.

The hand-written counterpart of :func:`neffkit.testing.check_pass` (which runs a pass over
generated graphs): one ``before`` graph in ONNX's textual syntax, the ``after`` text the pass
must print, or None for a non-case where it must not fire. :func:`run_checked` is its core
(run, verify, compare numbers, rerun) for tests that check the graph after in their own way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from neffkit.execution.compare import compare_all, explain
from neffkit.execution.inputs import random_inputs
from neffkit.execution.runner import Runner
from neffkit.ir.clone import clone_graph
from neffkit.ir.core import Graph
from neffkit.ir.text import normalize, parse, print_body
from neffkit.ir.verifier import verify
from neffkit.passes import Pass, PassContext, PassResult


@dataclass(frozen=True)
class PipelinePass(Pass):
    """A pipeline (``"dedup,cse,(fold,simplify,dce)"``) run by the ``PassManager``, seen as
    one pass, so the checks can take passes together."""

    name: ClassVar[str] = "pipeline"
    description: ClassVar[str] = "a pass-manager pipeline"
    pipeline: str = "dce"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        from neffkit.passes.manager import PassManager

        report = PassManager(self.pipeline, ctx=ctx).run(graph)
        return PassResult(report.changed, {r.name: int(r.changed) for r in report.records})


def as_pass(pass_: Pass | type[Pass] | str) -> Pass:
    """A pass instance from a pass, a pass class, or pipeline text (``"fold,dce"``)."""
    if isinstance(pass_, str):
        return PipelinePass(pass_)
    return pass_() if isinstance(pass_, type) else pass_


def run_checked(
    pass_: Pass | type[Pass] | str,
    graph: Graph,
    *,
    ctx: PassContext | None = None,
    numeric: bool = True,
    feeds: Mapping[str, Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> PassResult:
    """Runs ``pass_`` on ``graph`` in place and checks what holds for any pass on any graph.

    The IR verifies after the run; the outputs agree with those before it on onnxruntime
    (``feeds``, or random inputs from the input types with symbolic dims 2; ``rtol`` / ``atol``
    default to the per-dtype policy of ``neffkit.execution.compare``); a second run changes
    nothing, neither by its flag nor by the printed graph.

    Returns:
        The first run's result (whose ``changed`` flag the caller judges).

    Raises:
        AssertionError: a check failed; the message says which.
    """
    p = as_pass(pass_)
    ctx = ctx or PassContext()
    before = clone_graph(graph) if numeric else None
    result = p.run(graph, ctx)
    verify(graph)
    text = print_body(graph)
    if before is not None:
        _check_numbers(before, graph, feeds, rtol, atol)
    _check_rerun(p, graph, ctx, text)
    return result


def check_rewrite(
    pass_: Pass | type[Pass] | str,
    before: str,
    after: str | None,
    *,
    ctx: PassContext | None = None,
    numeric: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
) -> Graph:
    """Runs ``pass_`` (a pass, its class, or pipeline text such as ``"fold,dce"``) on
    ``before``; ``after`` None means the pass must not fire.

    Checks the text result and the changed flag, then what :func:`run_checked` checks: the
    verifier, numeric agreement on onnxruntime (random inputs from the input types, symbolic
    dims 2; ``rtol`` / ``atol`` default to the per-dtype tolerances of
    ``neffkit.execution.compare``), and that a second run changes nothing.

    Returns:
        The graph after the pass, for further checks.

    Raises:
        AssertionError: a check failed; the message says which.
    """
    g = parse(before)
    original = print_body(g)
    p = as_pass(pass_)
    ctx = ctx or PassContext()
    result = p.run(g, ctx)
    verify(g)
    got_text = print_body(g)
    if after is None:
        _expect(result.changed is False, f"the pass must not fire; changed: {result.stats}")
        _expect(got_text == original, f"changed=False but the graph changed:\n{got_text}")
    else:
        _expect(result.changed is True, f"the pass did not fire: {result}")
        _expect(got_text == normalize(after), f"the graph after the pass is:\n{got_text}")
    if numeric:
        _check_numbers(parse(before), g, None, rtol, atol)
    _check_rerun(p, g, ctx, got_text)
    return g


def _check_numbers(
    before: Graph,
    after: Graph,
    feeds: Mapping[str, Any] | None,
    rtol: float | None,
    atol: float | None,
) -> None:
    if feeds is None:
        feeds = random_inputs(before, default_size=2, ints=(0, 5))
    want = Runner(before, "onnxruntime")(feeds)
    got = Runner(after, "onnxruntime")(feeds)
    _expect(len(got) == len(want), f"{len(got)} outputs, {len(want)} before the pass")
    names = [v.name for v in after.outputs]
    for c in compare_all(want, got, rtol=rtol, atol=atol, names=names):
        _expect(c.ok, f"output '{c.name}' changed: {explain(c)}")


def _check_rerun(p: Pass, graph: Graph, ctx: PassContext, text: str) -> None:
    again = p.run(graph, ctx)
    _expect(again.changed is False, f"a second run changed the graph: {again.stats}")
    _expect(print_body(graph) == text, "a second run said changed=False but changed the graph")


def _expect(ok: bool, message: str) -> None:
    # An explicit raise, not ``assert``: the checks must hold under ``python -O`` too.
    if not ok:
        raise AssertionError(message)
