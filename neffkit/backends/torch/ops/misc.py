"""Lowerings of constants, identity-like ops and casts."""

from __future__ import annotations

from neffkit.backends.torch.lowering import LoweringContext, constant_attr_value
from neffkit.backends.torch.registry import Arg, Lowered, lowers
from neffkit.ir.core import Node


@lowers("Constant")
def constant(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Constant(value) -> a buffer of the module
    return ctx.tensor(constant_attr_value(node), node.outputs[0].name or "const")


@lowers("Identity")
def identity(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Identity(x) -> x
    return args[0]
