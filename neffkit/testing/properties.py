"""Properties every pass must keep, checked on generated graphs; ``check_pass`` for pass authors.

One call gives a new pass the whole suite::

    from neffkit.testing import check_pass

    def test_my_pass_properties():
        check_pass(MyPass, max_examples=100)
        check_pass("my-pass,dce", ops=["MatMul", "Add", "Relu"], max_ops=12)  # pipeline, ops

For each graph that :func:`neffkit.testing.strategies.graphs` draws, :func:`check_graph` runs
the pass and checks:

- ``runs``: the pass returns a ``PassResult`` without raising;
- ``verifier``: the IR verifier holds after it;
- ``checker``: the exported model passes ``onnx.checker.check_model(full_check=True)``;
- ``numeric``: onnxruntime on the graph before and after agrees within per-dtype tolerances;
- ``changed-flag``: ``changed`` is True exactly when the exported model changed;
- ``fixed-point``: a second run changes nothing (passes whose ``idempotent`` is True);
- ``text-roundtrip``: printing, parsing and printing again gives the same text;
- ``torch`` (opt-in): the torch backend on the result agrees with onnxruntime.

A failure raises :class:`PropertyFailure`, which carries the graph as it was before the pass;
hypothesis shrinks it first, so ``err.graph`` / ``err.text`` is a minimal reproducer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hypothesis
import numpy as np
import onnx
from hypothesis import given
from hypothesis import settings as hsettings

from neffkit.backends.onnx import to_onnx
from neffkit.execution.compare import compare, default_tolerances
from neffkit.execution.runner import Runner
from neffkit.ir.clone import clone_graph
from neffkit.ir.core import Graph
from neffkit.ir.text import parse, print_graph
from neffkit.ir.verifier import verify
from neffkit.passes.base import Pass, PassContext, PassResult
from neffkit.testing.rewrite import PipelinePass, as_pass
from neffkit.testing.strategies import graphs, random_feeds

__all__ = [
    "PROPERTIES",
    "GeneratorError",
    "PipelinePass",
    "PropertyFailure",
    "check_backend",
    "check_graph",
    "check_pass",
    "tolerances",
    "without_dead_nodes",
]

#: The properties :func:`check_graph` checks by default (``torch`` is opt-in).
PROPERTIES = (
    "runs",
    "verifier",
    "checker",
    "numeric",
    "changed-flag",
    "fixed-point",
    "text-roundtrip",
)

#: Ops that accumulate many products or sums: each one in a graph loosens the tolerances.
_ACCUMULATING = frozenset(
    "MatMul Gemm Conv AveragePool GlobalAveragePool LayerNormalization Softmax LogSoftmax "
    "CumSum Sum Pow Exp Loop ReduceSum ReduceMean ReduceProd ReduceL1 ReduceL2 "
    "ReduceSumSquare ReduceLogSumExp".split()
)


class PropertyFailure(AssertionError):
    """A property failed on a graph.

    Attributes:
        property: which property (one of :data:`PROPERTIES`, or ``torch``).
        detail: what went wrong.
        graph: the graph before the pass (a copy), the reproducer.
        text: ``graph`` in ONNX text syntax.
        after: the text of the graph after the pass, when it could be printed.
        node_count: nodes of ``graph``, subgraphs included.
        pass_name: the pass checked ("" for a backend check).
    """

    def __init__(
        self, prop: str, detail: str, graph: Graph, *, pass_name: str = "", after: str = ""
    ) -> None:
        self.property = prop
        self.detail = detail
        self.graph = graph
        self.text = _text(graph)
        self.after = after
        self.node_count = sum(len(g) for g in graph.all_graphs())
        self.pass_name = pass_name
        who = f"pass '{pass_name}'" if pass_name else "backend check"
        msg = f"{who}: property '{prop}' failed: {detail}\n"
        what = "graph before the pass" if pass_name else "graph"
        msg += f"--- {what} ({self.node_count} nodes) ---\n{self.text}"
        if after:
            msg += f"\n--- graph after the pass ---\n{after}"
        super().__init__(msg)


class GeneratorError(Exception):
    """The graph given to a check is itself invalid (a strategy bug, not the pass's fault)."""


def tolerances(dtype: Any, graph: Graph | None = None) -> tuple[float, float] | None:
    """``(rtol, atol)`` of an output dtype under the one per-dtype policy
    (``neffkit.execution.compare``), loosened by half of it for each accumulating op in the
    graph (at most ten times); None for exact (integer, bool) outputs."""
    base = default_tolerances(dtype)
    if base == (0.0, 0.0):
        return None
    heavy = 0
    if graph is not None:
        heavy = sum(1 for n in graph.all_nodes() if n.op_type in _ACCUMULATING)
    factor = min(10.0, 1.0 + 0.5 * heavy)
    return base[0] * factor, base[1] * factor


def compare_outputs(
    reference: Sequence[Any], candidate: Sequence[Any], graph: Graph | None = None
) -> str:
    """Why ``candidate`` disagrees with ``reference`` ("" when it agrees).

    Float outputs pass when ``|c - r| <= atol * max(1, max|r|) + rtol * |r|`` (the absolute
    part scales with the output's magnitude, so that large intermediate values that cancel do
    not make the check flaky); others must be equal.
    """
    if len(reference) != len(candidate):
        return f"{len(candidate)} outputs, expected {len(reference)}"
    for i, (r, c) in enumerate(zip(reference, candidate)):
        r, c = np.asarray(r), np.asarray(c)
        tol = tolerances(r.dtype, graph)
        if tol is None:
            res = compare(r, c, index=i)
        else:
            finite = np.abs(r[np.isfinite(r)]) if r.size else np.zeros(0)
            scale = max(1.0, float(finite.max(initial=0.0)))
            res = compare(r, c, rtol=tol[0], atol=tol[1] * scale, index=i)
        if not res.ok:
            return (
                f"output {i}: reference {r.dtype}{list(r.shape)}, got {c.dtype}{list(c.shape)}; "
                f"{res.mismatches} of {res.elements} elements differ, max abs error "
                f"{res.max_abs_error}, max rel error {res.max_rel_error} "
                f"(rtol {res.rtol:g}, atol {res.atol:g})\nreference: {r!r}\ngot: {c!r}"
            )
    return ""


def check_graph(
    pass_: Pass | type[Pass] | str,
    graph: Graph,
    *,
    feeds: Mapping[str, Any] | None = None,
    ctx: PassContext | None = None,
    properties: Iterable[str] = PROPERTIES,
) -> PassResult:
    """Runs the pass on ``graph`` (in place) and checks ``properties``.

    Raises:
        PropertyFailure: a property failed; it carries a copy of the graph before the pass.
        GeneratorError: ``graph`` itself fails the checker or onnxruntime.
    """
    p = as_pass(pass_)
    props = set(properties)
    ctx = ctx or PassContext()
    before = clone_graph(graph)
    feeds = dict(random_feeds(graph) if feeds is None else feeds)
    model = _model(graph, "the input graph")
    reference = _reference(model, graph, feeds)
    before_bytes = model.SerializeToString(deterministic=True)

    def fail(prop: str, detail: str) -> PropertyFailure:
        return PropertyFailure(prop, detail, before, pass_name=p.name, after=_text(graph))

    try:
        result = p.run(graph, ctx)
    except Exception as e:  # noqa: BLE001 - any exception of the pass is a failure
        raise fail("runs", f"{type(e).__name__}: {e}") from e
    if not isinstance(result, PassResult):
        raise fail("runs", f"run() returned {type(result).__name__}, not a PassResult")
    if "verifier" in props:
        try:
            verify(graph)
        except Exception as e:  # noqa: BLE001
            raise fail("verifier", str(e)) from e
    try:
        after = to_onnx(graph)
        if "checker" in props:
            onnx.checker.check_model(after, full_check=True)
    except Exception as e:  # noqa: BLE001
        raise fail("checker", f"{type(e).__name__}: {e}") from e
    if "numeric" in props:
        try:
            got = _on_onnxruntime(after, graph, feeds)
        except Exception as e:  # noqa: BLE001
            raise fail("numeric", f"onnxruntime cannot run the result: {e}") from e
        why = compare_outputs(reference, got, before)
        if why:
            raise fail("numeric", why)
    after_bytes = after.SerializeToString(deterministic=True)
    if "changed-flag" in props and result.changed != (after_bytes != before_bytes):
        if result.changed:
            why = f"the pass said it changed the graph ({result.stats}) but the model is the same"
        else:
            why = "the pass said it changed nothing but the model changed"
        raise fail("changed-flag", why)
    if "fixed-point" in props and p.idempotent:
        try:
            again = p.run(graph, ctx)
            third = to_onnx(graph).SerializeToString(deterministic=True)
        except Exception as e:  # noqa: BLE001
            raise fail("fixed-point", f"the second run raised {type(e).__name__}: {e}") from e
        if again.changed or third != after_bytes:
            raise PropertyFailure(
                "fixed-point",
                f"a second run changed the graph: {again.stats} (after: after the first run)",
                before,
                pass_name=p.name,
                after=onnx.printer.to_text(after),
            )
    if "text-roundtrip" in props:
        text = print_graph(graph)
        back = print_graph(parse(text))
        if back != text:
            raise fail("text-roundtrip", f"printing the parsed text gives\n{back}")
    if "torch" in props:
        _check_torch(graph, feeds, reference, before, p.name)
    return result


def check_backend(graph: Graph, feeds: Mapping[str, Any] | None = None) -> None:
    """Differential test: the torch backend agrees with onnxruntime on ``graph``.

    Raises:
        PropertyFailure: property ``torch``, carrying ``graph``.
    """
    feeds = dict(random_feeds(graph) if feeds is None else feeds)
    reference = _reference(_model(graph, "the graph"), graph, feeds)
    _check_torch(graph, feeds, reference, graph, "")


def _check_torch(
    graph: Graph, feeds: dict[str, Any], reference: list[Any], before: Graph, name: str
) -> None:
    try:
        got = Runner(graph, "torch")(feeds)
    except Exception as e:  # noqa: BLE001
        raise PropertyFailure("torch", f"the torch backend failed: {e}", before,
                              pass_name=name) from e  # fmt: skip
    why = compare_outputs(reference, got, graph)
    if why:
        raise PropertyFailure("torch", why, before, pass_name=name)


def check_pass(
    pass_: Pass | type[Pass] | str,
    *,
    max_examples: int = 50,
    seed: int | None = 0,
    ctx: PassContext | None = None,
    properties: Iterable[str] = PROPERTIES,
    torch: bool = False,
    **graph_options: Any,
) -> CheckSummary:
    """Checks a pass on ``max_examples`` generated graphs; usable from any pytest test.

    Args:
        pass_: the pass class (built with its defaults), an instance, or pipeline text
            (``"dedup,(fold,simplify,dce)"``, run by the ``PassManager``).
        max_examples: graphs to try (hypothesis ``max_examples``).
        seed: hypothesis seed; None derandomizes (the examples then depend on the test).
        ctx: the pass context (default ``PassContext()``).
        properties: which properties to check (default all of :data:`PROPERTIES`).
        torch: also run the torch backend on every result against onnxruntime.
        graph_options: options of :func:`~neffkit.testing.strategies.graphs` (``ops``,
            ``dtypes``, ``max_ops``, ``max_depth``, ``plants`` ...).

    Returns:
        How many graphs were checked and how many of them the pass changed: a pass that
        changed none was only checked for leaving graphs alone (``assert summary.changed``).

    Raises:
        PropertyFailure: for the smallest failing graph hypothesis found (``err.graph``).
    """
    p = as_pass(pass_)
    counts = {"examples": 0, "changed": 0}
    props = tuple(properties) + (("torch",) if torch else ())
    strategy = graphs(**graph_options)

    @hsettings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        report_multiple_bugs=False,
    )
    @given(strategy)
    def run(graph: Graph) -> None:
        result = check_graph(p, graph, ctx=ctx, properties=props)
        counts["examples"] += 1
        counts["changed"] += bool(result.changed)

    if seed is not None:
        run = hypothesis.seed(seed)(run)
    try:
        run()
    except PropertyFailure as err:
        raise _without_dead_nodes(p, err, ctx, props) from None
    return CheckSummary(**counts)


def _without_dead_nodes(
    p: Pass, err: PropertyFailure, ctx: PassContext | None, props: tuple[str, ...]
) -> PropertyFailure:
    """``without_dead_nodes`` for a failure of ``check_graph(p, ...)``."""
    return without_dead_nodes(err, lambda g: check_graph(p, g, ctx=ctx, properties=props))


def without_dead_nodes(err: PropertyFailure, check: Callable[[Graph], Any]) -> PropertyFailure:
    """The failure on the reproducer less its dead nodes, when ``check`` still fails it the
    same way.

    hypothesis' shrinker does not always delete a node nothing reads (how far it gets can
    depend on what ran before in the process); dead code never matters to the failure, so the
    reproducer is always given without it.
    """
    from neffkit.passes.eliminate_dead_code import EliminateDeadCode

    smaller = clone_graph(err.graph)
    if not EliminateDeadCode().run(smaller, PassContext()).changed:
        return err
    try:
        check(clone_graph(smaller))
    except PropertyFailure as again:
        if again.property == err.property and again.node_count < err.node_count:
            return again
    except Exception:  # noqa: BLE001 - the smaller graph fails otherwise: keep the original
        return err
    return err


@dataclass(frozen=True)
class CheckSummary:
    """What :func:`check_pass` checked.

    Attributes:
        examples: graphs the pass ran on and passed every property.
        changed: those of them the pass changed.
    """

    examples: int
    changed: int


def _model(graph: Graph, what: str) -> onnx.ModelProto:
    try:
        model = to_onnx(graph)
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001
        raise GeneratorError(f"{what} is not a valid model: {e}\n{_text(graph)}") from e
    return model


def _on_onnxruntime(model: onnx.ModelProto, graph: Graph, feeds: Mapping[str, Any]) -> list[Any]:
    """onnxruntime's outputs for ``model`` (the export of ``graph``, which binds the feeds)."""
    return Runner(model, "onnxruntime", graph=graph)(feeds)


def _reference(model: onnx.ModelProto, graph: Graph, feeds: dict[str, Any]) -> list[Any]:
    try:
        return _on_onnxruntime(model, graph, feeds)
    except Exception as e:  # noqa: BLE001
        text = onnx.printer.to_text(model)
        raise GeneratorError(f"onnxruntime cannot run the input graph: {e}\n{text}") from e


def _text(graph: Graph) -> str:
    try:
        return print_graph(graph)
    except Exception as e:  # noqa: BLE001 - a broken graph may not print
        return f"<cannot print the graph: {type(e).__name__}: {e}>"
