"""Structural copies of graphs: new nodes and values, shared (immutable) tensors and attributes.

Used by the pass manager to restore a graph when a pass fails, and by tools that need a graph
before and after a transformation. Iterative, so nesting depth costs no recursion.
"""

from __future__ import annotations

from onnx import AttributeProto

from neffkit._gc import paused_gc
from neffkit.ir.core import Attr, Graph, Node, Value


def clone_graph(graph: Graph) -> Graph:
    """A deep structural copy of ``graph`` and its subgraphs (tensors are shared)."""
    with paused_gc():
        vmap: dict[Value, Value] = {}
        return _clone(graph, vmap)


def _clone(graph: Graph, vmap: dict[Value, Value]) -> Graph:
    new = Graph(graph.name, opset_imports=graph.opset_imports)
    new.doc_string = graph.doc_string
    if graph.parent is None:
        _copy_meta(graph, new)
    for key, v in graph.initializers.items():
        c = _copy_value(v)
        vmap[v] = c
        c.name = key
        new.add_initializer(c)
    # inputs in their order (IR v3 models interleave initializers among them)
    for v in graph.inputs:
        copy = vmap.get(v)
        if copy is None:
            copy = vmap[v] = _copy_value(v)
        new.add_input(copy)
    for node in graph:
        inputs = [None if v is None else vmap[v] for v in node.inputs]
        outputs = []
        for v in node.outputs:
            c = Value(v.name, v.type)
            vmap[v] = c
            outputs.append(c)
        attrs = {}
        for name, a in node.attributes.items():
            if a.type == AttributeProto.GRAPH:
                attrs[name] = Attr(name, a.type, _clone(a.value, vmap))
            elif a.type == AttributeProto.GRAPHS:
                attrs[name] = Attr(name, a.type, [_clone(g, vmap) for g in a.value])
            else:
                attrs[name] = a  # immutable: shared
        n = Node(
            node.op_type,
            inputs,
            domain=node.domain,
            attributes=attrs,
            outputs=outputs,
            name=node.name,
            overload=node.overload,
        )
        n.doc_string = node.doc_string
        new.append(n)
    new.set_outputs([vmap[v] for v in graph.outputs], graph.output_names)
    return new


def _copy_value(v: Value) -> Value:
    return Value(v.name, v.type, const=v.const)


def _copy_meta(src: Graph, dst: Graph) -> None:
    m, n = src.meta, dst.meta
    for slot in type(m).__slots__:
        value = getattr(m, slot)
        if isinstance(value, list | dict):
            value = type(value)(value)
        setattr(n, slot, value)


def replace_contents(target: Graph, source: Graph) -> None:
    """Moves everything ``source`` holds into ``target`` (which callers keep referencing).

    ``source`` must be a top-level graph that nothing else uses afterwards.
    """
    target.take_contents(source)
