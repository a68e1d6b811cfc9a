"""``cse``: merges structurally identical nodes (same op, attributes and inputs).

Before / after::

    a = MatMul(x, w)         a = MatMul(x, w)
    b = MatMul(x, w)   ->    y = Add(a, a)
    y = Add(a, b)

Expressions computed before a Loop or If node are visible inside its bodies, so a body that
recomputes an outer expression reads the outer value instead (legal: the outer value exists
before the body runs). Random ops never merge. Commutative ops match with inputs swapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from onnx import AttributeProto

from neffkit.ir.core import Attr, Graph, Node
from neffkit.passes.base import _IMPURE, Pass, PassContext, PassResult
from neffkit.passes.registry import register

_GRAPH_TYPES = frozenset((AttributeProto.GRAPH, AttributeProto.GRAPHS))
_COMMUTATIVE = frozenset(
    {
        "Add",
        "Mul",
        "Max",
        "Min",
        "Sum",
        "Mean",
        "And",
        "Or",
        "Xor",
        "Equal",
        "BitwiseAnd",
        "BitwiseOr",
        "BitwiseXor",
    }
)


@register
@dataclass(frozen=True)
class EliminateCommonSubexpressions(Pass):
    """Keeps one node of each set of identical nodes."""

    name: ClassVar[str] = "cse"
    description: ClassVar[str] = (
        "merge identical nodes (same op, attributes, inputs), also into Loop/If bodies"
    )

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        merged = 0
        # Frames: (graph, node iterator, table of expressions defined so far in it).
        frames: list[tuple[Graph, Iterator[Node], dict[Any, Node]]] = [(graph, iter(graph), {})]
        while frames:
            g, it, table = frames[-1]
            node = next(it, None)
            if node is None:
                frames.pop()
                continue
            key = _key(node)
            if key is not None:
                found = _lookup(key, frames)
                if found is not None and found is not node:
                    for old, new in zip(node.outputs, found.outputs):
                        old.replace_all_uses_with(new)
                    g.remove(node)
                    merged += 1
                    continue
                table[key] = node
            if node in g.holders:  # most nodes hold no subgraph: skip the attribute scan
                for sub in reversed(node.subgraphs):
                    frames.append((sub, iter(sub), {}))
        return PassResult(merged > 0, {"nodes_merged": merged} if merged else {})


def _lookup(key: Any, frames: list) -> Node | None:
    for _, _, table in reversed(frames):
        hit = table.get(key)
        if hit is not None:
            return hit
    return None


def _key(node: Node) -> Any:
    """A hashable identity of what the node computes, or None when it must not merge."""
    if node.domain or node.op_type in _IMPURE:
        return None  # custom ops may have effects; random ops differ on every call
    ins = tuple([id(v) if v is not None else 0 for v in node.inputs])
    if node.op_type in _COMMUTATIVE:
        ins = tuple(sorted(ins))
    attrs = node.attributes
    if not attrs:
        return (node.op_type, node.overload, ins, (), len(node.outputs))
    parts = []
    for name, a in attrs.items():
        if a.type in _GRAPH_TYPES:
            return None
        parts.append((name, _attr_key(a)))
    parts.sort()
    return (node.op_type, node.overload, ins, tuple(parts), len(node.outputs))


def _attr_key(a: Attr) -> Any:
    t = a.type
    if t == AttributeProto.TENSOR:
        return ("t", a.value.content_hash())
    if t == AttributeProto.TENSORS:
        return ("ts", tuple(x.content_hash() for x in a.value))
    v = a.value
    if isinstance(v, list):
        if v and not isinstance(v[0], int | float | str):
            return (t, tuple(id(x) for x in v))  # protos: merge only the very same object
        return (t, tuple(v))
    if isinstance(v, int | float | str):
        return (t, v)
    return (t, id(v))
