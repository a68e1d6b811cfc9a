"""Structural verifier: SSA, topological order, use-list consistency, types where known.

Runs in O(nodes + uses) over the graph and all its subgraphs with an explicit stack (no
recursion on nesting depth). The pass manager calls it after every pass.
"""

from __future__ import annotations

from typing import Any

from neffkit.errors import VerificationError
from neffkit.ir.core import Graph, Value
from neffkit.ir.tensor import dtype_name
from neffkit.ir.types import TensorType


def verify(graph: Graph) -> None:
    """Checks every invariant of ``graph`` and its subgraphs.

    Subgraphs are checked when their node is reached, so an outer value they read must be
    defined before that node, as ONNX requires.

    Raises:
        VerificationError: the first broken invariant, naming the node and op.
    """
    # Each frame: [graph, next node, previous node, nodes seen, values defined so far]. The
    # stack of frames is the scope chain; explicit, so nesting depth costs no recursion. The
    # node loop is written out flat: the pass manager runs it after every pass that changed
    # the graph, so it is a good part of the optimize time on big graphs.
    frames: list[list[Any]] = []
    _enter(graph, frames)
    while frames:
        frame = frames[-1]
        g, node, prev, count, defined = frame
        holders = g.holders
        holder = None
        while node is not None:
            if node.graph is not g:
                raise VerificationError(
                    f"graph '{g.name}': node is linked in but owned by another graph", node
                )
            if node.prev is not prev:
                raise VerificationError(f"graph '{g.name}': broken node list links", node)
            count += 1
            i = 0
            for v in node.inputs:
                if v is not None:
                    if v not in defined and not _visible(v, frames):
                        raise VerificationError(
                            f"input {i} '{v.name}' is used before it is defined (or is not in "
                            "scope)",
                            node,
                        )
                    if not v.has_use(node, i):
                        raise VerificationError(
                            f"input {i} '{v.name}' is missing from its use-list", node
                        )
                i += 1
            i = 0
            for v in node.outputs:
                if v.producer is not node or v.index != i:
                    raise VerificationError(
                        f"output {i} '{v.name}' does not point back to it", node
                    )
                if v in defined:
                    raise VerificationError(f"output {i} '{v.name}' is defined twice (SSA)", node)
                defined.add(v)
                for user, j in v.iter_uses():
                    ins = user.inputs
                    if j >= len(ins) or ins[j] is not v:
                        raise VerificationError(
                            f"output '{v.name}' lists a stale use by {user!r} input {j}", node
                        )
                    if user.graph is None:
                        raise VerificationError(
                            f"output '{v.name}' is used by a node that was removed: {user!r}",
                            node,
                        )
                i += 1
            prev = node
            node = node.next
            if prev in holders:
                holder = prev
                break
        frame[1], frame[2], frame[3] = node, prev, count
        if holder is not None:
            subs = holder.subgraphs
            for sub in subs:
                if sub.parent is not holder:
                    raise VerificationError(
                        f"subgraph '{sub.name}' does not point to its node", holder
                    )
            for sub in reversed(subs):
                _enter(sub, frames)
            continue
        if count != len(g):
            raise VerificationError(
                f"graph '{g.name}': node count {len(g)} but {count} nodes linked"
            )
        _leave(g, frames)


def _visible(v: Value, frames: list) -> bool:
    for frame in reversed(frames):
        if v in frame[4]:
            return True
    return False


def _enter(g: Graph, frames: list) -> None:
    defined: set[Value] = set()
    where = f"graph '{g.name}'"
    for v in g.inputs:
        if v.producer is not None:
            raise VerificationError(f"{where}: input '{v.name}' has a producer")
        if v in defined:
            raise VerificationError(f"{where}: input '{v.name}' is listed twice")
        defined.add(v)
    for key, v in g.initializers.items():
        if v.const is None:
            raise VerificationError(f"{where}: initializer '{key}' has no tensor")
        if v.producer is not None:
            raise VerificationError(f"{where}: initializer '{key}' has a producer")
        _check_const_type(v, where)
        defined.add(v)
    frames.append([g, g.first, None, 0, defined])


def _leave(g: Graph, frames: list) -> None:
    where = f"graph '{g.name}'"
    for i, v in enumerate(g.outputs):
        if not _visible(v, frames):
            raise VerificationError(f"{where}: output {i} '{v.name}' is not defined in scope")
        if not v.is_output_of(g):
            raise VerificationError(f"{where}: output {i} '{v.name}' does not know it is an output")
    frames.pop()


def _check_const_type(v: Value, where: str) -> None:
    t = v.type
    c = v.const
    if c is None or not isinstance(t, TensorType):
        return
    if t.dtype and t.dtype != c.dtype:
        raise VerificationError(
            f"{where}: initializer '{v.name}' is declared {dtype_name(t.dtype)} but holds "
            f"{dtype_name(c.dtype)}"
        )
    if t.shape is not None:
        ok = len(t.shape) == len(c.shape) and all(
            not isinstance(d, int) or d == s for d, s in zip(t.shape, c.shape)
        )
        if not ok:
            raise VerificationError(
                f"{where}: initializer '{v.name}' is declared with shape {list(t.shape)} but "
                f"holds {list(c.shape)}"
            )
