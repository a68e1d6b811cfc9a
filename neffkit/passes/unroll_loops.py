"""``unroll``: replaces a ``Loop`` of bounded trip count by straight-line copies of its body.

Before / after (two steps, no exit condition; ``dce`` then drops the unread ``co`` copies)::

    y = Loop (two, "", x) <body = b (int64 i,              f_s0 = Cast <to = 1> (iter_0)
            bool c, float[4] v) => (bool co, float[4] w) {   w_s0 = Add (x, f_s0)
        co = Identity (c)                               ->   f_s1 = Cast <to = 1> (iter_1)
        f = Cast <to = 1> (i)                                y = Add (w_s0, f_s1)
        w = Add (v, f) }>

Each copy gets its iteration number as a constant, so after ``shape-infer`` and ``fold`` each
copy has static shapes: step t of a decoder computes over exactly its t tokens.

**Bound.** The trip count M when it is a constant; ``max-trip=N`` caps it (and bounds a loop
whose M is not constant): the user promises the loop never runs more than N iterations, and a
loop that would is cut after N. A loop with neither is left alone and counted in the stats,
as is a loop with no condition input whose body computes ``cond_out`` anyway (the spec
ignores it, onnxruntime stops on it: no unrolled graph agrees with both), or one carrying a
sequence or optional value that may stop early (only tensors are picked at the exit).

**Early exit, exactly.** Every copy is computed (as the seed's unrolled decoder did): exiting
early inside one straight-line graph costs either control flow per step or wasted steps, and
this pass chooses wasted steps so that the steps stay one static graph. Step t's copy reads
step t-1's results unconditionally. Beside the steps runs a chain of scalar booleans,
``running_t = running_{t-1} and cond_out_{t-1}`` (``and t < M`` when M is not constant), from
which the loop's outputs are picked (with a run-time M, the steps from M on see the
iteration number ``max(M - 1, 0)``, so that what the body indexes by it stays in range):

* a carried value whose shape is the same every step (the initial value's static shape is the
  body output's declared shape, and no step-dependent value fixes it: ``_loops.stable_carried``,
  since steps past the exit run too) is frozen with ``Where(running_t, step_{t+1}, acc_t)``:
  no control flow at all;
* a carried value that may change shape (tokens ``[1, t]`` -> ``[1, t+1]``) cannot go through
  ``Where``; the number of steps that ran, ``n = sum(running_t)``, picks the step's value with
  a balanced tree of ``If`` nodes whose leaves are ``Identity`` (depth log2(N), N-1 ``If``
  nodes, no computation inside them);
* a scan output is the ``Concat`` of the steps' slices, cut to ``n`` rows by a ``Slice`` (when
  a slice may change shape past the exit, the rows that ran are stacked in the branch of an
  ``If`` tree picked by ``n``).

A loop with no condition (or a condition that is constant true, or passed through unchanged)
needs none of this: its last copy's values are the outputs. A step past the exit that raises
(``x[k]`` with k past the end) makes the unrolled graph fail: such bodies need ``split``.

Loops in ``If`` branches and loops whose bodies read outer values are handled (copies read
the same outer values); nested loops are unrolled inside-out (an inner loop whose bound
depends on the outer iteration number is left alone in the copies; ``fold`` then a second
``unroll`` unrolls them). ``max-nodes`` refuses a loop whose copies would add more nodes than
that (left alone, logged as a warning, counted).

``partition-unroll{boundaries=25+50+75}`` cuts the same steps into partitions: the first
takes the loop's place, each later one is the then-branch of an ``If`` gate taken only while
the loop still runs, whose else-branch picks the outputs of the partition that just ran.
Partition graphs carry the ``doc_string`` ``neffkit:partition steps=A-B`` (compiled units),
gates ``neffkit:partition-gate`` (host control flow).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from neffkit._gc import paused_gc
from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph
from neffkit.passes._loops import Emitter, read_loop
from neffkit.passes._unroll_steps import (
    bound,
    can_stop_early,
    emit_partitions,
    initial_cond,
    initial_running,
    partition_spans,
    replace_loop,
    shared_constants,
    trip_operand,
    why_not,
)
from neffkit.passes.base import Pass, PassContext, PassResult, all_graphs_postorder, option
from neffkit.passes.registry import register

log = logging.getLogger("neffkit.passes.unroll")


@register
@dataclass(frozen=True)
class UnrollLoops(Pass):
    """Unrolls every ``Loop`` with a constant or ``max-trip`` bound, innermost first."""

    name: ClassVar[str] = "unroll"
    description: ClassVar[str] = "replace bounded Loops by straight-line copies of their body"

    max_trip: int = option(0, "at most this many steps (a promise for unbounded loops; 0: none)")
    max_nodes: int = option(1_000_000, "leave a loop alone whose copies would add more nodes")

    def spans(self, trips: int) -> list[range]:
        """The steps of each straight-line piece: one piece, every step."""
        return [range(trips)]

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        with paused_gc():  # tens of thousands of new nodes that all stay alive
            return self._run(graph)

    def _run(self, graph: Graph) -> PassResult:
        stats = {"loops_unrolled": 0, "steps": 0, "nodes_added": 0, "loops_left": 0}
        for g in list(all_graphs_postorder(graph)):
            loops = [n for n in g.holders if n.op_type == "Loop" and n.domain == ""]
            names = {n.name for n in g if n.name} if loops else set()
            for index, node in enumerate(loops):
                parts = read_loop(node)
                trips = None if isinstance(parts, str) else bound(parts, self.max_trip)
                reason = parts if isinstance(parts, str) else why_not(parts, trips, self.max_nodes)
                if reason is not None or isinstance(parts, str) or trips is None:
                    stats["loops_left"] += 1
                    level = logging.WARNING if "max-nodes" in str(reason) else logging.INFO
                    log.log(level, "unroll: Loop '%s' left alone: %s", node.name, reason)
                    continue
                em = Emitter(g, node, names=names)
                em.prefix = f"l{index}" if index else ""  # node names stay unique in g
                shared = shared_constants(parts, g)
                running = initial_running(parts, em)
                trip = trip_operand(parts, em)
                spans = self.spans(trips)
                if not can_stop_early(parts, trip):  # every step runs: no gate gains anything
                    spans = [range(trips)]
                results = emit_partitions(
                    parts, em, spans, list(parts.inits), running,
                    initial_cond(parts, em), shared, trip,
                )  # fmt: skip
                replace_loop(node, em, results)
                stats["loops_unrolled"] += 1
                if len(spans) > 1:
                    stats["partitions"] = stats.get("partitions", 0) + len(spans)
                stats["steps"] += trips
                stats["nodes_added"] += em.added
                log.info("unroll: Loop '%s': %d steps, %d nodes", node.name, trips, em.added)
        changed = stats["loops_unrolled"] > 0
        return PassResult(changed, {k: v for k, v in stats.items() if v})


@register
@dataclass(frozen=True)
class PartitionUnroll(UnrollLoops):
    """Unrolls bounded ``Loop``s into partitions chained by ``If`` gates (early stop)."""

    name: ClassVar[str] = "partition-unroll"
    description: ClassVar[str] = (
        "unroll bounded Loops into partitions; the next runs only while the loop goes on"
    )

    boundaries: str = option("", "steps at which partitions end, separated by '+' (25+50+75)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ends()  # refuses bad text before anything runs

    def ends(self) -> list[int]:
        """The boundaries as integers, increasing.

        Raises:
            NeffkitError: a boundary that is not a positive integer, or out of order.
        """
        if not self.boundaries.strip():
            return []
        try:
            ends = [int(b) for b in self.boundaries.split("+")]
        except ValueError:
            ends = []
        if not ends or any(b <= 0 for b in ends) or ends != sorted(set(ends)):
            raise NeffkitError(
                f"partition-unroll: boundaries must be increasing positive step counts "
                f"separated by '+' (25+50+75), got {self.boundaries!r}"
            )
        return ends

    def spans(self, trips: int) -> list[range]:
        """One piece per partition: the boundaries below the bound, then the bound."""
        return partition_spans(trips, self.ends())
