"""Lowerings of the losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import arg
from neffkit.backends.torch.registry import Arg, Lowered, lowers
from neffkit.ir.core import Node


def _reduction(node: Node) -> str:
    r = node.attr("reduction", "mean")
    return r.decode() if isinstance(r, bytes) else r


def _ignore_index(node: Node) -> int:
    ii = node.attr("ignore_index")
    return -100 if ii is None else int(ii)


@lowers("NegativeLogLikelihoodLoss")
def nll_loss(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # NegativeLogLikelihoodLoss(x, target, weight) -> F.nll_loss(x, target.long(), weight, ...)
    target = ctx.method("long", args[1])
    return ctx.call(
        F.nll_loss,
        args[0],
        target,
        arg(args, 2),
        ignore_index=_ignore_index(node),
        reduction=_reduction(node),
    )


@lowers("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy_loss(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SoftmaxCrossEntropyLoss(scores, labels, weights) -> F.nll_loss(log_softmax(scores, 1), ...)
    log_prob = ctx.call(torch.log_softmax, args[0], 1)
    loss = ctx.call(
        F.nll_loss,
        log_prob,
        ctx.method("long", args[1]),
        arg(args, 2),
        ignore_index=_ignore_index(node),
        reduction=_reduction(node),
    )
    return [loss, log_prob]
