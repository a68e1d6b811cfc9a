"""``simplify``: local algebraic rewrites (no-op removal, chain fusion, BN folding) on a worklist.

Before / after::

    t = Transpose<perm=[1,0]>(x)
    u = Transpose<perm=[1,0]>(t)         y = Gemm(x, w, b)
    m = MatMul(u, w)               ->
    y = Add(m, b)

The rules live in :mod:`neffkit.passes.simplify_rules` (and ``simplify_fusions``,
``simplify_shapes``, ``simplify_rows``), bucketed by op type. The driver starts with every node
of every graph (subgraphs included); after a rule fires, only the nodes it touched (readers of
replaced values, producers of changed inputs, new nodes) go back on the worklist, so the pass
is near-linear.
Nodes a rewrite leaves dead are removed on the spot (unread initializers are left to ``dce``,
except those the pass made itself, such as a folded weight that a second fold replaced).
A cap on rewrites per node and in total guards against rules that undo each other; hitting it is
reported in the stats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from neffkit._gc import paused_gc
from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import Tensor, onnx_dtype
from neffkit.ir.types import Dim, Shape
from neffkit.passes.base import Pass, PassContext, PassResult, is_pure, option
from neffkit.passes.registry import register

log = logging.getLogger("neffkit.passes.simplify")

Rule = Callable[[Node, "Rewriter"], bool]


@register
@dataclass(frozen=True)
class Simplify(Pass):
    """Applies the local rewrite rules until none fires."""

    name: ClassVar[str] = "simplify"
    description: ClassVar[str] = (
        "local algebraic simplification: drop no-ops, fuse Transpose/Reshape/Cast chains, "
        "fold BatchNormalization into Conv/Gemm, MatMul+Add -> Gemm"
    )
    disable: str = option("", "rule names to skip, separated by '+' (see simplify_rules.RULES)")
    keep_signed_zeros: bool = option(
        False, "keep float x+0 / x-(-0), which turn -0.0 into +0.0 (bit-exact signed zeros)"
    )
    max_rewrites_per_node: int = option(32, "stop rewriting a node after this many rewrites")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        from neffkit.passes.simplify_rules import RULES

        rules = _select(RULES, self.disable)
        rw = Rewriter(graph, ctx, keep_signed_zeros=self.keep_signed_zeros)
        with paused_gc():  # a big graph's objects all stay alive: rescanning them is waste
            counts = _drive(graph, rw, rules, self.max_rewrites_per_node)
        stats = {k: v for k, v in sorted(counts.items()) if v}
        total = sum(stats.values())
        if total:
            stats["rewrites"] = total
        if rw.dead_nodes:
            stats["dead_nodes_removed"] = rw.dead_nodes
        if rw.limit_hits:
            stats["rewrite_limit_hits"] = rw.limit_hits
        log.info("simplify: %s", stats or "nothing to do")
        return PassResult(total > 0, stats)


def _select(rules: dict[str, list[Rule]], disable: str) -> dict[str, list[Rule]]:
    """The rule table without the disabled rules (unknown names are an error)."""
    names = {n for n in disable.replace("|", "+").replace(" ", "+").split("+") if n}
    if not names:
        return rules
    known = {r.__name__ for bucket in rules.values() for r in bucket}
    unknown = sorted(names - known)
    if unknown:
        raise NeffkitError(
            f"simplify: unknown rule(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    out = {op: [r for r in bucket if r.__name__ not in names] for op, bucket in rules.items()}
    return {op: bucket for op, bucket in out.items() if bucket}


def _drive(root: Graph, rw: Rewriter, rules: dict[str, list[Rule]], per_node: int) -> dict:
    """Runs the rules over a worklist seeded with every node; returns rewrites per rule."""
    counts: dict[str, int] = {}
    initial = [n for n in root.all_nodes() if n.domain == "" and n.op_type in rules]
    initial.reverse()  # popped from the end: the first node in program order comes first
    stack = initial
    queued = set(stack)
    hits: dict[Node, int] = {}
    total_cap = 8 * len(stack) + 1000
    total = 0
    while stack:
        node = stack.pop()
        queued.discard(node)
        if node.graph is None:
            continue  # removed by an earlier rewrite
        n_hits = hits.get(node, 0)
        if n_hits >= per_node:
            rw.limit_hits += 1
            continue
        for rule in rules[node.op_type]:
            if not rule(node, rw):
                continue
            name = rule.__name__
            counts[name] = counts.get(name, 0) + 1
            hits[node] = n_hits + 1
            total += 1
            log.debug("simplify: %s on %r", name, node)
            rw.sweep(node)
            if node.graph is not None:
                rw.touched.append(node)
            for t in rw.touched:
                if t.graph is not None and t not in queued and t.op_type in rules:
                    if t.domain == "":
                        stack.append(t)
                        queued.add(t)
            rw.touched.clear()
            break
        if total >= total_cap:
            rw.limit_hits += 1
            break
    return counts


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
        self._shapes: dict[Value, tuple] = {}
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
        s = derive_shape(v, self, depth - 1)
        if s is not None:
            self._shapes[v] = s  # a value's shape is fixed: rewrites preserve semantics
        return s

    def static_shape(self, v: Value | None) -> tuple[int, ...] | None:
        """The shape of ``v`` when every dim is a known int."""
        s = self.shape(v)
        if s is None or not all(isinstance(d, int) for d in s):
            return None
        return tuple(int(d) for d in s)

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


def producer(v: Value | None, op_type: str) -> Node | None:
    """The ONNX-domain node of type ``op_type`` that produces ``v``, if that is what does."""
    if v is None or v.producer is None:
        return None
    p = v.producer
    return p if p.op_type == op_type and p.domain == "" else None


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


def int_list(arr: np.ndarray | None) -> list[int] | None:
    """The values of an integer constant as a flat list of Python ints."""
    if arr is None or arr.dtype.kind not in "iu":
        return None
    return [int(x) for x in arr.reshape(-1)]


# -- local shape derivation (for values without a declared shape) ---------------------------------

_SAME_SHAPE = frozenset(
    "Relu Neg Abs Exp Log Sqrt Sigmoid Tanh Erf Identity Cast Not Softmax LogSoftmax LeakyRelu "
    "Elu Selu Gelu HardSigmoid HardSwish Floor Ceil Round Sign Reciprocal Sin Cos Clip Dropout "
    "BatchNormalization LayerNormalization Softplus Mish".split()
)
_BROADCAST = frozenset(
    "Add Sub Mul Div Pow Max Min Sum Mean Equal Less Greater LessOrEqual GreaterOrEqual And Or "
    "Xor Where Mod PRelu".split()
)


def derive_shape(v: Value, rw: Rewriter, depth: int) -> Shape:
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
        shapes = [rw.shape(i, depth) for i in ins if i is not None]
        if any(s is None for s in shapes):
            return None
        return broadcast_shapes(shapes)
    if op == "Transpose":
        xs = rw.shape(ins[0], depth)
        perm = p.attr("perm")
        if xs is None:
            return None
        perm = list(range(len(xs) - 1, -1, -1)) if perm is None else list(perm)
        return tuple(xs[i] for i in perm) if sorted(perm) == list(range(len(xs))) else None
    if op in ("MatMul", "Gemm") and len(ins) >= 2:
        return _matmul_shape(p, rw.shape(ins[0], depth), rw.shape(ins[1], depth))
    if op == "Reshape" and rw.opset >= 5 and len(ins) == 2:
        return _reshape_shape(p, rw, depth)
    return None


def broadcast_shapes(shapes: list[tuple[Dim, ...]]) -> Shape:
    """Multidirectional (numpy) broadcasting over dims that may be symbols or unknown."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for k in range(rank):
        col = [s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0]
        ints = {d for d in col if isinstance(d, int) and d != 1}
        if len(ints) > 1:
            return None  # not broadcastable
        if ints:
            out.append(ints.pop())
            continue
        others = {d for d in col if d != 1}
        if not others:
            out.append(1)
        elif len(others) == 1 and None not in others:
            out.append(others.pop())
        else:
            out.append(None)
    return tuple(out)


def _matmul_shape(p: Node, a: Shape, b: Shape) -> Shape:
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return None
    if p.op_type == "Gemm":
        if len(a) != 2 or len(b) != 2:
            return None
        m = a[1] if p.attr("transA", 0) else a[0]
        n = b[0] if p.attr("transB", 0) else b[1]
        return (m, n)
    batch = broadcast_shapes([a[:-2], b[:-2]]) if len(a) > 2 or len(b) > 2 else ()
    return None if batch is None else (*batch, a[-2], b[-1])


def _reshape_shape(p: Node, rw: Rewriter, depth: int) -> Shape:
    s = int_list(rw.const(p.inputs[1]))
    if s is None:
        return None
    allowzero = bool(p.attr("allowzero", 0))
    if all(d > 0 or (d == 0 and allowzero) for d in s):
        return tuple(s)
    xs = rw.shape(p.inputs[0], depth)
    if xs is None:
        return None
    out: list[Dim] = []
    for i, d in enumerate(s):
        if d == 0 and not allowzero:
            if i >= len(xs):
                return None
            out.append(xs[i])
        else:
            out.append(d)
    if -1 in out:
        known = [d for d in out if d != -1]
        if out.count(-1) != 1 or not all(isinstance(d, int) for d in list(xs) + known):
            return None
        total = int(np.prod(xs, dtype=np.int64))
        part = int(np.prod(known, dtype=np.int64))
        if part == 0:
            return None
        out[out.index(-1)] = total // part
    return tuple(out)
