"""``dedup``: one copy of each distinct constant, and fewer copy nodes.

Before / after::

    w1 = [1, 2, 3]   (initializer)        w1 = [1, 2, 3]
    w2 = [1, 2, 3]   (initializer)  ->    a = Add(x, w1)
    c = Constant<value=[1, 2, 3]>         b = Mul(x, w1)
    a = Add(x, w1)                        y = Sub(a, w1)
    b = Mul(x, w2)
    y = Sub(a, c)

Constants are grouped by content hash (dtype, shape, bytes) and merged only after a
byte-exact comparison. Initializers and ``Constant`` nodes of every graph (subgraphs
included) take part; the kept copy lives in the outermost graph, so every scope sees it.
"Fewer copies": ``Identity``, ``Cast`` to the same type and ``Expand`` that does not
broadcast are removed where their input can stand in for their output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import Tensor
from neffkit.passes import shapes
from neffkit.passes.base import Pass, PassContext, PassResult, option
from neffkit.passes.registry import register


@register
@dataclass(frozen=True)
class DeduplicateTensors(Pass):
    """Merges equal constants and drops copy nodes."""

    name: ClassVar[str] = "dedup"
    description: ClassVar[str] = (
        "one copy of each distinct constant (initializers and Constant nodes, all scopes); "
        "drop redundant Identity/Cast/Expand copies"
    )
    copies: bool = option(True, "also drop Identity / same-type Cast / non-broadcasting Expand")
    constant_nodes: bool = option(True, "turn Constant nodes into initializers (one node less)")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        leftover: dict[Graph, list[Node]] | None = None
        converted = 0
        if self.constant_nodes:
            converted, leftover = _constant_nodes_to_initializers(graph)
        merged, saved = _merge_constants(graph, ctx, leftover)
        removed = _remove_copies(graph, ctx) if self.copies else 0
        stats = {}
        if merged:
            stats["tensors_merged"] = merged
            stats["bytes_saved"] = saved
        if removed:
            stats["copies_removed"] = removed
        if converted:
            stats["constant_nodes_converted"] = converted
        return PassResult(bool(merged or removed or converted), stats)


_SCALAR_ATTRS = {
    "value_float": np.float32,
    "value_floats": np.float32,
    "value_int": np.int64,
    "value_ints": np.int64,
}


def _constant_tensor(node: Node) -> Tensor | None:
    """The tensor a Constant node produces (None for string and sparse forms)."""
    for key, a in node.attributes.items():
        if key == "value":
            t = a.value
            return t if isinstance(t, Tensor) and t.dtype != 8 else None  # 8: STRING
        dt = _SCALAR_ATTRS.get(key)
        if dt is not None:
            return Tensor(np.asarray(a.value, dtype=dt))
    return None


def _constant_nodes_to_initializers(graph: Graph) -> tuple[int, dict[Graph, list[Node]]]:
    """``c = Constant<value=T>()`` -> initializer ``c = T``, in the graph that holds it.

    Returns the count and, per graph, the Constant nodes left as they are (so the merge step
    need not walk every node again).
    """
    converted = 0
    leftover: dict[Graph, list[Node]] = {}
    for g in list(graph.all_graphs()):
        kept = leftover[g] = []
        for node in g:
            if node.op_type != "Constant" or node.domain or len(node.outputs) != 1:
                continue
            out = node.outputs[0]
            if out.is_graph_output:
                kept.append(node)
                continue  # keep graph outputs produced by nodes (subgraph outputs need it)
            t = _constant_tensor(node)
            if t is None:
                kept.append(node)
                continue
            init = g.add_initializer(Value(out.name or "const", out.type, const=t))
            out.replace_all_uses_with(init)
            g.remove(node)
            converted += 1
    return converted, leftover


def _constant_sources(
    graph: Graph, ctx: PassContext, constant_nodes: dict[Graph, list[Node]] | None = None
) -> list[tuple[Value, Tensor, Graph]]:
    """Every constant value: (value, tensor, graph that defines it), outer graphs first.

    ``constant_nodes``: the Constant nodes of each graph when already known (else every node
    is looked at).
    """
    out = []
    for g in graph.all_graphs():
        overridable = set(g.inputs) if (ctx.keep_overridable_inputs or g is not graph) else set()
        for v in g.initializers.values():
            if v.const is not None and v not in overridable:
                out.append((v, v.const, g))
        nodes = g if constant_nodes is None or g not in constant_nodes else constant_nodes[g]
        for node in nodes:
            if node.graph is not g:
                continue  # removed since it was listed
            if node.op_type == "Constant" and node.domain == "" and "value" in node.attributes:
                if node.outputs[0].is_graph_output:
                    continue  # a Constant that is a graph output keeps its node (see above)
                t = node.attr("value")
                if isinstance(t, Tensor):
                    out.append((node.outputs[0], t, g))
    return out


def _merge_constants(
    graph: Graph, ctx: PassContext, constant_nodes: dict[Graph, list[Node]] | None = None
) -> tuple[int, int]:
    groups: dict[bytes, list[tuple[Value, Tensor, Graph]]] = {}
    for item in _constant_sources(graph, ctx, constant_nodes):
        t = item[1]
        if t.nbytes == 0 and t.size != 0:
            continue
        groups.setdefault(t.content_hash(), []).append(item)
    merged = 0
    saved = 0
    for items in groups.values():
        if len(items) < 2:
            continue
        keep_v, keep_t, keep_g = items[0]
        rest = [it for it in items[1:] if it[1].equals(keep_t)]
        if not rest:
            continue
        if keep_g is not graph or keep_v.producer is not None:
            keep_v = _hoist_to_root(keep_v, keep_t, keep_g, graph)
        for v, t, g in rest:
            if v is keep_v:
                continue
            v.replace_all_uses_with(keep_v)
            if v.producer is not None:
                g.remove(v.producer)
            else:
                g.remove_initializer(v)
            merged += 1
            saved += t.nbytes
    return merged, saved


def _hoist_to_root(v: Value, t: Tensor, g: Graph, root: Graph) -> Value:
    """Makes the kept copy a root initializer, so every scope can read it."""
    new = Value(v.name or "const", v.type, const=t)
    root.add_initializer(new)
    if v.producer is not None and v.is_graph_output:
        # a graph output must stay produced in its graph: keep the Constant node as it is
        return new
    v.replace_all_uses_with(new)
    if v.producer is not None:
        g.remove(v.producer)
    else:
        g.remove_initializer(v)
    return new


def _remove_copies(graph: Graph, ctx: PassContext) -> int:
    removed = 0
    for g in list(graph.all_graphs()):
        for node in g:
            if node.domain != "" or len(node.outputs) != 1 or not node.inputs:
                continue
            src = node.inputs[0]
            out = node.outputs[0]
            if src is None or not _is_copy(node, src, out, ctx):
                continue
            if out.is_graph_output and (
                src.is_graph_output or src.producer is None or src.graph is not g
            ):
                continue  # the output needs a node of its own (or a distinct name)
            if out.is_graph_output:
                if src.name and out.name:
                    src.name, out.name = out.name, src.name
            out.replace_all_uses_with(src)
            if src.type is None and out.type is not None:
                src.type = out.type
            g.remove(node)
            removed += 1
    return removed


def _is_copy(node: Node, src: Value, out: Value, ctx: PassContext) -> bool:
    op = node.op_type
    if op == "Identity":
        return True
    if op == "Cast":
        return src.dtype is not None and src.dtype == node.attr("to")
    if op == "Expand" and len(node.inputs) == 2:
        shape_v = node.inputs[1]
        if shape_v is None or shape_v.const is None or shape_v.producer is not None:
            return False
        g = shape_v.graph
        if g is not None and shape_v in g.inputs and (ctx.keep_overridable_inputs or g.parent):
            return False  # an IR v3 input with an initializer: the caller may override it
        if src.shape is None or not all(isinstance(d, int) for d in src.shape):
            return False
        target = [int(x) for x in np.asarray(shape_v.const.numpy()).reshape(-1)]
        return shapes.keeps_shape(src.shape, target)
    return False
