"""Shrinking a failing ONNX model to a small reproducer (what ``neffkit reduce`` runs).

:func:`reduce_model` takes a model and a predicate that says whether a candidate still shows
the failure, and returns the smallest failing model it finds::

    from neffkit.testing.reduce import reduce_model

    def fails(model, inputs):
        return any(n.op_type == "Neg" for n in model.graph.node)  # stands for "the bug shows"

    small = reduce_model(onnx.load("bad.onnx"), fails).model

The model is first bisected (keeping a prefix or a suffix of its nodes: values cut off become
graph inputs or outputs of their known type), then chunks of nodes and single nodes are removed
(their outputs become graph inputs), until no single node can go. Every candidate passes the
ONNX checker (full check) before the predicate sees it. It works on the ONNX protos, not the
IR, so a model the IR cannot load (the usual case for a bug report) can still be reduced.

With recorded ``feeds`` (one dict per input set), the values of the new graph inputs are
computed by onnxruntime on the original model, and the predicate receives each candidate's
inputs for every set, so it can run the candidate on the values the original saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from neffkit.errors import NeffkitError

__all__ = ["NothingToReduce", "Predicate", "Reduction", "reduce_model"]

#: ``fails(candidate, inputs) -> bool``: True while the failure persists. ``inputs`` holds,
#: per recorded input set, the values of the candidate's graph inputs (empty without feeds).
Predicate = Callable[[onnx.ModelProto, list[dict[str, np.ndarray]]], bool]


class NothingToReduce(NeffkitError):
    """The predicate does not fail on the model given: there is no failure to keep."""


@dataclass
class Reduction:
    """What :func:`reduce_model` found.

    Attributes:
        model: the smallest failing model (the original itself when no node could go).
        inputs: per recorded input set, the values of ``model``'s graph inputs (empty without
            feeds): what reproduces the failure together with ``model``.
        nodes_before: top-level nodes of the original model.
        checks: how many times the predicate ran (the original included).
    """

    model: onnx.ModelProto
    inputs: list[dict[str, np.ndarray]] = field(default_factory=list)
    nodes_before: int = 0
    checks: int = 0


def reduce_model(
    model: onnx.ModelProto,
    fails: Predicate,
    *,
    feeds: Sequence[dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Reduction:
    """Shrinks ``model`` to the top-level nodes the failure needs.

    Args:
        model: the failing model (not changed).
        fails: the predicate (see :data:`Predicate`); it must be True on ``model``.
        feeds: recorded input sets of ``model`` (arrays by input name); with several, a
            candidate is kept when the predicate fails on any of them (it sees them all).
        progress: called with one line per step (``reduce: kept the prefix: 10 nodes``).

    Raises:
        NothingToReduce: ``fails`` is False on ``model`` itself.
        NeffkitError: ``model`` is not a ModelProto, or onnxruntime cannot run it on ``feeds``
            (a :class:`~neffkit.errors.BackendError`).
    """
    if not isinstance(model, onnx.ModelProto):
        raise NeffkitError(f"reduce_model takes an onnx.ModelProto, got {type(model).__name__}")
    r = _Reducer(model, fails, [dict(f) for f in feeds] if feeds is not None else None, progress)
    if not r.fails(model):
        raise NothingToReduce("the failure does not show on the model: nothing to reduce")
    best = r.reduce()
    return Reduction(best, r.all_inputs_of(best), len(r.nodes), r.tries)


class _Reducer:
    """Builds and checks candidates made of a subset of the model's top-level nodes."""

    def __init__(
        self,
        model: onnx.ModelProto,
        predicate: Predicate,
        feeds: list[dict[str, Any]] | None,
        progress: Callable[[str], None] | None,
    ) -> None:
        self.model = model
        self.predicate = predicate
        self.say = progress or (lambda _text: None)
        self.tries = 0
        g = model.graph
        self.nodes = list(g.node)
        self.uses = [_node_uses(n) for n in self.nodes]
        self.inputs = {vi.name: vi for vi in g.input}
        self.inits = {t.name: t for t in g.initializer}
        self.outputs = {vi.name: vi for vi in g.output}
        self.types: dict[str, Any] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:  # noqa: BLE001 - without inference only declared types are known
            inferred = g
        for vi in [*inferred.value_info, *g.input, *g.output]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                self.types[vi.name] = vi.type
        # one dict of every value per recorded input set
        self.values = [self._values(f) for f in feeds] if feeds is not None else None

    def _values(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Every typed value of the original model on ``feeds`` (onnxruntime)."""
        from neffkit.backends import onnxruntime as ort_backend

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        names = [o for n in self.nodes for o in n.output if o and o in self.types]
        extra = [o for o in names if o not in self.outputs]
        m.graph.output.extend(onnx.helper.make_value_info(o, self.types[o]) for o in extra)
        got = ort_backend.run(m, feeds)
        values = dict(feeds)
        values.update(zip([vi.name for vi in m.graph.output], got))
        return values

    def all_inputs_of(self, model: onnx.ModelProto) -> list[dict[str, np.ndarray]]:
        """The values of ``model``'s inputs in every recorded input set (none without feeds)."""
        if self.values is None:
            return []
        return [
            {vi.name: values[vi.name] for vi in model.graph.input if vi.name in values}
            for values in self.values
        ]

    def build(self, keep: list[int]) -> onnx.ModelProto | None:
        """The model of the nodes ``keep`` (indices, in order), or None when it is not valid."""
        kept = set(keep)
        produced = {o for i in keep for o in self.nodes[i].output if o}
        needed: dict[str, None] = {}
        for i in keep:
            needed.update((u, None) for u in self.uses[i] if u not in produced)
        removed_uses = {u for i in range(len(self.nodes)) if i not in kept for u in self.uses[i]}
        inputs = [vi for name, vi in self.inputs.items() if name in needed]
        for name in needed:
            if name in self.inputs or name in self.inits:
                continue
            if name not in self.types:
                return None  # an untyped value cannot become a graph input
            inputs.append(onnx.helper.make_value_info(name, self.types[name]))
        outputs = [vi for name, vi in self.outputs.items() if name in produced]
        for i in keep:
            for o in self.nodes[i].output:
                if o and o in removed_uses and o not in self.outputs and o in self.types:
                    outputs.append(onnx.helper.make_value_info(o, self.types[o]))
        if not outputs:
            return None
        g = self.model.graph
        graph = onnx.helper.make_graph(
            [self.nodes[i] for i in keep],
            g.name,
            inputs,
            outputs,
            [t for name, t in self.inits.items() if name in needed],
        )
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        m.graph.CopyFrom(graph)
        try:
            onnx.checker.check_model(m, full_check=True)
        except Exception:  # noqa: BLE001 - an invalid candidate is skipped, not an error
            return None
        return m

    def fails(self, model: onnx.ModelProto) -> bool:
        """Whether the predicate still fails on ``model``."""
        self.tries += 1
        return bool(self.predicate(model, self.all_inputs_of(model)))

    def attempt(self, keep: list[int]) -> bool:
        """Builds and checks the candidate ``keep``; True when it still fails."""
        if not keep:
            return False
        m = self.build(keep)
        return m is not None and self.fails(m)

    def reduce(self) -> onnx.ModelProto:
        """Bisects, then removes chunks and single nodes; returns the smallest failing model."""
        keep = list(range(len(self.nodes)))
        say = self.say
        say(f"reduce: {len(keep)} nodes")
        while len(keep) > 1:  # bisect: keep a prefix or a suffix
            half = len(keep) // 2
            for cand, what in ((keep[:half], "prefix"), (keep[half:], "suffix")):
                if self.attempt(cand):
                    keep = cand
                    say(f"reduce: kept the {what}: {len(keep)} nodes")
                    break
            else:
                break
        size = max(1, len(keep) // 2)
        while True:  # remove chunks of halving size, then single nodes to a fixed point
            progress = False
            i = len(keep) - size
            while i >= 0 and len(keep) > 1:
                cand = keep[:i] + keep[i + size :]
                if self.attempt(cand):
                    keep = cand
                    progress = True
                    say(f"reduce: removed {size} node(s): {len(keep)} nodes")
                i = min(i, len(keep)) - size
            if size > 1:
                size //= 2
            elif not progress:
                break
        say(f"reduce: {len(keep)} nodes after {self.tries} checks")
        if len(keep) == len(self.nodes):
            return self.model
        best = self.build(keep)
        assert best is not None  # every kept set was built and checked
        return best


def _node_uses(node: onnx.NodeProto) -> list[str]:
    """The values a node reads: its inputs and the outer values its subgraphs use."""
    uses: dict[str, None] = {i: None for i in node.input if i}
    for a in node.attribute:
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            uses.update((u, None) for u in _graph_free(g))  # recursion only on nesting depth
    return list(uses)


def _graph_free(g: onnx.GraphProto) -> list[str]:
    """The names a subgraph reads from outside it."""
    local = {vi.name for vi in g.input} | {t.name for t in g.initializer}
    local |= {o for n in g.node for o in n.output}
    free: dict[str, None] = {}
    for n in g.node:
        free.update((u, None) for u in _node_uses(n) if u not in local)
    free.update((o.name, None) for o in g.output if o.name not in local)
    return list(free)
