"""The ``Rewriter``: what a rewrite rule reads (constants, shapes, dtypes, the opset) and the
edits it makes through, which keep the worklist and dead-code removal right.

A rule never edits the graph behind the rewriter's back: every edit here records the nodes it
touched (readers of a replaced value, producers of changed inputs, new nodes) so the driver
(:mod:`neffkit.passes.rewrite.driver`) puts exactly those back on the worklist, and removes
what an edit leaves dead on the spot.

Shapes a value does not declare are derived through a few producers with the shared shape
arithmetic of :mod:`neffkit.passes.shapes` (a query costs O(1): at most a few steps back).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import Tensor, onnx_dtype
from neffkit.ir.types import Dim, Shape
from neffkit.passes import shapes
from neffkit.passes.base import PassContext, is_pure


class Rewriter:
    """What a rule sees and edits through: constants, shapes, the opset, and edits that put
    the nodes they touch back on the worklist."""

    def __init__(self, root: Graph, ctx: PassContext, *, keep_signed_zeros: bool = False):
        self.root = root
        self.ctx = ctx
        self.opset: int = root.opset("") or 1
        self.keep_signed_zeros = keep_signed_zeros
        self.touched: list[Node] = []
        self.dead_nodes = 0
        self.limit_hits = 0
        self._shapes: dict[Value, tuple[Dim, ...]] = {}
        #: per-run notes of rules (what they already ruled out), keyed by rule name
        self.memo: dict[str, Any] = {}
        #: initializers this run made: dropped as soon as a later rewrite stops reading them
        self._made: set[Value] = set()
        # Initializers that are also graph inputs the caller may feed: not constants.
        self._overridable: set[Value] = set()
        for g in root.all_graphs():
            if ctx.keep_overridable_inputs or g is not root:
                self._overridable.update(v for v in g.inputs if v.const is not None)

    # -- facts ---------------------------------------------------------------------------------

    def const(self, v: Value | None, max_bytes: int | None = None) -> np.ndarray | None:
        """The value of ``v`` when it is a constant nobody can override (and, with
        ``max_bytes``, no bigger than that: big tensors are not read in), else None."""
        if v is None:
            return None
        p = v.producer
        if p is None:
            t = v.const
            if t is None or v in self._overridable:
                return None
            if max_bytes is not None and t.nbytes > max_bytes:
                return None
            return t.numpy()
        if p.op_type != "Constant" or p.domain != "":
            return None
        arr = _constant_node_value(p)
        if arr is not None and max_bytes is not None and arr.nbytes > max_bytes:
            return None
        return arr

    def is_overridable(self, v: Value) -> bool:
        """True for an initializer the caller may feed (a graph input): not a constant."""
        return v in self._overridable

    def const_layout(self, v: Value | None) -> tuple[int, tuple[int, ...]] | None:
        """ONNX dtype and shape of ``v`` when :meth:`const` would give a value, without
        reading it (a big external weight stays on disk)."""
        if v is not None and v.producer is None:
            t = v.const
            if t is None or v in self._overridable:
                return None
            return t.dtype, t.shape
        arr = self.const(v)
        return None if arr is None else (onnx_dtype(arr.dtype), tuple(arr.shape))

    def shape(self, v: Value | None, depth: int = 8) -> Shape:
        """The shape of ``v``: declared, or derived through a few producers (at most ``depth``
        steps back, so a query costs O(1))."""
        if v is None:
            return None
        s = v.shape
        if s is not None:
            return s
        hit = self._shapes.get(v)
        if hit is not None:
            return hit
        if depth <= 0:
            return None
        s = _derive_shape(v, self, depth - 1)
        if s is not None:
            self._shapes[v] = s  # a value's shape is fixed: rewrites preserve semantics
        return s

    def forget_shape(self, v: Value) -> None:
        """Drops the derived shape of ``v``: for a rule that changes the shape a value has
        (and declares the new one)."""
        self._shapes.pop(v, None)

    def static_shape(self, v: Value | None) -> tuple[int, ...] | None:
        """The shape of ``v`` when every dim is a known int."""
        s = self.shape(v)
        if s is None:
            return None
        out = tuple(d for d in s if isinstance(d, int))
        return out if len(out) == len(s) else None

    def rank(self, v: Value | None) -> int | None:
        """The rank of ``v`` when known."""
        s = self.shape(v)
        return None if s is None else len(s)

    def dtype(self, v: Value | None) -> int | None:
        """The element type of ``v``: declared, a constant's, or a ``Cast``'s target."""
        if v is None:
            return None
        t = v.dtype
        if t is not None:
            return t
        p = v.producer
        if p is None or p.domain != "":
            return None
        if p.op_type == "Cast" and isinstance(p.attr("to"), int):
            return int(p.attr("to"))
        if p.op_type == "Constant":
            arr = self.const(v)
            return None if arr is None else onnx_dtype(arr.dtype)
        return None

    @staticmethod
    def only_user(v: Value | None, node: Node) -> bool:
        """True when ``node`` is the one reader of ``v`` (one use, not a graph output)."""
        if v is None or v.is_graph_output or v.num_uses != 1:
            return False
        return v.uses[0][0] is node

    # -- edits ---------------------------------------------------------------------------------

    def can_replace(self, old: Value, new: Value) -> bool:
        """True when ``new`` can stand in for ``old`` everywhere without a copy node.

        A graph output keeps its name: ``new`` takes it over, which needs ``new`` to be
        produced by a node of the same graph and not to be an output already.
        """
        if not old.is_graph_output:
            return True
        g = old.graph
        return (
            new.producer is not None
            and new.graph is g
            and not new.is_graph_output
            and g is not None
            and old in g.outputs
        )

    def replace(self, old: Value, new: Value) -> None:
        """Makes every reader of ``old`` read ``new``; a graph output keeps its name (through
        an ``Identity`` when ``new`` cannot take the name over)."""
        if not self.can_replace(old, new):
            assert old.producer is not None
            copy = Node("Identity", [new], name=old.producer.name)
            self.insert_before(old.producer, copy)
            new = copy.outputs[0]
        if old.is_graph_output:
            old.name, new.name = new.name, old.name
            if old.type is not None and new.type != old.type:
                new.type = old.type
                self.touched.extend(new.users)  # a now-known type may enable their rules
        self.touched.extend(old.users)
        if new.producer is not None:
            self.touched.append(new.producer)
        old.replace_all_uses_with(new)

    def set_input(self, node: Node, index: int, value: Value | None) -> None:
        """Replaces one input of ``node`` (the old input's producer may now be dead)."""
        old = node.inputs[index]
        node.set_input(index, value)
        self.touched.append(node)
        if value is not None and value.producer is not None:
            self.touched.append(value.producer)
        if old is not None:
            self._release(old)

    def insert_before(self, anchor: Node, node: Node) -> Node:
        """Inserts a new node before ``anchor`` in ``anchor``'s graph."""
        assert anchor.graph is not None
        anchor.graph.insert_before(anchor, node)
        self.touched.append(node)
        return node

    def insert_after(self, anchor: Node, node: Node) -> Node:
        """Inserts a new node after ``anchor`` in ``anchor``'s graph."""
        assert anchor.graph is not None
        anchor.graph.insert_after(anchor, node)
        self.touched.append(node)
        return node

    def add_constant(self, graph: Graph, hint: str, array: np.ndarray) -> Value:
        """A new initializer of ``graph`` (shared tensors are never mutated in place)."""
        v = graph.add_initializer(Value(hint or "const", const=Tensor(array)))
        self._made.add(v)
        return v

    def sweep(self, node: Node) -> None:
        """Removes ``node`` if a rewrite left all its outputs unread, and what only it read."""
        if node.graph is None or node.subgraphs or not _dead(node):
            return
        self._erase(node)

    def _erase(self, node: Node) -> None:
        g = node.graph
        assert g is not None
        inputs = [v for v in node.inputs if v is not None]
        g.remove(node)
        self.dead_nodes += 1
        for v in inputs:
            self._release(v)

    def _release(self, v: Value) -> None:
        """``v`` lost a reader: remove what is now dead, iteratively; requeue the rest."""
        work = [v]
        while work:
            v = work.pop()
            p = v.producer
            if v.num_uses or v.is_graph_output:
                if p is not None:
                    self.touched.append(p)  # fewer readers may enable single-user rules
                continue
            if p is None:
                # an unread initializer is left to `dce` (it owns the interface rules), unless
                # this run made it (a folded weight that a second fold replaced)
                if v in self._made and v.graph is not None:
                    self._made.discard(v)
                    v.graph.remove_initializer(v)
                continue
            if p.graph is None or p.subgraphs or not is_pure(p) or not _dead(p):
                continue
            inputs = [i for i in p.inputs if i is not None]
            p.graph.remove(p)
            self.dead_nodes += 1
            work.extend(inputs)


def _dead(node: Node) -> bool:
    return all(not v.num_uses and not v.is_graph_output for v in node.outputs)


def _constant_node_value(node: Node) -> np.ndarray | None:
    """The tensor a ``Constant`` node makes, for the dense forms."""
    for name, a in node.attributes.items():
        v = a.value
        if name == "value" and isinstance(v, Tensor):
            return v.numpy()
        if name == "value_float":
            return np.array(v, np.float32)
        if name == "value_floats":
            return np.array(v, np.float32).reshape(-1)
        if name == "value_int":
            return np.array(v, np.int64)
        if name == "value_ints":
            return np.array(v, np.int64).reshape(-1)
    return None


# -- shapes a value does not declare --------------------------------------------------------------

_SAME_SHAPE = frozenset(
    "Relu Neg Abs Exp Log Sqrt Sigmoid Tanh Erf Identity Cast Not Softmax LogSoftmax LeakyRelu "
    "Elu Selu Gelu HardSigmoid HardSwish Floor Ceil Round Sign Reciprocal Sin Cos Clip Dropout "
    "BatchNormalization LayerNormalization Softplus Mish".split()
)
_BROADCAST = frozenset(
    "Add Sub Mul Div Pow Max Min Sum Mean Equal Less Greater LessOrEqual GreaterOrEqual And Or "
    "Xor Where Mod PRelu".split()
)


def _derive_shape(v: Value, rw: Rewriter, depth: int) -> Shape:
    """The shape of ``v`` from its producer's inputs, for a few common ops; None if unknown."""
    p = v.producer
    if p is None or p.domain != "" or v.index != 0:
        return None
    op = p.op_type
    ins = p.inputs
    if op == "Constant":
        arr = rw.const(v)
        return None if arr is None else tuple(int(d) for d in arr.shape)
    if not ins or ins[0] is None:
        return None
    if op in _SAME_SHAPE:
        return rw.shape(ins[0], depth)
    if op in _BROADCAST:
        found = [rw.shape(i, depth) for i in ins if i is not None]
        known = [s for s in found if s is not None]
        return shapes.broadcast(*known) if len(known) == len(found) else None
    if op == "Transpose":
        xs = rw.shape(ins[0], depth)
        return None if xs is None else shapes.transpose(xs, p.attr("perm"))
    if op in ("MatMul", "Gemm") and len(ins) >= 2:
        a, b = rw.shape(ins[0], depth), rw.shape(ins[1], depth)
        if a is None or b is None or len(a) < 2 or len(b) < 2:
            return None
        if op == "Gemm":
            return shapes.gemm(a, b, bool(p.attr("transA", 0)), bool(p.attr("transB", 0)))
        return shapes.matmul(a, b)
    if op == "Reshape" and rw.opset >= 5 and len(ins) == 2:
        target = rw.const(ins[1])
        if target is None or target.dtype.kind not in "iu":
            return None
        s = [int(d) for d in target.reshape(-1)]
        allowzero = bool(p.attr("allowzero", 0))
        needs_x = any(d == -1 or (d == 0 and not allowzero) for d in s)
        return shapes.reshape(rw.shape(ins[0], depth) if needs_x else None, s, allowzero)
    return None
