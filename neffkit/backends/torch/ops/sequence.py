"""Lowerings of the Sequence and Optional ops: sequences are ``List[Tensor]``, optionals
``Optional[Tensor]`` (or ``Optional[List[Tensor]]``), with None for an empty optional.

No ``from __future__ import annotations`` here: TorchScript reads the class attribute
annotations of ``SequenceMapModule`` and cannot resolve them as strings.

Sequence values are never mutated in place: every op that changes a sequence returns a new
list, so a sequence read by two nodes (or carried through a Loop) stays as ONNX defines it.
The helpers are written in the TorchScript subset so a module with sequence ops still scripts
(a Loop or If carrying a sequence does not: ``to_torchscript`` then traces).
"""

from typing import List, Optional  # noqa: UP035 - TorchScript reads typing annotations

import torch
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.sequences import proto_kind, value_kind
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node


def seq_empty() -> List[Tensor]:  # noqa: UP006
    """An empty sequence."""
    out: List[Tensor] = []  # noqa: UP006
    return out


def seq_construct(xs: List[Tensor]) -> List[Tensor]:  # noqa: UP006
    """A new sequence of the given tensors."""
    return list(xs)


def _position(pos: Tensor, n: int, last: int, what: str) -> int:
    """``pos`` in ``[-n, last]`` as an index from the front (negative counts from ``n``)."""
    p = int(pos.reshape(-1)[0].item())
    if p < -n or p > last:
        raise IndexError(what + ": position " + str(p) + " out of range")
    if p < 0:
        p += n
    return p


def seq_insert(seq: List[Tensor], x: Tensor, pos: Optional[Tensor]) -> List[Tensor]:  # noqa: UP006, UP045
    """SequenceInsert: ``x`` at ``pos`` (negative counts from the back; absent: appended)."""
    out = list(seq)
    if pos is None:
        out.append(x)
    else:
        out.insert(_position(pos, len(out), len(out), "SequenceInsert"), x)
    return out


def seq_erase(seq: List[Tensor], pos: Optional[Tensor]) -> List[Tensor]:  # noqa: UP006, UP045
    """SequenceErase: the sequence without the element at ``pos`` (absent: the last)."""
    out = list(seq)
    p = len(out) - 1
    if pos is not None:
        p = _position(pos, len(out), len(out) - 1, "SequenceErase")
    out.pop(p)
    return out


def seq_at(seq: List[Tensor], pos: Tensor) -> Tensor:  # noqa: UP006
    """SequenceAt: the element at ``pos`` (negative counts from the back)."""
    return seq[_position(pos, len(seq), len(seq) - 1, "SequenceAt")]


def seq_length(seq: List[Tensor]) -> Tensor:  # noqa: UP006
    """SequenceLength: the number of elements as an int64 scalar."""
    return torch.tensor(len(seq), dtype=torch.int64)


def split_to_seq(x: Tensor, split: Optional[Tensor], axis: int, keepdims: bool) -> List[Tensor]:  # noqa: UP006, UP045
    """SplitToSequence: chunks of size 1 (squeezed unless ``keepdims``) when ``split`` is
    absent, chunks of a scalar ``split`` (the last may be smaller), or the 1-D sizes."""
    if axis < 0:
        axis += x.dim()
    if split is None:
        parts = list(torch.split(x, 1, axis))
        if not keepdims:
            return [p.squeeze(axis) for p in parts]
        return parts
    if split.dim() == 0:
        return list(torch.split(x, int(split.item()), axis))
    sizes: List[int] = [int(split[i].item()) for i in range(split.size(0))]  # noqa: UP006
    return list(torch.split(x, sizes, axis))


def concat_from_seq(seq: List[Tensor], axis: int, new_axis: bool) -> Tensor:  # noqa: UP006
    """ConcatFromSequence: ``cat`` along ``axis``, or ``stack`` on a new axis."""
    if new_axis:
        return torch.stack(seq, axis)
    return torch.cat(seq, axis)


def opt_none_tensor() -> Optional[Tensor]:  # noqa: UP045
    """An empty optional tensor."""
    return None


def opt_none_seq() -> Optional[List[Tensor]]:  # noqa: UP006, UP045
    """An empty optional sequence."""
    return None


def opt_has_tensor(x: Optional[Tensor]) -> Tensor:  # noqa: UP045
    """OptionalHasElement of an optional tensor."""
    return torch.tensor(x is not None)


def opt_has_seq(x: Optional[List[Tensor]]) -> Tensor:  # noqa: UP006, UP045
    """OptionalHasElement of an optional sequence."""
    return torch.tensor(x is not None)


def opt_get_tensor(x: Optional[Tensor]) -> Tensor:  # noqa: UP045
    """OptionalGetElement of an optional tensor (an error when empty)."""
    if x is None:
        raise ValueError("OptionalGetElement: the optional is empty")
    return x


def opt_get_seq(x: Optional[List[Tensor]]) -> List[Tensor]:  # noqa: UP006, UP045
    """OptionalGetElement of an optional sequence (an error when empty)."""
    if x is None:
        raise ValueError("OptionalGetElement: the optional is empty")
    return x


class SequenceMapModule(torch.nn.Module):
    """ONNX SequenceMap: runs ``body`` once per element of the sequence inputs."""

    is_seq: List[bool]  # noqa: UP006
    n_out: int

    def __init__(self, body: torch.nn.Module, is_seq: list[bool], n_out: int) -> None:
        super().__init__()
        self.body = body
        self.is_seq = is_seq
        self.n_out = n_out

    def forward(
        self,
        seqs: List[List[Tensor]],  # noqa: UP006
        tensors: List[Tensor],  # noqa: UP006
        captures: List[Tensor],  # noqa: UP006
    ) -> List[List[Tensor]]:  # noqa: UP006
        n = len(seqs[0])
        out: List[List[Tensor]] = [[] for _ in range(self.n_out)]  # noqa: UP006
        for i in range(n):
            args: List[Tensor] = []  # noqa: UP006
            s = 0
            t = 0
            for flag in self.is_seq:
                if flag:
                    args.append(seqs[s][i])
                    s += 1
                else:
                    args.append(tensors[t])
                    t += 1
            res = self.body(args, captures)
            for j in range(self.n_out):
                out[j].append(res[j])
        return out


def _present(node: Node, i: int) -> bool:
    return i < len(node.inputs) and node.inputs[i] is not None


@lowers("SequenceEmpty")
def sequence_empty(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SequenceEmpty() -> []
    return ctx.call(seq_empty)


@lowers("SequenceConstruct")
def sequence_construct(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SequenceConstruct(a, b, ...) -> [a, b, ...]
    return ctx.call(seq_construct, list(args))


@lowers("SequenceInsert")
def sequence_insert(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SequenceInsert(s, x, pos?) -> s[:pos] + [x] + s[pos:]
    pos = args[2] if len(args) > 2 else None
    return ctx.call(seq_insert, args[0], args[1], pos)


@lowers("SequenceErase")
def sequence_erase(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SequenceErase(s, pos?) -> s without s[pos] (the last when pos is absent)
    pos = args[1] if len(args) > 1 else None
    return ctx.call(seq_erase, args[0], pos)


@lowers("SequenceAt")
def sequence_at(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SequenceAt(s, pos) -> s[pos]
    return ctx.call(seq_at, args[0], args[1])


@lowers("SequenceLength")
def sequence_length(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SequenceLength(s) -> len(s) as an int64 scalar
    return ctx.call(seq_length, args[0])


@lowers("SplitToSequence")
def split_to_sequence(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SplitToSequence(x, split?) -> list(torch.split(x, split or 1, axis))
    split = args[1] if len(args) > 1 else None
    axis = int(node.attr("axis", 0))
    keepdims = bool(node.attr("keepdims", 1))
    return ctx.call(split_to_seq, args[0], split, axis, keepdims)


@lowers("ConcatFromSequence")
def concat_from_sequence(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ConcatFromSequence(s) -> torch.cat(s, axis) | torch.stack(s, axis) with new_axis=1
    axis = int(node.attr("axis"))
    new_axis = bool(node.attr("new_axis", 0))
    return ctx.call(concat_from_seq, args[0], axis, new_axis)


@lowers("Optional")
def optional(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Optional(x) -> x ; Optional() -> None
    if _present(node, 0):
        return args[0]
    tp = node.attr("type", None)
    is_seq = tp is not None and proto_kind(getattr(tp, "proto", tp)) == "sequence"
    return ctx.call(opt_none_seq if is_seq else opt_none_tensor)


@lowers("OptionalHasElement")
def optional_has_element(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # OptionalHasElement(x) -> tensor(x is not None); no input -> tensor(False)
    if not _present(node, 0):
        return ctx.call(opt_has_tensor, ctx.call(opt_none_tensor))
    kind = value_kind(node.inputs[0])
    if kind in ("tensor", "sequence"):
        return ctx.call(torch.tensor, True)
    if kind == "optional_sequence":
        return ctx.call(opt_has_seq, args[0])
    return ctx.call(opt_has_tensor, args[0])


@lowers("OptionalGetElement")
def optional_get_element(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # OptionalGetElement(x) -> x (an error when x is None)
    kind = value_kind(node.inputs[0])
    if kind in ("tensor", "sequence"):
        return args[0]
    if kind == "optional_sequence":
        return ctx.call(opt_get_seq, args[0])
    return ctx.call(opt_get_tensor, args[0])


@lowers("SequenceMap")
def sequence_map(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SequenceMap(s, x...) {body} -> [body(s[i], x...) for i in range(len(s))] per output
    is_seq = [value_kind(v) == "sequence" for v in node.inputs]
    if not is_seq or not is_seq[0]:
        raise Unsupported("SequenceMap whose first input is not known to be a sequence")
    body_module, captures = ctx.lower_subgraph(node.attr("body"))
    module = SequenceMapModule(body_module, is_seq, len(node.outputs))
    name = ctx.submodule(module, "sequence_map")
    seqs = [a for a, s in zip(args, is_seq) if s]
    tensors = [a for a, s in zip(args, is_seq) if not s]
    caps = [ctx.value(v) for v in captures]
    result = ctx.fx.call_module(name, (seqs, tensors, caps))
    return [ctx.getitem(result, i) for i in range(len(node.outputs))]
