"""Lowerings of constants, identity-like ops and casts."""

from __future__ import annotations

import numpy as np

from neffkit.backends.torch.lowering import LoweringContext
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node
from neffkit.ir.tensor import Tensor


def constant_attr_value(node: Node) -> np.ndarray:
    """The value of a Constant node, whichever of its attributes carries it."""
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        a = node.attributes.get(key)
        if a is None:
            continue
        v = a.value
        if isinstance(v, Tensor):
            return v.numpy()
        if key == "value_float":
            return np.array(v, dtype=np.float32)
        if key == "value_int":
            return np.array(v, dtype=np.int64)
        if key == "value_floats":
            return np.array(v, dtype=np.float32)
        return np.array(v, dtype=np.int64)
    raise Unsupported("Constant with a string or sparse value")


@lowers("Constant")
def constant(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Constant(value) -> a buffer of the module
    return ctx.tensor(constant_attr_value(node), node.outputs[0].name or "const")


@lowers("Identity")
def identity(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Identity(x) -> x
    return args[0]
