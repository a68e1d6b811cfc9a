"""Lowering of Dropout: the identity in inference mode (with an all-true mask when asked for);
training mode is refused.
"""

from __future__ import annotations

import numpy as np
import torch

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import arg, torch_dtype
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node


def _const_scalar(ctx: LoweringContext, i: int) -> float | None:
    c = ctx.input_constant(i)
    return None if c is None else float(np.asarray(c).reshape(-1)[0])


def dropout_checked(
    x: torch.Tensor, ratio: torch.Tensor | None, training: torch.Tensor | None
) -> torch.Tensor:
    """Dropout whose training_mode is only known at run time: identity unless it is really
    training (random, which the backend refuses)."""
    if training is not None and bool(training.reshape(-1)[0]):
        r = 0.5 if ratio is None else float(ratio.reshape(-1)[0])
        if r != 0.0:
            raise RuntimeError("Dropout in training mode (random) is not supported")
    return x


@lowers("Dropout")
def dropout(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Dropout in inference -> identity (mask all True); training with ratio > 0 is random
    x = args[0]
    if ctx.opset >= 12 and arg(args, 2) is not None:
        t = _const_scalar(ctx, 2)
        r = _const_scalar(ctx, 1) if arg(args, 1) is not None else 0.5
        if t is None or (t and r is None):
            x = ctx.call(dropout_checked, x, arg(args, 1), args[2])
        elif t and r != 0.0:
            raise Unsupported("Dropout in training mode (random) is not supported")
    elif ctx.opset < 7 and not node.attr("is_test", 0) and node.attr("ratio", 0.5) != 0.0:
        raise Unsupported("Dropout in training mode (random) is not supported")
    if len(node.outputs) < 2 or not (node.outputs[1].num_uses or node.outputs[1].is_graph_output):
        return x
    mask_dt = torch.bool if ctx.opset >= 10 else torch_dtype(node.inputs[0].dtype or 1)
    return [x, ctx.call(torch.ones_like, x, dtype=mask_dt)]
