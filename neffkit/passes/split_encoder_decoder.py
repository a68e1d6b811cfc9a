"""``split``: a top-level ``Loop`` stays a loop run on the host; its body becomes one compiled
unit (the step), and the nodes before the loop another (the encoder).

Before / after (the graph changes only where the step would not trace; the units are recorded in
the model's ``metadata_props``, keyed by the Loop node's name)::

    m = Encoder(x)                         [host_loop_0] y = Loop(M, c, v) {   # step unit
    y = Loop(M, c, v) {                        ...
        ...                       ->           s = Where(Reshape(b, []), t, f) # was If(b){t}{f}
        s = If(b) {t} else {f}             }
    }                                      metadata_props: "neffkit.host_loop/host_loop_0": "step"

The model stays one ordinary ONNX model (onnxruntime, ``save``, ``inspect``, ``verify`` run it
as before): the marking is model metadata, which every ONNX tool keeps and ignores. The torch
backend's ``to_torchscript`` (``neffkit convert``) reads it and writes one TorchScript module:
a scripted host loop that calls the traced encoder and the traced step
(``neffkit.backends.torch.host_loop``).

An ``If`` inside the body whose branches each only forward one value (``Identity`` of a value
defined outside the branch) selects a value: it becomes ``Where``, exactly, so that the step has
no control flow and ``torch.jit.trace`` keeps its meaning. Loops inside subgraphs are left alone
(a host loop inside a compiled unit is not one) and counted in the stats.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from onnx import TensorProto

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import Tensor
from neffkit.ir.types import TensorType
from neffkit.ir.units import STEP_UNIT, host_loop_key
from neffkit.passes.base import Pass, PassContext, PassResult
from neffkit.passes.registry import register


@register
@dataclass(frozen=True)
class SplitEncoderDecoder(Pass):
    """Marks each top-level Loop as a host loop whose body is one compiled step unit."""

    name: ClassVar[str] = "split"
    description: ClassVar[str] = (
        "host loop: each top-level Loop's body becomes a compiled step, the graph before it the "
        "encoder (marked in metadata_props)"
    )

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        props = graph.meta.metadata_props
        taken = {n.name for n in graph.all_nodes() if n.name}
        names = Counter(n.name for n in graph.all_nodes())
        marked = selects = 0
        for node in graph:
            if node.op_type != "Loop" or node.domain != "":
                continue
            if not node.name or names[node.name] > 1:
                # the key names one node: a shared name gets a fresh one
                names[node.name] -= 1
                node.name = _fresh("host_loop", taken)
            # If(b){Identity(t)}{Identity(f)} -> Where(b, t, f): the step gets no control flow
            selects += _selects_to_where(node.attr("body"))
            key = host_loop_key(node)
            if props.get(key) != STEP_UNIT:
                props[key] = STEP_UNIT
                marked += 1
        nested = sum(
            1 for g in graph.all_graphs() if g is not graph for n in g if n.op_type == "Loop"
        )
        stats = {"host_loops": marked, "if_to_where": selects, "nested_loops_left": nested}
        return PassResult(marked + selects > 0, {k: v for k, v in stats.items() if v})


def _fresh(base: str, taken: set[str]) -> str:
    i = 0
    while f"{base}_{i}" in taken:
        i += 1
    name = f"{base}_{i}"
    taken.add(name)
    return name


def _selects_to_where(body: Graph) -> int:
    """Rewrites the value-selecting ``If`` nodes directly in ``body``; returns how many."""
    count = 0
    for node in body:
        picked = _selected(node)
        if picked is None:
            continue
        then_v, else_v = (_outside(v, body) for v in picked)
        cond = node.inputs[0]
        assert cond is not None
        # If(b){t}{f} -> Where(Reshape(b, []), t, f): b holds one element; a scalar condition
        # broadcasts to t's shape, which f shares
        shape = Value(f"{node.name or 'if'}_scalar_shape", const=Tensor(np.zeros(0, np.int64)))
        body.add_initializer(shape)
        scalar = Node("Reshape", [cond, shape], outputs=[Value(f"{cond.name}_scalar")])
        body.insert_before(node, scalar)
        b = scalar.outputs[0]
        if then_v.dtype == TensorProto.BOOL or _const_dtype(then_v) == TensorProto.BOOL:
            # onnxruntime has no bool Where: Or(And(b, t), And(Not(b), f)), as exact
            not_b = Node("Not", [b], outputs=[Value(f"{cond.name}_not")])
            pick_t = Node("And", [b, then_v], outputs=[Value("then_picked")])
            pick_f = Node("And", [not_b.outputs[0], else_v], outputs=[Value("else_picked")])
            where = Node("Or", [pick_t.outputs[0], pick_f.outputs[0]], outputs=[Value("selected")])
            for n in (not_b, pick_t, pick_f):
                body.insert_before(node, n)
        else:
            where = Node("Where", [b, then_v, else_v], outputs=[Value("selected")])
        body.insert_before(node, where)
        out = node.outputs[0]
        where.outputs[0].type = out.type
        out.replace_all_uses_with(where.outputs[0])
        body.remove(node)
        count += 1
    return count


def _selected(node: Node) -> tuple[Value, Value] | None:
    """``(t, f)`` when ``node`` is ``If(b){Identity(t)}{Identity(f)}`` with one output and
    ``t``, ``f`` of one static tensor type defined outside the branches, else None."""
    if node.op_type != "If" or node.domain != "" or len(node.outputs) != 1:
        return None
    if node.inputs[0] is None or node.outputs[0].is_graph_output:
        return None
    picked = []
    for key in ("then_branch", "else_branch"):
        branch = node.attr(key)
        if not isinstance(branch, Graph) or branch.inputs or len(branch.outputs) != 1:
            return None
        nodes = branch.nodes
        out = branch.outputs[0]
        if len(nodes) == 1 and nodes[0].op_type == "Identity" and out is nodes[0].outputs[0]:
            src = nodes[0].inputs[0]
        elif not nodes:
            src = out
        else:
            return None
        if src is None or (src.graph is branch and not _branch_constant(src, branch)):
            return None
        picked.append(src)
    t, f = picked
    tt, ft = _static_type(t), _static_type(f)
    if tt is None or tt != ft:
        return None
    return t, f


def _branch_constant(v: Value, branch: Graph) -> bool:
    """True when ``v`` is an initializer of ``branch`` itself (a branch returning a constant)."""
    return v.producer is None and v.const is not None and v not in branch.inputs


def _outside(v: Value, body: Graph) -> Value:
    """``v``, or, for a branch's own constant, a copy of it among the body's initializers."""
    g = v.graph
    if g is None or g is body or v.producer is not None or v.const is None:
        return v
    if g.parent is None or g.parent.graph is not body:
        return v
    return body.add_initializer(Value(v.name, v.type, const=v.const))


def _const_dtype(v: Value) -> int | None:
    """The element type of ``v`` when it is a Constant node's output, else None."""
    p = v.producer
    if p is not None and p.op_type == "Constant" and isinstance(p.attr("value"), Tensor):
        return int(p.attr("value").dtype)
    return None


def _static_type(v: Value) -> tuple[int, tuple[int, ...]] | None:
    """``(dtype, shape)`` of ``v`` when both are known (its type, or its constant's)."""
    t = v.type
    if isinstance(t, TensorType) and t.shape is not None:
        dims = [d for d in t.shape if isinstance(d, int)]
        if len(dims) == len(t.shape):
            return t.dtype, tuple(dims)
    p = v.producer
    const = v.const
    if const is None and p is not None and p.op_type == "Constant" and p.domain == "":
        const = p.attr("value")
    if isinstance(const, Tensor):
        return const.dtype, tuple(const.shape)
    return None
