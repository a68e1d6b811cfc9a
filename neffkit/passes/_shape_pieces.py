"""onnx shape inference of a model nested deeper than onnx's protobuf parser accepts.

``onnx.shape_inference.infer_shapes`` serializes the model and parses it again in C++, where
protobuf refuses messages nested more than 100 deep. Every level of subgraph costs three
(GraphProto -> NodeProto -> AttributeProto), so a model whose Ifs nest about 30 deep (the
partitioned unroll of a long decoder: each partition's gate holds the next) fails as a whole.

Here such a model is inferred in pieces: the graphs below ``MAX_DEPTH`` levels are cut out, the
rest is inferred, then every cut graph is inferred as a model of its own whose inputs are the
outer values it reads, typed by the pieces above it (constants it reads are copied in, so
shape values stay known to onnx's data propagation). Cut graphs can be cut again, so any depth
works, at the cost of one more inference per ``MAX_DEPTH`` levels.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TypeProto

__all__ = ["MAX_DEPTH", "infer_in_pieces"]

#: Subgraph levels inferred in one piece: 3 x 24 + the model's own messages stays well under
#: protobuf's 100.
MAX_DEPTH = 24


def infer_in_pieces(model: ModelProto, *, data_prop: bool) -> dict[str, TypeProto]:
    """The inferred type of every named value of ``model`` (edited: deep graphs are cut out).

    Raises whatever ``onnx.shape_inference.infer_shapes`` raises for a piece.
    """
    known: dict[str, TypeProto] = {}
    consts: dict[str, TensorProto | NodeProto] = {}  # an initializer or a Constant node
    shape_ops: dict[str, NodeProto] = {}  # name -> the shape-computing node that makes it
    pieces: list[tuple[GraphProto, NodeProto | None]] = [(model.graph, None)]
    while pieces:
        graph, owner = pieces.pop()
        cuts = _cut_below(graph, MAX_DEPTH)
        piece = _piece_model(model, graph, owner, known, consts, shape_ops, top=owner is None)
        inferred = onnx.shape_inference.infer_shapes(
            piece, check_type=False, strict_mode=False, data_prop=data_prop
        )
        for g in _graphs(inferred.graph):
            for vi in (*g.input, *g.value_info, *g.output):
                if vi.type.HasField("tensor_type") or vi.type.WhichOneof("value"):
                    known[vi.name] = vi.type
        for g in _graphs(graph):
            for t in g.initializer:
                consts[t.name] = t
            for n in g.node:
                if n.domain not in ("", "ai.onnx") or not n.output:
                    continue
                if n.op_type == "Constant":
                    consts[n.output[0]] = n
                elif n.op_type in _SHAPE_OPS:
                    shape_ops.update((name, n) for name in n.output)
        pieces.extend(cuts)
    return known


#: Ops that compute shapes from shapes: a cut graph reading their result gets a copy of them
#: (and of what they read, up to ``_COPY_LIMIT`` nodes), so data propagation still knows the
#: value (a Reshape deep inside reading a shape computed at the top stays static).
_SHAPE_OPS = frozenset(
    {"Shape", "Size", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast", "Add", "Sub",
     "Mul", "Div", "Neg", "Identity", "Range", "ConstantOfShape", "Expand", "Equal", "Where"}
)  # fmt: skip
_COPY_LIMIT = 64


def _subgraphs(node: NodeProto) -> Iterator[GraphProto]:
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def _graphs(graph: GraphProto) -> Iterator[GraphProto]:
    stack = [graph]
    while stack:
        g = stack.pop()
        yield g
        for node in g.node:
            stack.extend(_subgraphs(node))


def _cut_below(graph: GraphProto, depth: int) -> list[tuple[GraphProto, NodeProto]]:
    """Moves the subgraphs ``depth`` levels down out of ``graph`` (left empty, keeping their
    declared outputs), returning each with the node that holds it."""
    cuts: list[tuple[GraphProto, NodeProto]] = []
    stack = [(graph, 0)]
    while stack:
        g, d = stack.pop()
        for node in g.node:
            for a in node.attribute:
                subs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)
                for sub in subs:
                    if d + 1 < depth:
                        stack.append((sub, d + 1))
                        continue
                    cut = GraphProto()
                    cut.CopyFrom(sub)
                    cuts.append((cut, node))
                    del sub.node[:]
                    del sub.initializer[:]
                    del sub.value_info[:]
    return cuts


def _piece_model(
    model: ModelProto,
    graph: GraphProto,
    owner: NodeProto | None,
    known: dict[str, TypeProto],
    consts: dict[str, TensorProto | NodeProto],
    shape_ops: dict[str, NodeProto],
    *,
    top: bool,
) -> ModelProto:
    """A model to infer ``graph`` on its own: the top graph as it is; a cut subgraph with the
    outer values it reads as inputs (their known types) or as copied constants."""
    piece = ModelProto()
    piece.ir_version = model.ir_version
    piece.opset_import.extend(model.opset_import)
    piece.functions.extend(model.functions)
    if top:
        piece.graph.CopyFrom(graph)
        return piece
    g = piece.graph
    g.CopyFrom(graph)
    g.name = graph.name or "piece"
    if owner is not None and owner.op_type in ("Loop", "Scan"):
        _type_body_inputs(g, owner, known)
    copied: list[NodeProto] = []
    inputs: list[str] = []
    have: set[str] = set()
    todo = list(reversed(_free_names(graph)))
    while todo:
        name = todo.pop()
        if name in have:
            continue
        have.add(name)
        const = consts.get(name)
        producer = shape_ops.get(name)
        if isinstance(const, TensorProto):
            g.initializer.append(const)
        elif const is not None:
            copied.append(const)
        elif producer is not None and len(copied) < _COPY_LIMIT:
            copied.append(producer)
            have.update(producer.output)
            todo.extend(i for i in reversed(producer.input) if i)
        else:
            inputs.append(name)
    for name in inputs:
        vi = g.input.add()
        vi.name = name
        if name in known:
            vi.type.CopyFrom(known[name])
    if copied:
        own = list(g.node)
        del g.node[:]
        g.node.extend(_in_order(copied))
        g.node.extend(own)
    return piece


def _in_order(nodes: list[NodeProto]) -> list[NodeProto]:
    """``nodes`` with every producer before the nodes that read it (found consumers first)."""
    made = {name: i for i, n in enumerate(nodes) for name in n.output}
    placed: set[int] = set()
    order: list[NodeProto] = []
    for start in range(len(nodes)):
        stack = [(start, False)]
        while stack:
            i, expanded = stack.pop()
            if i in placed:
                continue
            if expanded:
                placed.add(i)
                order.append(nodes[i])
                continue
            stack.append((i, True))
            stack.extend(
                (made[x], False) for x in nodes[i].input if x in made and made[x] not in placed
            )
    return order


def _type_body_inputs(g: GraphProto, owner: NodeProto, known: dict[str, TypeProto]) -> None:
    """Gives a Loop body's carried inputs the types of the Loop's initial values when the body
    declares no shape (what onnx's Loop inference does before it infers the body)."""
    if owner.op_type != "Loop":
        return
    for vi, name in zip(g.input[2:], owner.input[2:]):
        outer = known.get(name)
        if outer is None or not outer.HasField("tensor_type"):
            continue
        if not vi.type.tensor_type.HasField("shape"):
            vi.type.CopyFrom(outer)


def _free_names(graph: GraphProto) -> list[str]:
    """The names ``graph`` (or a subgraph in it) reads but does not define, in first-use order."""
    defined: set[str] = {""}
    for g in _graphs(graph):
        defined.update(vi.name for vi in g.input)
        defined.update(t.name for t in g.initializer)
        for n in g.node:
            defined.update(n.output)
    free: dict[str, None] = {}
    for g in _graphs(graph):
        for n in g.node:
            for name in n.input:
                if name not in defined:
                    free[name] = None
        for vi in g.output:
            if vi.name not in defined:
                free[vi.name] = None
    return list(free)
