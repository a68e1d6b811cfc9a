"""The pass manager: runs a pipeline, verifies after every pass, times and reports.

A pass that raises or leaves the IR invalid is reported as a ``PassError`` naming the pass and
the passes before it, and the graph is restored to what it was before that pass.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from neffkit._gc import paused_gc
from neffkit.errors import NeffkitError, PassError
from neffkit.execution.backend import get_backend
from neffkit.execution.compare import compare_all, explain
from neffkit.execution.inputs import bind, random_inputs
from neffkit.ir.clone import clone_graph, replace_contents
from neffkit.ir.core import Graph
from neffkit.ir.verifier import verify
from neffkit.passes.base import Pass, PassContext, PassResult
from neffkit.passes.pipeline import Group, parse_pipeline

log = logging.getLogger("neffkit.passes")


@dataclass
class PassRecord:
    """One execution of one pass."""

    name: str
    spec: str
    changed: bool
    stats: dict[str, int]
    seconds: float
    nodes_before: int
    nodes_after: int
    bytes_before: int
    bytes_after: int
    iteration: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


@dataclass
class ManagerReport:
    """Everything a pipeline run did, pass by pass."""

    pipeline: str
    records: list[PassRecord] = field(default_factory=list)
    nodes_before: int = 0
    nodes_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """True when any pass changed the graph."""
        return any(r.changed for r in self.records)

    def per_pass(self) -> dict[str, dict[str, Any]]:
        """Totals per pass name: runs, changes, time, node and byte deltas, summed stats."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.records:
            t = out.setdefault(
                r.name,
                {
                    "runs": 0,
                    "changed": 0,
                    "seconds": 0.0,
                    "nodes_delta": 0,
                    "bytes_delta": 0,
                    "stats": {},
                },
            )
            t["runs"] += 1
            t["changed"] += int(r.changed)
            t["seconds"] += r.seconds
            t["nodes_delta"] += r.nodes_after - r.nodes_before
            t["bytes_delta"] += r.bytes_after - r.bytes_before
            for k, v in r.stats.items():
                t["stats"][k] = t["stats"].get(k, 0) + v
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "pipeline": self.pipeline,
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "constant_bytes_before": self.bytes_before,
            "constant_bytes_after": self.bytes_after,
            "seconds": self.seconds,
            "per_pass": self.per_pass(),
            "records": [r.to_dict() for r in self.records],
        }

    def table(self) -> str:
        """A fixed-width table: one row per pass name."""
        width = max([14] + [len(n) + 2 for n in self.per_pass()])
        rows = [
            f"{'pass':<{width}}{'runs':>5}{'changed':>8}{'nodes':>10}{'const bytes':>14}{'time':>9}"
        ]
        for name, t in self.per_pass().items():
            rows.append(
                f"{name:<{width}}{t['runs']:>5}{t['changed']:>8}{t['nodes_delta']:>+10}"
                f"{t['bytes_delta']:>+14}{t['seconds']:>8.3f}s"
            )
        rows.append(
            f"{'total':<{width}}{'':>5}{'':>8}{self.nodes_after - self.nodes_before:>+10}"
            f"{self.bytes_after - self.bytes_before:>+14}{self.seconds:>8.3f}s"
        )
        rows.append(
            f"nodes {self.nodes_before} -> {self.nodes_after}, constant bytes "
            f"{self.bytes_before} -> {self.bytes_after}"
        )
        return "\n".join(rows)


def total_version(graph: Graph) -> int:
    """The latest mutation stamp in the graph and its subgraphs (stamps come from one clock)."""
    return max(g.version for g in graph.all_graphs())


def count_nodes(graph: Graph) -> int:
    """Nodes in the graph and all its subgraphs."""
    return sum(len(g) for g in graph.all_graphs())


def constant_bytes(graph: Graph) -> int:
    """Bytes of every initializer and Constant node value, subgraphs included."""
    total = 0
    for g in graph.all_graphs():
        for v in g.initializers.values():
            if v.const is not None:
                total += v.const.nbytes
        for node in g:
            if node.op_type == "Constant" and node.domain == "":
                a = node.attributes.get("value")
                if a is not None and hasattr(a.value, "nbytes"):
                    total += a.value.nbytes
    return total


Progress = Callable[[str, int, int], None]


class PassManager:
    """Runs a pipeline of passes over a graph.

    Args:
        pipeline: pipeline text (see ``neffkit.passes.pipeline``) or a parsed ``Group``.
        ctx: settings shared by the passes.
        verify_ir: run the structural verifier after every pass (on by default).
        verify_each: after every pass that changed something, compare onnxruntime on the
            graph as it was before the pipeline with onnxruntime on the current graph.
        inputs: inputs for ``verify_each`` (random from the input types, seeded, when None).
        seed: seed of the random inputs.
        rtol, atol: tolerances of ``verify_each`` for every output (None: per dtype, as
            ``neffkit.verify`` holds them; see ``neffkit.execution.compare``).
        print_ir_after: pass names (or ``{"all"}``) whose result is printed as text when they
            changed something.
        out: where printed IR goes (stderr by default).
        progress: called as ``progress(pass_name, index, total)`` before each pass.
        rollback: restore the graph as it was before a failing pass (costs one copy of the
            graph per run); callers that discard the graph on failure turn it off.
    """

    def __init__(
        self,
        pipeline: str | Group,
        *,
        ctx: PassContext | None = None,
        verify_ir: bool = True,
        verify_each: bool = False,
        inputs: Sequence[Any] | Mapping[str, Any] | None = None,
        seed: int = 0,
        rtol: float | None = None,
        atol: float | None = None,
        print_ir_after: set[str] | Sequence[str] | None = None,
        out: TextIO | None = None,
        progress: Progress | None = None,
        rollback: bool = True,
    ) -> None:
        self.group = parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
        self.ctx = ctx or PassContext()
        self.verify_ir = verify_ir
        self.verify_each = verify_each
        self.inputs = inputs
        self.seed = seed
        self.rtol = rtol
        self.atol = atol
        self.print_ir_after = set(print_ir_after or ())
        self.out = out
        self.progress = progress
        self.rollback = rollback
        self._history: list[str] = []
        self._reference: list[Any] | None = None
        self._feeds: dict[str, Any] | None = None
        self._output_names: list[str] = []
        self._step = 0

    def run(self, graph: Graph) -> ManagerReport:
        """Runs the pipeline on ``graph`` in place and returns the report.

        Raises:
            PassError: a pass raised, broke the IR or changed the numbers; the graph is left as
                it was before that pass.
        """
        report = ManagerReport(self.group.spec())
        report.nodes_before = count_nodes(graph)
        report.bytes_before = constant_bytes(graph)
        self._history = []
        self._done: list[Pass] = []
        self._step = 0
        start = time.perf_counter()
        if self.verify_each:
            self._prepare_reference(graph)
        # One snapshot per run, not per pass: a failing pass is undone by restoring it and
        # replaying the (deterministic) passes that succeeded before, which costs time only
        # when something fails.
        self._snapshot: Graph | None = clone_graph(graph) if self.rollback else None
        self._stats_key = -1
        self._stats = (report.nodes_before, report.bytes_before)
        self._verified_version = -1
        self._last_run: dict[int, int] = {}
        try:
            # The graph's objects all stay alive while passes run: pausing the cyclic
            # collector keeps it from rescanning them after every few thousand allocations.
            with paused_gc():
                self._run_group(self.group, graph, report)
        finally:
            self._snapshot = None
        report.seconds = time.perf_counter() - start
        report.nodes_after = count_nodes(graph)
        report.bytes_after = constant_bytes(graph)
        return report

    def _counts(self, graph: Graph) -> tuple[int, int]:
        """(nodes, constant bytes), recomputed only when the graph changed."""
        key = total_version(graph)
        if key != self._stats_key:
            self._stats = (count_nodes(graph), constant_bytes(graph))
            self._stats_key = key
        return self._stats

    def _restore(self, graph: Graph) -> str:
        """Puts ``graph`` back as it was before the failing pass; says how, for the error."""
        snapshot = self._snapshot
        if snapshot is None:
            return "; the graph was left as the failing pass left it (rollback off)"
        self._snapshot = None
        keep = clone_graph(snapshot)
        replace_contents(graph, snapshot)
        try:
            for p in self._done:
                p.run(graph, self.ctx)
        except Exception as e:  # noqa: BLE001 - a pass that is not deterministic
            replace_contents(graph, keep)
            return f"; replaying the earlier passes failed ({e}): the graph is as it was given"
        return ""

    def _run_group(self, group: Group, graph: Graph, report: ManagerReport) -> bool:
        changed_any = False
        for it in range(group.max_iter if group.repeat else 1):
            changed = False
            for item in group.items:
                if isinstance(item, Group):
                    changed |= self._run_group(item, graph, report)
                else:
                    changed |= self._run_pass(item, graph, report, it)
            changed_any |= changed
            if not changed:
                break
        return changed_any

    def _run_pass(self, p: Pass, graph: Graph, report: ManagerReport, iteration: int) -> bool:
        # A pass reaches its own fixed point in one run, and passes are deterministic: when
        # nothing changed since this pass instance last ran, running it again would change
        # nothing either (the last round of a fixed-point group mostly skips).
        last = self._last_run.get(id(p))
        if last is not None and last == total_version(graph) and p.idempotent:
            return False
        self._step += 1
        if self.progress is not None:
            self.progress(p.name, self._step, 0)
        nodes_before, bytes_before = self._counts(graph)
        t = time.perf_counter()
        try:
            result = p.run(graph, self.ctx)
            if not isinstance(result, PassResult):
                raise NeffkitError(f"run() returned {type(result).__name__}, not a PassResult")
            version = total_version(graph)
            if self.verify_ir and version != self._verified_version:
                verify(graph)
                self._verified_version = version
            if self.verify_each and result.changed:
                self._check_numbers(graph)
        except Exception as e:  # noqa: BLE001 - any failure of a pass is reported the same way
            msg = str(e) if isinstance(e, NeffkitError) else f"{type(e).__name__}: {e}"
            msg += self._restore(graph)
            raise PassError(p.spec(), msg, self._history) from e
        seconds = time.perf_counter() - t
        self._last_run[id(p)] = total_version(graph)
        self._history.append(p.spec())
        self._done.append(p)
        nodes_after, bytes_after = self._counts(graph)
        rec = PassRecord(
            p.name,
            p.spec(),
            result.changed,
            dict(result.stats),
            seconds,
            nodes_before,
            nodes_after,
            bytes_before,
            bytes_after,
            iteration,
        )
        report.records.append(rec)
        log.info("%s: changed=%s %s (%.3fs)", p.spec(), result.changed, result.stats, seconds)
        if result.changed and (p.name in self.print_ir_after or "all" in self.print_ir_after):
            from neffkit.ir.text import print_graph

            stream = self.out or sys.stderr
            stream.write(f"// ----- IR after {p.spec()} -----\n{print_graph(graph)}\n")
        return result.changed

    # -- numeric checks -----------------------------------------------------------------------

    def _prepare_reference(self, graph: Graph) -> None:
        feeds = self.inputs if self.inputs is not None else random_inputs(graph, seed=self.seed)
        self._feeds = bind(graph, feeds)
        self._reference = _on_onnxruntime(graph, self._feeds)
        self._output_names = [v.name for v in graph.outputs]  # a pass may rename them

    def _check_numbers(self, graph: Graph) -> None:
        if self._feeds is None or self._reference is None:
            raise NeffkitError("verify_each: the reference outputs were not computed")
        got = _on_onnxruntime(graph, self._feeds)
        if len(got) != len(self._reference):
            raise NeffkitError(f"the graph has {len(got)} outputs, it had {len(self._reference)}")
        names = self._output_names
        for c in compare_all(self._reference, got, rtol=self.rtol, atol=self.atol, names=names):
            if not c.ok:
                raise NeffkitError(f"output {c.index} ('{c.name}') changed: {explain(c)}")


def _on_onnxruntime(graph: Graph, feeds: Mapping[str, Any]) -> list[Any]:
    """The graph's outputs on onnxruntime, the reference backend (prepared afresh: the graph
    changes between calls)."""
    return get_backend("onnxruntime").prepare(graph).run(feeds)
