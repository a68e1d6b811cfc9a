"""``dce``: removes dead nodes, unused constants and unused subgraph outputs.

Before / after::

    t = Relu(x)          y = Neg(x)
    u = Exp(t)     ->
    y = Neg(x)           (t and u were never read)

An ``If`` output nobody reads disappears from the node and from both branches; a ``Loop``
scan output nobody reads disappears from the node and the body. Nodes are visited in reverse
order, so a whole dead chain goes in one sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from neffkit.ir.core import Graph, Node
from neffkit.passes.base import Pass, PassContext, PassResult, all_graphs_postorder
from neffkit.passes.registry import register


@register
@dataclass(frozen=True)
class EliminateDeadCode(Pass):
    """Removes everything whose result cannot reach a graph output."""

    name: ClassVar[str] = "dce"
    description: ClassVar[str] = "remove dead nodes, unused constants and unused subgraph outputs"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        stats = {"nodes_removed": 0, "constants_removed": 0, "subgraph_outputs_removed": 0}
        # Trimming a control node's outputs (outer graphs first) makes more of its bodies
        # dead; sweeping bodies (innermost first) drops their reads of outer values, which can
        # make outer nodes dead; sweeping an outer graph can leave a control output unread.
        # Without nested graphs one round is a fixed point; with them, repeat until stable.
        nested = bool(graph.subgraph_nodes)
        while True:
            graphs = list(all_graphs_postorder(graph))
            trimmed = removed = 0
            for g in reversed(graphs):
                if _live(g):
                    trimmed += _trim_control_outputs(g)
            for g in graphs:
                if _live(g):
                    removed += _sweep(g)
            stats["subgraph_outputs_removed"] += trimmed
            stats["nodes_removed"] += removed
            if not nested or not (trimmed or removed):
                break
        graphs = list(all_graphs_postorder(graph))
        for g in graphs:
            if not _live(g):
                continue
            stats["constants_removed"] += _drop_constants(g, graph, ctx)
        changed = any(stats.values())
        return PassResult(changed, {k: v for k, v in stats.items() if v})


def _live(g: Graph) -> bool:
    """False for a subgraph whose holding node (or an ancestor's) was removed."""
    while g.parent is not None:
        if g.parent.graph is None:
            return False
        g = g.parent.graph
    return True


def _dead(node: Node) -> bool:
    for v in node.outputs:
        if v.is_used:
            return False
    return True


def _sweep(g: Graph) -> int:
    removed = 0
    for node in reversed(g):
        if _dead(node):
            g.remove(node)
            removed += 1
    return removed


def _drop_constants(g: Graph, root: Graph, ctx: PassContext) -> int:
    removed = 0
    inputs = set(g.inputs)
    for v in list(g.initializers.values()):
        if v.is_used:
            continue
        if v in inputs and (ctx.keep_overridable_inputs or g is not root):
            continue
        g.remove_initializer(v)
        removed += 1
    return removed


def _trim_control_outputs(g: Graph) -> int:
    """Drops unused If outputs and unused Loop scan outputs, in the node and its bodies."""
    removed = 0
    for node in list(g.holders):  # If and Loop hold subgraphs: no walk over every node
        if node.domain != "":
            continue
        if node.op_type == "If":
            removed += _trim_if(node)
        elif node.op_type == "Loop":
            removed += _trim_loop(node)
    return removed


def _unused(node: Node, i: int) -> bool:
    v = node.outputs[i]
    return not v.is_used


def _trim_if(node: Node) -> int:
    branches = [node.attr("then_branch"), node.attr("else_branch")]
    if any(b is None for b in branches) or len(node.outputs) <= 1:
        return 0
    removed = 0
    for i in reversed(range(len(node.outputs))):
        if len(node.outputs) == 1:
            break  # an If must keep at least one output
        if not _unused(node, i):
            continue
        node.drop_output(i)
        for b in branches:
            outs = list(b.outputs)
            del outs[i]
            b.set_outputs(outs)
        removed += 1
    return removed


def _trim_loop(node: Node) -> int:
    body = node.attr("body")
    if body is None:
        return 0
    n_carried = len(node.inputs) - 2
    removed = 0
    for i in reversed(range(n_carried, len(node.outputs))):
        if not _unused(node, i):
            continue
        node.drop_output(i)
        outs = list(body.outputs)
        del outs[1 + i]  # body outputs: cond, carried..., scans...
        body.set_outputs(outs)
        removed += 1
    return removed
