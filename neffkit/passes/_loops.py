"""Reading an ONNX ``Loop`` and copying its body: the pieces the loop passes share.

``LoopParts`` names the parts of a ``Loop`` node (trip count, condition, carried values, the
body's inputs and outputs); ``copy_body`` pastes one copy of a body into another graph with
the body's inputs bound to given values; ``Emitter`` adds nodes and small constants at one
place of a graph. Bodies read outer values directly (neffkit's IR keeps captures as plain
references), so a copy keeps every captured reference as it is.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from onnx import AttributeProto

from neffkit.ir.core import Attr, Graph, Node, Value
from neffkit.ir.shape_operands import SHAPE_OPERANDS
from neffkit.ir.tensor import Tensor, onnx_dtype
from neffkit.ir.types import TensorType
from neffkit.passes._fold_eval import constant_tensor


@dataclass(frozen=True)
class LoopParts:
    """The parts of one ``Loop`` node, by their role in the ONNX spec."""

    node: Node
    body: Graph
    trip: Value | None  # M, the trip count (None: omitted)
    cond: Value | None  # the initial condition (None: omitted, the body's cond_out is ignored)
    inits: tuple[Value, ...]  # v_initial
    iter_in: Value  # the body's iteration number input
    cond_in: Value  # the body's condition input
    state_in: tuple[Value, ...]  # the body's carried inputs
    cond_out: Value
    state_out: tuple[Value, ...]
    scan_out: tuple[Value, ...]


def read_loop(node: Node) -> LoopParts | str:
    """The parts of a ``Loop`` node, or a sentence saying why it cannot be read."""
    body = node.attr("body")
    if not isinstance(body, Graph):
        return "has no body graph"
    ins = node.inputs
    k = len(ins) - 2
    if k < 0 or len(body.inputs) != k + 2 or len(body.outputs) < k + 1:
        return f"has {len(ins)} inputs for a body of {len(body.inputs)} inputs"
    if any(v is None for v in ins[2:]):
        return "has an omitted carried value"
    outs = body.outputs
    return LoopParts(
        node=node,
        body=body,
        trip=ins[0],
        cond=ins[1],
        inits=tuple(v for v in ins[2:] if v is not None),
        iter_in=body.inputs[0],
        cond_in=body.inputs[1],
        state_in=tuple(body.inputs[2:]),
        cond_out=outs[0],
        state_out=tuple(outs[1 : k + 1]),
        scan_out=tuple(outs[k + 1 :]),
    )


def const_array(v: Value | None, overridable: bool = False) -> np.ndarray | None:
    """The value of an initializer or ``Constant`` output (None: not constant, or fed)."""
    if v is None:
        return None
    p = v.producer
    if p is None:
        if v.const is None or overridable:
            return None
        g = v.graph
        if g is not None and v in g.inputs:  # a subgraph or IR v3 input may be fed
            return None
        return v.const.numpy()
    if p.op_type != "Constant" or p.domain != "":
        return None
    t = constant_tensor(p)
    return None if t is None else t.numpy()


def static_int(v: Value | None) -> int | None:
    """A constant integer scalar (or one-element tensor), else None."""
    a = const_array(v)
    if a is None or a.size != 1 or a.dtype.kind not in "iu":
        return None
    return int(a.reshape(()))


def is_true(v: Value | None) -> bool:
    """True when ``v`` is a constant whose single element is true."""
    a = const_array(v)
    return a is not None and a.size == 1 and a.dtype == np.bool_ and bool(a.reshape(()))


def dtype_of(v: Value) -> int | None:
    """The ONNX element type of ``v`` (declared, or read from a constant), else None."""
    if v.dtype is not None:
        return v.dtype
    a = const_array(v)
    return None if a is None else onnx_dtype(a.dtype)


def static_shape(v: Value) -> tuple[int, ...] | None:
    """The shape of ``v`` when every dim is a known integer (declared or constant)."""
    shape = v.shape
    if shape is None:
        a = const_array(v)
        return None if a is None else tuple(a.shape)
    if not all(isinstance(d, int) for d in shape):
        return None
    return tuple(int(d) for d in shape)  # type: ignore[arg-type] # ints, checked above


def step_type(v: Value) -> TensorType | None:
    """The type of a body value for one copy: dtype and rank kept, symbolic dims unknown.

    A symbol in a body names a dim that may differ from iteration to iteration (tokens grow),
    so copies must not share it.
    """
    t = v.type
    if not isinstance(t, TensorType):
        return None
    if t.shape is None:
        return TensorType(t.dtype, None)
    return TensorType(t.dtype, tuple(d if isinstance(d, int) else None for d in t.shape))


class Emitter:
    """Adds nodes before ``anchor`` (or at the end of ``graph``) and caches small constants."""

    def __init__(
        self,
        graph: Graph,
        anchor: Node | None,
        opset: int | None = None,
        names: set[str] | None = None,
    ) -> None:
        self.graph = graph
        # node names taken in ``graph``: onnxruntime refuses a graph with two nodes of one
        # name, and a copy's name (``w_s0``) may be one the graph already has
        self._names = names if names is not None else {n.name for n in graph if n.name}
        # a branch being built has no parent yet: its emitter is told the model's opset
        self.opset = opset if opset is not None else graph.opset("") or 0
        self.anchor = anchor
        self._added = [0]  # shared with the emitters of the branches this one builds
        self.prefix = ""  # of the copies' names: two loops of one graph copy apart
        self._consts: dict[tuple[str, bytes, tuple[int, ...]], Value] = {}

    def node(self, op: str, inputs: list[Value | None], hint: str = "", **attrs: object) -> Value:
        """Adds one single-output node and returns its output (named ``hint``)."""
        n = Node(op, inputs, outputs=[Value(hint or op.lower())])
        for key, value in attrs.items():
            n.set_attr(key, value)
        return self.add(n).outputs[0]

    @property
    def added(self) -> int:
        """Nodes added by this emitter and the branch emitters made by ``child``."""
        return self._added[0]

    def child(self, graph: Graph) -> Emitter:
        """An emitter appending to ``graph`` (a branch being built), counted with this one."""
        em = Emitter(graph, None, self.opset)
        em._added = self._added
        em.prefix = self.prefix
        return em

    def add(self, node: Node) -> Node:
        """Links ``node`` at the emitter's place (renamed when its name is taken there)."""
        self._added[0] += 1
        if node.name:
            node.name = free_name(node.name, self._names)
        if self.anchor is None:
            return self.graph.append(node)
        return self.graph.insert_before(self.anchor, node)

    def const(self, array: np.ndarray, hint: str) -> Value:
        """An initializer of this graph holding ``array`` (one per distinct value)."""
        key = (array.dtype.str, array.tobytes(), array.shape)
        v = self._consts.get(key)
        if v is None:
            v = self.graph.add_initializer(Value(hint, const=Tensor(array)))
            self._consts[key] = v
        return v


def free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_1``, ``name_2`` ... when taken; recorded as taken."""
    free = name
    i = 0
    while free in taken:
        i += 1
        free = f"{name}_{i}"
    taken.add(free)
    return free


def copy_body(
    body: Graph, em: Emitter, vmap: dict[Value, Value], tag: str, shared: dict[Value, Value]
) -> None:
    """Pastes the body's nodes at ``em``'s place; ``vmap`` binds its inputs and grows.

    ``shared`` maps the body's initializers to constants of the target graph (made once per
    loop, since every copy reads the same tensors). Values the body does not define (captured
    outer values) stay as they are.
    """
    for v, c in shared.items():
        vmap[v] = c
    for node in body:
        em.add(_copy_node(node, vmap, tag))


def _copy_node(node: Node, vmap: dict[Value, Value], tag: str) -> Node:
    inputs = [None if v is None else vmap.get(v, v) for v in node.inputs]
    attrs: dict[str, Attr] = {}
    for name, a in node.attributes.items():
        if a.type == AttributeProto.GRAPH:
            attrs[name] = Attr(name, a.type, _copy_graph(a.value, vmap, tag))
        elif a.type == AttributeProto.GRAPHS:
            attrs[name] = Attr(name, a.type, [_copy_graph(g, vmap, tag) for g in a.value])
        else:
            attrs[name] = a  # immutable: shared
    n = Node.restore(  # the decoder's fast constructor: a copy needs no checks
        node.op_type,
        node.domain,
        f"{node.name}_{tag}" if node.name else "",
        inputs,
        attrs,
        [(f"{v.name}_{tag}" if v.name else "", step_type(v)) for v in node.outputs],
        node.overload,
        node.doc_string,
    )
    for v, c in zip(node.outputs, n.outputs):
        vmap[v] = c
    return n


def _copy_graph(graph: Graph, vmap: dict[Value, Value], tag: str) -> Graph:
    """A copy of a nested subgraph (an If branch, an inner Loop body) inside a copied body."""
    new = Graph(graph.name, opset_imports=graph.opset_imports)
    new.doc_string = graph.doc_string
    for v in graph.initializers.values():
        vmap[v] = new.add_initializer(Value(v.name, v.type, const=v.const))
    for v in graph.inputs:
        copy = vmap.get(v)
        if copy is None:
            copy = vmap[v] = Value(v.name, v.type)
        if copy not in new.inputs:  # an IR v3 input that is also an initializer
            new.add_input(copy)
    for node in graph:
        new.append(_copy_node(node, vmap, tag))
    new.set_outputs([vmap.get(v, v) for v in graph.outputs], graph.output_names)
    return new


def body_size(body: Graph) -> int:
    """Nodes in the body, nested subgraphs included."""
    return sum(1 for _ in body.all_nodes())


def counted_bound(parts: LoopParts) -> int | None:
    """An upper bound on the iterations a counter in the exit condition allows, else None.

    Reads ``cond_out = And(..., Less(counter, L), ...)`` where the counter is the iteration
    number, or a carried integer that starts at a constant c0 and grows by a constant s > 0
    each step (``c_out = Add(c_in, s)``), as ``for``/``while`` loops exported from PyTorch
    read. Exact: the loop cannot run more steps than returned, whatever else the condition
    says.
    """
    if parts.cond is None:
        return None  # cond_out is ignored without a loop condition
    best: int | None = None
    stack = [parts.cond_out]
    while stack:
        v = stack.pop()
        p = v.producer
        if p is None or p.domain != "" or p.graph is not parts.body:
            continue
        if p.op_type == "And":
            stack.extend(x for x in p.inputs if x is not None)
            continue
        if p.op_type == "Less" and len(p.inputs) == 2:
            counter, limit = p.inputs
        elif p.op_type == "Greater" and len(p.inputs) == 2:
            limit, counter = p.inputs
        else:
            continue
        n = _steps_below(parts, counter, static_int(limit))
        if n is not None:
            best = n if best is None else min(best, n)
    return best


def _steps_below(parts: LoopParts, counter: Value | None, limit: int | None) -> int | None:
    """How many steps run at most while ``counter < limit`` is checked after each step."""
    if counter is None or limit is None or abs(limit) > 2**40:
        return None
    if counter is parts.iter_in:  # step i runs, then stops when i >= limit
        return max(1, limit + 1)
    for k, (v_in, v_out) in enumerate(zip(parts.state_in, parts.state_out)):
        grows = _growth(v_in, v_out)
        if grows is None or counter not in (v_in, v_out):
            continue
        start = static_int(parts.inits[k])
        if start is None or abs(start) > 2**40:
            return None
        steps = -((start - limit) // grows)  # ceil((limit - start) / grows)
        # after step i the counter reads start + (i + 1) * grows (v_out) or start + i * grows
        return max(1, steps if counter is v_out else steps + 1)
    return None


def _growth(v_in: Value, v_out: Value) -> int | None:
    """s when ``v_out = Add(v_in, s)`` with a constant integer s > 0, else None."""
    p = v_out.producer
    if p is None or p.op_type != "Add" or p.domain != "" or len(p.inputs) != 2:
        return None
    a, b = p.inputs
    step = static_int(b) if a is v_in else static_int(a) if b is v_in else None
    return step if step is not None and 0 < step < 2**40 else None


_RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"})


def stable_carried(parts: LoopParts, fixed: list[int]) -> set[int]:
    """Which carried values of ``fixed`` (one shape on every step that runs) keep that shape
    on the steps that run past the loop's exit too.

    Those steps still compute, on what the steps before them left. A body value keeps its
    shape there when it follows from such shapes alone: no subgraph and no custom op computes
    it, and every shape operand (``SHAPE_OPERANDS``: a Slice's bounds, a Reshape's target ...)
    is the same on every step (a constant, an outer value, or computed from those and from
    shapes). ``while k < len(x): v = v + x[k:k+1]`` fails this: past the exit ``x[k:k+1]`` is
    empty, and so is ``v``.
    """
    body = parts.body
    keep = set(fixed)
    while True:
        shaped = stable_shapes(parts, keep)
        lost = {k for k in keep if not among(parts.state_out[k], body, shaped)}
        if not lost:
            return keep
        keep -= lost  # its input then changes shape on the later steps: look again


def among(v: Value, body: Graph, values: set[Value]) -> bool:
    """True when ``v`` is in ``values``, an outer value, or a constant of the body."""
    return v.graph is not body or v in values or (v.is_initializer and v not in body.inputs)


def stable_shapes(parts: LoopParts, carried: Collection[int]) -> set[Value]:
    """Body values of one shape on every step (those past the loop's exit included), given
    the carried values (by index) whose inputs have one (``stable_carried``)."""
    body = parts.body
    shaped = {parts.iter_in, parts.cond_in} | {parts.state_in[k] for k in carried}
    same: set[Value] = set()  # values equal on every step
    for node in body:
        ins = [v for v in node.inputs if v is not None]
        if node.subgraphs or node.domain not in ("", "ai.onnx"):
            continue
        if not all(among(v, body, shaped) for v in ins):
            continue
        operands = [node.inputs[i] for i in SHAPE_OPERANDS.get(node.op_type, ())
                    if i < len(node.inputs)]  # fmt: skip
        if not all(v is None or among(v, body, same) for v in operands):
            continue
        shaped.update(node.outputs)
        if node.op_type in ("Shape", "Size") or (
            node.op_type not in _RANDOM and all(among(v, body, same) for v in ins)
        ):
            same.update(node.outputs)
    return shaped
