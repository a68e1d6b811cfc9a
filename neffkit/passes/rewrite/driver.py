"""The worklist driver: runs a rule set over a graph until no rule fires.

It starts with every ONNX-domain node of every graph (subgraphs included) whose op type has a
rule; after a rule fires, only the nodes it touched (readers of replaced values, producers of
changed inputs, new nodes: see :class:`~neffkit.passes.rewrite.rewriter.Rewriter`) go back on
the worklist, so a run is near-linear. A cap on rewrites per node and in total guards against
rules that undo each other; hitting it is counted in ``rewrite_limit_hits``.

A pass that rewrites with rules is a thin client::

    def run(self, graph, ctx):
        return run_rules(graph, ctx, MY_RULES, disable=self.disable)
"""

from __future__ import annotations

import logging

from neffkit._gc import paused_gc
from neffkit.ir.core import Graph, Node
from neffkit.passes.base import PassContext, PassResult
from neffkit.passes.rewrite.registry import Rule, RuleSet
from neffkit.passes.rewrite.rewriter import Rewriter

log = logging.getLogger("neffkit.passes.rewrite")


def run_rules(
    graph: Graph,
    ctx: PassContext,
    rule_set: RuleSet,
    *,
    disable: str = "",
    keep_signed_zeros: bool = False,
    max_rewrites_per_node: int = 32,
) -> PassResult:
    """Applies ``rule_set`` (less the rules named in ``disable``, separated by ``+``) until
    none fires. Stats: rewrites per rule, ``rewrites``, ``dead_nodes_removed``,
    ``rewrite_limit_hits``."""
    rules = rule_set.table(disabled_names(disable))
    rw = Rewriter(graph, ctx, keep_signed_zeros=keep_signed_zeros)
    with paused_gc():  # a big graph's objects all stay alive: rescanning them is waste
        counts = drive(graph, rw, rules, max_rewrites_per_node)
    stats = {k: v for k, v in sorted(counts.items()) if v}
    total = sum(stats.values())
    if total:
        stats["rewrites"] = total
    if rw.dead_nodes:
        stats["dead_nodes_removed"] = rw.dead_nodes
    if rw.limit_hits:
        stats["rewrite_limit_hits"] = rw.limit_hits
    log.info("%s: %s", rule_set.name, stats or "nothing to do")
    return PassResult(total > 0, stats)


def disabled_names(text: str) -> set[str]:
    """Rule names from an option value: separated by ``+`` (or ``|`` or spaces)."""
    return {n for n in text.replace("|", "+").replace(" ", "+").split("+") if n}


def drive(root: Graph, rw: Rewriter, rules: dict[str, list[Rule]], per_node: int) -> dict[str, int]:
    """Runs the rules over a worklist seeded with every node; returns rewrites per rule."""
    counts: dict[str, int] = {}
    initial = [n for n in root.all_nodes() if n.domain == "" and n.op_type in rules]
    initial.reverse()  # popped from the end: the first node in program order comes first
    stack = initial
    queued = set(stack)
    hits: dict[Node, int] = {}
    total_cap = 8 * len(stack) + 1000
    total = 0
    while stack:
        node = stack.pop()
        queued.discard(node)
        if node.graph is None:
            continue  # removed by an earlier rewrite
        n_hits = hits.get(node, 0)
        if n_hits >= per_node:
            rw.limit_hits += 1
            continue
        for rule in rules[node.op_type]:
            if not rule(node, rw):
                continue
            name = rule.__name__
            counts[name] = counts.get(name, 0) + 1
            hits[node] = n_hits + 1
            total += 1
            log.debug("rewrite: %s on %r", name, node)
            rw.sweep(node)
            if node.graph is not None:
                rw.touched.append(node)
            for t in rw.touched:
                if t.graph is not None and t not in queued and t.op_type in rules:
                    if t.domain == "":
                        stack.append(t)
                        queued.add(t)
            rw.touched.clear()
            break
        if total >= total_cap:
            rw.limit_hits += 1
            break
    return counts
