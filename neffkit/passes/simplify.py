"""``simplify``: local algebraic rewrites (no-op removal, chain fusion, BN folding) on a worklist.

Before / after::

    t = Transpose<perm=[1,0]>(x)
    u = Transpose<perm=[1,0]>(t)         y = Gemm(x, w, b)
    m = MatMul(u, w)               ->
    y = Add(m, b)

The pass runs neffkit's rule set (:data:`neffkit.passes.rewrite.registry.BUILTIN_RULES`: the rules
under ``neffkit/passes/rewrite/rules/``, one module per concept) with the worklist driver of
:mod:`neffkit.passes.rewrite.driver`. Nodes a rewrite leaves dead are removed on the spot
(unread initializers are left to ``dce``, except those the pass made itself, such as a folded
weight that a second fold replaced). A cap on rewrites per node and in total guards against
rules that undo each other; hitting it is reported in the stats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from neffkit.ir.core import Graph
from neffkit.passes.base import Pass, PassContext, PassResult, option
from neffkit.passes.registry import register
from neffkit.passes.rewrite.driver import run_rules
from neffkit.passes.rewrite.registry import BUILTIN_RULES, RuleSet


@register
@dataclass(frozen=True)
class Simplify(Pass):
    """Applies the local rewrite rules until none fires."""

    name: ClassVar[str] = "simplify"
    description: ClassVar[str] = (
        "local algebraic simplification: drop no-ops, fuse Transpose/Reshape/Cast chains, "
        "fold BatchNormalization into Conv/Gemm, MatMul+Add -> Gemm"
    )
    #: the rules this pass runs (``neffkit passes`` lists them)
    rules: ClassVar[RuleSet] = BUILTIN_RULES
    disable: str = option("", "rule names to skip, separated by '+' (the rules listed below)")
    keep_signed_zeros: bool = option(
        False, "keep float x+0 / x-(-0), which turn -0.0 into +0.0 (bit-exact signed zeros)"
    )
    max_rewrites_per_node: int = option(32, "stop rewriting a node after this many rewrites")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        return run_rules(
            graph,
            ctx,
            self.rules,
            disable=self.disable,
            keep_signed_zeros=self.keep_signed_zeros,
            max_rewrites_per_node=self.max_rewrites_per_node,
        )
