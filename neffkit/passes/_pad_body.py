"""The body rewrite of ``pad-loop``: one walk over a Loop body that builds its padded twin.

Every value of the old body gets a state (``_pad_forms``: full, padded along time axes, or
affine forms) and a counterpart in the new body. Ops that keep positions apart (elementwise
ops, layout ops, reductions and matmuls over other axes) are copied; ops that mix positions
along a time axis get a mask, so that padded positions cannot reach valid ones (``-inf``
before a softmax or max, ``0`` before a sum or a contraction); indexing from the end reads
from L instead of P; anything else that touches a padded axis is refused, naming the node.

Shapes are checked in a *sentinel* world: every dim is an int, the time axes P, each symbolic
dim (a batch) a distinct large prime, so that products of dims compare exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import TensorProto

from neffkit.ir.core import Attr, Graph, Node, Value
from neffkit.ir.tensor import np_dtype, onnx_dtype
from neffkit.ir.types import TensorType
from neffkit.passes._loops import Emitter, LoopParts, _copy_graph, const_array
from neffkit.passes._pad_forms import (
    FORM_OPS,
    MAX_ELEMS,
    RULES,
    Forms,
    Padded,
    aff,
    const,
    original,
)
from neffkit.passes.shape_rules import Facts, Static, const_ints, infer_node

_INTS = (TensorProto.INT64, TensorProto.INT32)
_FLOATS = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
#: ops routed to their rule even when no input is padded: a shape operand may hold L
SHAPE_USES = frozenset({"Range", "ConstantOfShape", "Expand", "Reshape", "Slice", "Tile"})


class Refused(Exception):
    """The body cannot be padded exactly; the message says where and why."""


def _primes(count: int) -> list[int]:
    """``count`` primes just below 2**20: sentinel sizes for symbolic dims."""
    out: list[int] = []
    n = 2**20 - 1
    while len(out) < count:
        if all(n % d for d in range(3, int(n**0.5) + 1, 2)):
            out.append(n)
        n -= 2
    return out


class BodyPadder:
    """Builds the padded twin of one Loop body; ``pad()`` returns the new body graph."""

    def __init__(
        self, parts: LoopParts, growing: dict[int, int], l0: int, k: int, p: int, opset: int
    ) -> None:
        self.parts = parts
        self.growing = growing  # carried index -> time axis
        self.l0, self.k, self.p = l0, k, p
        self.opset = opset
        self.new = Graph(parts.body.name, opset_imports=dict(parts.body.opset_imports))
        self.new.doc_string = parts.body.doc_string
        self.em = Emitter(self.new, None, opset)
        self.vmap: dict[Value, Value] = {}
        self.state: dict[Value, Padded] = {}
        self.forms: dict[Value, Forms] = {}
        self.types: dict[Value, Static] = {}  # new values -> sentinel types
        self.known: dict[Value, list[int]] = {}  # new values -> sentinel ints (shape operands)
        self.symbols: dict[str, int] = {}
        self._free = _primes(16)
        self.facts = _SentinelFacts(opset, self)
        self._cache: dict[tuple[object, ...], Value] = {}
        self.growth: dict[Node, int] = {}
        self.grown: dict[int, Value] = {}
        self.node: Node | None = None
        self.length = Value("pad_len", TensorType(TensorProto.INT64, ()))
        self.iteration = Value(parts.iter_in.name, TensorType(TensorProto.INT64, ()))

    # -- the walk ------------------------------------------------------------------------------

    def pad(
        self, carried_types: Sequence[TensorType], counters: dict[int, tuple[int, int]]
    ) -> Graph:
        """The padded body: inputs (i, cond, carried..., L), outputs (cond, carried..., L+k,
        scans...).

        Raises:
            Refused: a node whose result the padding would change.
        """
        parts = self.parts
        new = self.new
        new.add_input(self.iteration)
        self.vmap[parts.iter_in] = self.iteration
        self.forms[parts.iter_in] = Forms((aff(1, 0, 0),), ())
        self.types[self.iteration] = (TensorProto.INT64, ())
        cond = new.add_input(Value(parts.cond_in.name, TensorType(TensorProto.BOOL, ())))
        self.vmap[parts.cond_in] = cond
        for j, (v, t) in enumerate(zip(parts.state_in, carried_types)):
            nv = new.add_input(Value(v.name, t))
            self.vmap[v] = nv
            self.types_from(nv, t)
            if j in self.growing:
                self.state[v] = Padded(frozenset({self.growing[j]}))
            elif j in counters:
                step, start = counters[j]
                self.forms[v] = Forms((aff(step, 0, start),), ())
        new.add_input(self.length)
        self.types[self.length] = (TensorProto.INT64, ())
        for v in parts.body.initializers.values():
            nv = new.add_initializer(Value(v.name, v.type, const=v.const))
            self.vmap[v] = nv
            self._const_forms(v, nv)
        for j in self.growing:
            out = parts.state_out[j]
            p = out.producer
            if p is None or p.op_type != "Concat" or p.graph is not parts.body:
                raise Refused(f"carried value '{out.name}' grows but is not made by a Concat")
            self.growth[p] = j
        for node in parts.body:
            self.node = node
            self.visit(node)
        self.node = None
        outs: list[Value | None] = [self.data(parts.cond_out, "the loop condition")]
        for j, v in enumerate(parts.state_out):
            if j in self.growing:
                outs.append(self.grown[j])
            else:
                outs.append(self.data(v, f"carried value '{v.name}'"))
        len_out = self.em.node("Add", [self.length, self.int64(self.k)], "pad_len_next")
        outs.append(len_out)
        outs.extend(self.data(v, f"scan output '{v.name}'") for v in parts.scan_out)
        new.set_outputs([v for v in outs if v is not None])
        self._set_types()
        return new

    def visit(self, node: Node) -> None:
        """Adds the padded counterpart of ``node`` and records its outputs' states."""
        for v in node.inputs:
            if v is not None and v not in self.vmap and v.graph is not self.parts.body:
                self._capture(v)
        if node.subgraphs:
            self._subgraph_node(node)
            return
        padded_in = any(v in self.state for v in node.inputs if v is not None)
        op = node.op_type if node.domain == "" else None
        if node in self.growth:
            RULES["<growth>"](self, node)
            return
        if op in FORM_OPS and (op == "Shape" or not padded_in) and FORM_OPS[op](self, node):
            return
        if op is not None and (padded_in or op in SHAPE_USES) and op in RULES:
            RULES[op](self, node)
            return
        if padded_in:
            raise self.refuse("it reads a padded value and is not known to keep positions apart")
        self.copy(node, [self.data(v) for v in node.inputs])

    # -- values ---------------------------------------------------------------------------------

    def _capture(self, v: Value) -> None:
        """An outer value the body reads: full; a small integer constant gets forms."""
        self.vmap[v] = v
        t = v.type
        if isinstance(t, TensorType):
            self.types_from(v, t)
        self._const_forms(v, v)

    def _const_forms(self, v: Value, nv: Value) -> None:
        a = const_array(v)
        if a is None:
            return
        self.types[nv] = (onnx_dtype(a.dtype), tuple(a.shape))
        if a.dtype.kind in "iu" and a.size <= MAX_ELEMS and a.ndim <= 1:
            self.forms[v] = Forms(tuple(const(int(x)) for x in a.reshape(-1)), tuple(a.shape))

    def types_from(self, nv: Value, t: TensorType) -> None:
        """Records ``t`` (symbols as sentinel primes) as ``nv``'s sentinel type, when known."""
        if t.shape is None:
            return
        dims = []
        for d in t.shape:
            if isinstance(d, int):
                dims.append(d)
            elif isinstance(d, str):
                dims.append(self.sentinel(d))
            else:
                return
        self.types[nv] = (t.dtype, tuple(dims))

    def sentinel(self, symbol: str) -> int:
        """The prime that stands for ``symbol``."""
        if symbol not in self.symbols:
            if not self._free:
                raise Refused("too many symbolic dims")
            self.symbols[symbol] = self._free.pop(0)
        return self.symbols[symbol]

    def type_of(self, v: Value) -> Static | None:
        """The sentinel type of an old value's counterpart (None: unknown)."""
        nv = self.vmap.get(v)
        t = None if nv is None else self.types.get(nv)
        if t is None and v not in self.state and v not in self.forms:
            # a full value keeps its declared type
            if isinstance(v.type, TensorType) and nv is not None:
                self.types_from(nv, v.type)
                t = self.types.get(nv)
        return t

    def rank(self, v: Value) -> int:
        t = self.type_of(v)
        if t is not None:
            return len(t[1])
        if isinstance(v.type, TensorType) and v.type.shape is not None:
            return len(v.type.shape)
        raise self.refuse(f"the rank of '{v.name}' is unknown")

    def dims(self, v: Value) -> tuple[int, ...]:
        t = self.type_of(v)
        if t is None:
            raise self.refuse(f"the shape of '{v.name}' is unknown")
        return t[1]

    def dtype(self, v: Value) -> int:
        t = self.type_of(v)
        if t is not None:
            return t[0]
        if v.dtype is not None:
            return v.dtype
        raise self.refuse(f"the element type of '{v.name}' is unknown")

    def axes(self, v: Value) -> frozenset[int]:
        st = self.state.get(v)
        return frozenset() if st is None else st.axes

    def data(self, v: Value | None, what: str = "") -> Value | None:
        """``v``'s counterpart holding the original value (a form is rebuilt if needed)."""
        if v is None:
            return None
        if v in self.state and what:
            raise self.refuse(f"{what} depends on padded positions")
        if v in self.forms and not self.forms[v].honest:
            return self.honest(v)
        return self.vmap.get(v, v)

    def honest(self, v: Value) -> Value:
        """The original value of a form: ``a*i + b`` from the iteration number."""
        f = self.forms[v]
        key = ("honest", v)
        if key in self._cache:
            return self._cache[key]
        if f.bad:
            raise self.refuse(f"'{v.name}' depends on the padded length in a way it cannot undo")
        rows = [original(e, self.k, self.l0) for e in f.elems]
        mask = np.array([r is not None for r in rows], bool).reshape(f.shape)
        a = np.array([r[0] if r else 0 for r in rows], np.int64).reshape(f.shape)
        b = np.array([r[1] if r else 0 for r in rows], np.int64).reshape(f.shape)
        val = self.em.node("Mul", [self.iteration, self.constant(a, "pad_a")], "pad_ai")
        val = self.em.node("Add", [val, self.constant(b, "pad_b")], "pad_value")
        self.types[val] = (TensorProto.INT64, f.shape)
        dtype = self.dtype(v)
        if dtype != TensorProto.INT64:
            val = self.em.node("Cast", [val], "pad_cast", to=dtype)
            self.types[val] = (dtype, f.shape)
        if not mask.all():
            val = self.em.node("Where", [self.constant(mask, "pad_mask"), val, self.vmap[v]])
            self.types[val] = (dtype, f.shape)
        self._cache[key] = val
        return val

    def shape_operand(self, v: Value) -> tuple[Value, list[int | None], list[bool]]:
        """``v`` as a shape in the padded body: P where the original holds L.

        Returns the new value, its sentinel ints (None: a runtime value) and which elements
        are the time length.
        """
        f = self.forms.get(v)
        if f is None:
            ints = const_ints(v)
            if v in self.state:
                raise self.refuse(f"shape operand '{v.name}' depends on padded positions")
            if ints is None:
                t = self.type_of(v)
                n = 1 if t is None or not t[1] else int(np.prod(t[1]))
                return self.data(v), [None] * n, [False] * n  # type: ignore[return-value]
            return self.vmap.get(v, v), list(ints), [False] * len(ints)
        sent: list[int | None] = []
        flags: list[bool] = []
        for e in f.elems:
            o = original(e, self.k, self.l0)
            if e[0] == "bad":
                raise self.refuse(f"shape operand '{v.name}' depends on the padded length")
            if e[0] == "sym":  # a symbolic dim: its stand-in size, the value kept at run time
                sent.append(int(e[1]))  # type: ignore[call-overload]
                flags.append(False)
            elif o is None:  # world-independent, unknown
                sent.append(None)
                flags.append(False)
            elif o == (self.k, self.l0):
                sent.append(self.p)
                flags.append(True)
            elif o[0] == 0:
                sent.append(o[1])
                flags.append(False)
            else:
                raise self.refuse(
                    f"shape operand '{v.name}' changes with the step but is not the padded length"
                )
        dtype = self.dtype(v)
        runtime = [e[0] in ("sym", "x") for e in f.elems]  # read from the value at run time
        fixed = [0 if r or s is None else s for r, s in zip(runtime, sent)]
        nv = self.constant(np.array(fixed, np_dtype(dtype)).reshape(f.shape), "pad_shape")
        if any(runtime):
            keep = np.array([not r for r in runtime], bool).reshape(f.shape)
            nv = self.em.node("Where", [self.constant(keep, "pad_known"), nv, self.data(v)])
        self.types[nv] = (dtype, f.shape)
        if all(s is not None for s in sent):
            self.known[nv] = [int(s) for s in sent]  # type: ignore[arg-type]
        return nv, sent, flags

    # -- building -------------------------------------------------------------------------------

    def copy(
        self, node: Node, inputs: Sequence[Value | None], states: Sequence[Padded | None] = ()
    ) -> Node:
        """A copy of ``node`` reading ``inputs``; outputs get ``states`` (default: full)."""
        n = Node(
            node.op_type,
            list(inputs),
            domain=node.domain,
            attributes=dict(node.attributes),
            outputs=[Value(v.name) for v in node.outputs],
            name=node.name,
            overload=node.overload,
        )
        n.doc_string = node.doc_string
        self.em.add(n)
        for i, (old, nv) in enumerate(zip(node.outputs, n.outputs)):
            self.vmap[old] = nv
            st = states[i] if i < len(states) else None
            if st is not None and st.axes:
                self.state[old] = st
        self.infer(n)
        return n

    def infer(self, n: Node) -> None:
        """Sentinel types of ``n``'s outputs, from the shape rules."""
        ins = [None if v is None else self.types.get(v) for v in n.inputs]
        out = infer_node(n, ins, self.facts)
        if out is not None:
            for v, t in zip(n.outputs, out):
                self.types[v] = t

    def emit(self, op: str, inputs: list[Value | None], hint: str = "", **attrs: Any) -> Value:
        """One new node, typed by the shape rules."""
        v = self.em.node(op, inputs, hint or f"pad_{op.lower()}", **attrs)
        assert v.producer is not None
        self.infer(v.producer)
        return v

    def int64(self, x: int | Sequence[int]) -> Value:
        """An int64 constant of the new body."""
        return self.constant(np.array(x, np.int64), "pad_const")

    def constant(self, arr: np.ndarray, hint: str) -> Value:
        """A constant of the new body, typed."""
        v = self.em.const(arr, hint)
        self.types[v] = (onnx_dtype(arr.dtype), tuple(arr.shape))
        return v

    def positions(self, rank: int, axis: int) -> Value:
        """``0 .. P-1`` along ``axis`` of a rank-``rank`` tensor (1 elsewhere), int64."""
        shape = [1] * rank
        shape[axis] = self.p
        return self.int64(np.arange(self.p, dtype=np.int64).reshape(shape).tolist())

    def valid(self, rank: int, axis: int) -> Value:
        """True at the positions below L along ``axis``."""
        key = ("valid", rank, axis)
        if key not in self._cache:
            self._cache[key] = self.emit("Less", [self.positions(rank, axis), self.length])
        return self._cache[key]

    def mask(self, v: Value, nv: Value | None, axis: int, fill: str) -> Value:
        """``nv`` with the padded positions along ``axis`` replaced by ``fill``
        (``zero``, ``low``: -inf or the least integer, ``high``, ``one``)."""
        assert nv is not None
        dtype = self.dtype(v)
        if dtype == TensorProto.BFLOAT16 or dtype not in (*_FLOATS, *_INTS, TensorProto.BOOL):
            raise self.refuse(f"cannot mask '{v.name}' of element type {dtype}")
        npt = np_dtype(dtype)
        if fill == "zero":
            x = np.zeros((), npt)
        elif fill == "one":
            x = np.ones((), npt)
        elif npt.kind == "f":
            x = np.array(-np.inf if fill == "low" else np.inf, npt)
        elif npt.kind in "iu":
            info = np.iinfo(npt)
            x = np.array(info.min if fill == "low" else info.max, npt)
        else:
            raise self.refuse(f"cannot mask '{v.name}' of element type {dtype}")
        rank = self.rank(v)
        out = self.emit("Where", [self.valid(rank, axis), nv, self.constant(x, "pad_fill")])
        return out

    def refuse(self, why: str) -> Refused:
        n = self.node
        if n is None:
            where = "the loop"
        elif n.name:
            where = f"node '{n.name}' ({n.op_type})"
        else:
            where = f"the {n.op_type} node making '{n.outputs[0].name if n.outputs else ''}'"
        return Refused(f"{where}: {why}")

    # -- subgraphs ------------------------------------------------------------------------------

    def _subgraph_node(self, node: Node) -> None:
        """If/Loop/Scan inside the body: only over full values, copied as they are."""
        outer = [v for v in node.inputs if v is not None]
        for g in node.subgraphs:
            inner = {v for n in g.all_nodes() for v in n.inputs if v is not None}
            mine = set(g.inputs) | set(g.initializers.values())
            for sub in g.all_graphs():
                mine |= set(sub.inputs) | set(sub.initializers.values())
                mine |= {o for n in sub for o in n.outputs}
            outer.extend(v for v in inner - mine if v.graph is not None)
        for v in outer:
            if v not in self.vmap and v.graph is not self.parts.body:
                self._capture(v)
            if v in self.state or (v in self.forms and not self.forms[v].honest):
                raise self.refuse(f"its subgraph reads '{v.name}', which the padding changes")
        attrs = {}
        for name, a in node.attributes.items():
            if a.type == 5:  # GRAPH
                attrs[name] = Attr(name, a.type, _copy_graph(a.value, self.vmap, "pad"))
            elif a.type == 10:  # GRAPHS
                attrs[name] = Attr(
                    name, a.type, [_copy_graph(g, self.vmap, "pad") for g in a.value]
                )
            else:
                attrs[name] = a
        n = Node(
            node.op_type,
            [self.data(v) for v in node.inputs],
            domain=node.domain,
            attributes=attrs,
            outputs=[Value(v.name, v.type) for v in node.outputs],
            name=node.name,
        )
        self.em.add(n)
        for old, nv in zip(node.outputs, n.outputs):
            self.vmap[old] = nv

    # -- types back onto the new values ---------------------------------------------------------

    def _set_types(self) -> None:
        names = {p: s for s, p in self.symbols.items()}
        for v, (dtype, dims) in self.types.items():
            if v.graph is not self.new or v.const is not None:
                continue
            shape: list[int | str | None] = []
            for d in dims:
                if d in names:
                    shape.append(names[d])
                elif d >= 2**19 and any(d % q == 0 for q in names):
                    shape.append(None)
                else:
                    shape.append(d)
            v.type = TensorType(dtype, shape)

    def forms_of(self, v: Value | None) -> Forms | None:
        """The forms of an input: tracked, or those of a small integer constant."""
        if v is None:
            return None
        if v in self.forms:
            return self.forms[v]
        ints = const_ints(v)
        if ints is None or v in self.state:
            return None
        a = const_array(v)
        shape = tuple(a.shape) if a is not None else (len(ints),)
        return Forms(tuple(const(x) for x in ints), shape)


class _SentinelFacts(Facts):
    """Shape-rule facts that also read the sentinel ints of padded shape operands."""

    __slots__ = ("padder",)

    def __init__(self, opset: int, padder: BodyPadder) -> None:
        super().__init__(opset)
        self.padder = padder

    def ints(self, v: Value | None) -> list[int] | None:
        if v is not None and v in self.padder.known:
            return self.padder.known[v]
        return super().ints(v)
