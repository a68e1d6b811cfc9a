"""The graph builder under the hypothesis graph strategies: draws ops one by one into a graph
(or a ``Loop`` / ``If`` body), tracking the values in scope, so that every value has a static
shape and a dtype and no draw is ever rejected.

The builder knows no op: the generators it calls come in a :class:`Catalog` (op name ->
generator, plant name -> generator), which :mod:`neffkit.testing.strategies` assembles from
the op families (``strategies_ops``, ``strategies_nn``, ``strategies_control``). The families
import this module for the builder, the dtype codes and the shape helpers; this module imports
none of them, so the strategies form no import circle. A custom catalog draws graphs of other
ops with the same shrinking behaviour (tests/testing/test_builder.py has examples).

Every draw goes through one integer strategy reduced modulo the range it needs, and a step
whose first choice is 0 adds nothing, so shrinking (which zeroes choices) removes the steps a
failure does not need and keeps the choices after them aligned.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from hypothesis import strategies as st
from onnx import TensorProto

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import Tensor, np_dtype, onnx_dtype
from neffkit.ir.types import TensorType

__all__ = [
    "ANY",
    "BOOL",
    "F32",
    "F64",
    "FLOATS",
    "I32",
    "I64",
    "INTS",
    "NN",
    "NUMERIC",
    "Builder",
    "Catalog",
    "Generator",
    "Limits",
    "Shape",
    "broadcasts",
    "bshape",
    "build_graph",
    "generation_stats",
    "i64",
    "numel",
    "static",
]

F32 = TensorProto.FLOAT
F64 = TensorProto.DOUBLE
I32 = TensorProto.INT32
I64 = TensorProto.INT64
BOOL = TensorProto.BOOL
FLOATS = frozenset({F32, F64})
INTS = frozenset({I32, I64})
NUMERIC = FLOATS | INTS
ANY = NUMERIC | {BOOL}
#: The dtype of the neural-network ops (Conv, pooling, normalization).
NN = frozenset({F32})

Shape = tuple[int, ...]


def bshape(*shapes: Sequence[int]) -> Shape:
    """The broadcast of ``shapes`` (numpy rules, as ONNX's multidirectional broadcasting)."""
    return tuple(int(d) for d in np.broadcast_shapes(*(tuple(s) for s in shapes)))


def broadcasts(a: Sequence[int], b: Sequence[int]) -> bool:
    """True when ``a`` and ``b`` broadcast together."""
    try:
        np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        return False
    return True


def numel(shape: Sequence[int]) -> int:
    """Number of elements of a static shape."""
    return math.prod(int(d) for d in shape)


def static(v: Value) -> bool:
    """True when ``v`` has a tensor type with only int dims (what the pool holds: values whose
    dims grow in a Loop, or count its iterations, are never picked as operands)."""
    return isinstance(v.type, TensorType) and v.type.is_static


def _dim(d: Any) -> int | str | None:
    return d if d is None or isinstance(d, str) else int(d)


def i64(values: Sequence[int] | int) -> np.ndarray:
    """An int64 array (shapes, axes, indices as ONNX wants them)."""
    return np.asarray(values, np.int64)


#: Draws one op (or planted pattern) and its operands into a builder's graph.
Generator = Callable[["Builder"], None]


class Limits(Protocol):
    """What the builder reads of its options (:class:`~neffkit.testing.strategies.GraphOptions`
    normalizes its fields to these types)."""

    @property
    def ops(self) -> Sequence[str]: ...

    @property
    def plants(self) -> Sequence[str]: ...

    @property
    def dtype_codes(self) -> tuple[int, ...]: ...

    @property
    def min_ops(self) -> int: ...

    @property
    def max_ops(self) -> int: ...

    @property
    def max_inputs(self) -> int: ...

    @property
    def max_rank(self) -> int: ...

    @property
    def max_dim(self) -> int: ...

    @property
    def max_numel(self) -> int: ...

    @property
    def max_depth(self) -> int: ...


@dataclass(frozen=True)
class Catalog:
    """The generators a builder draws from.

    Attributes:
        ops: op name -> generator (``Loop`` and ``If`` included).
        plants: planted-pattern name -> generator.
        nesting: ops with bodies, not drawn once the nesting depth is reached.
        fallback: the op drawn at that depth when every enabled op nests.
    """

    ops: Mapping[str, Generator]
    plants: Mapping[str, Generator]
    nesting: frozenset[str] = frozenset()
    fallback: str = "Relu"


_STATS = {"started": 0, "finished": 0, "steps": 0, "empty_steps": 0}
#: The one choice every draw makes (then reduced modulo the range it needs): when shrinking
#: deletes a step, the choices after it still fit their new draws, so hypothesis can keep
#: shrinking instead of discarding the attempt as misaligned.
_CHOICE = st.integers(0, 2**16 - 1)


def generation_stats() -> dict[str, int]:
    """Counters for this process: graphs whose drawing ``started`` / ``finished`` (the rest
    were abandoned by hypothesis mid-draw: the rejections), ``steps`` drawn, ``empty_steps``."""
    return dict(_STATS)


def build_graph(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    opts: Limits,
    catalog: Catalog,
    first: Generator | None = None,
) -> Graph:
    """Draws a top-level graph (opset 18): one graph input, ``first`` (an op every graph must
    have), ``min_ops`` to ``max_ops`` steps, then graph outputs. ``draw`` is a
    ``st.composite`` function's first argument."""
    _STATS["started"] += 1
    graph = Graph("g", opset_imports={"": 18})
    b = Builder(draw, opts, graph, catalog)
    b.fresh(b.dtype(set(opts.dtype_codes)), b.shape(1))
    if first is not None:
        first(b)
    b.steps(opts.min_ops, opts.max_ops)
    b.finish()
    _STATS["finished"] += 1
    return graph


class Builder:
    """Draws ops into one graph (top level or a body), tracking the values in scope.

    Op generators call :meth:`pick` / :meth:`partner` for operands, :meth:`const` for
    constants and :meth:`emit` for nodes; every value they see has a static shape.
    """

    def __init__(
        self,
        draw: Callable[[st.SearchStrategy[Any]], Any],
        opts: Limits,
        graph: Graph,
        catalog: Catalog,
        outer: Builder | None = None,
    ) -> None:
        self.draw = draw
        self.opts = opts
        self.graph = graph
        self.catalog = catalog
        self.outer = outer
        self.depth = 0 if outer is None else outer.depth + 1
        #: Values in scope, oldest first (outer values, then this graph's).
        self.pool: list[Value] = [] if outer is None else list(outer.pool)
        #: Node outputs made in this graph, in order.
        self.produced: list[Value] = []
        #: Outputs of planted dead nodes: never made graph outputs.
        self.dead: set[Value] = set()
        #: Contents of constants and of ``Shape`` results (shared by all scopes).
        self.known: dict[Value, np.ndarray] = {} if outer is None else outer.known
        self._names = itertools.count() if outer is None else outer._names

    # -- drawing ---------------------------------------------------------------------------

    def name(self, prefix: str = "v") -> str:
        """A fresh value name."""
        return f"{prefix}{next(self._names)}"

    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi] (shrinks to lo)."""
        return lo + self.draw(_CHOICE) % (hi - lo + 1)

    def flip(self) -> bool:
        """A coin flip (shrinks to False)."""
        return self.integer(0, 1) == 1

    def choice(self, items: Sequence[Any]) -> Any:
        """One of ``items`` (shrinks to the first)."""
        return items[self.integer(0, len(items) - 1)]

    def sample(self, items: Sequence[Any], k: int) -> list[Any]:
        """``k`` distinct items in drawn order (shrinks to the first ``k``)."""
        rest = list(items)
        return [rest.pop(self.integer(0, len(rest) - 1)) for _ in range(k)]

    def perm(self, n: int) -> list[int]:
        """A permutation of ``range(n)`` (shrinks to the identity)."""
        return self.sample(range(n), n)

    def subset(self, items: Sequence[Any], min_size: int = 1) -> list[Any]:
        """Some of ``items``, in order, at least ``min_size`` (shrinks to the first ones)."""
        out = [x for x in items if self.flip()]
        if len(out) < min_size:
            out = sorted(self.sample(items, min_size), key=list(items).index)
        return out

    def dim(self, hi: int | None = None) -> int:
        """A dimension in [1, max_dim]."""
        return self.integer(1, hi or self.opts.max_dim)

    def shape(self, min_rank: int = 0, max_rank: int | None = None) -> tuple[int, ...]:
        """A fresh static shape."""
        hi = self.opts.max_rank if max_rank is None else min(max_rank, self.opts.max_rank)
        rank = self.integer(min_rank, max(min_rank, hi))
        return tuple(self.dim() for _ in range(rank))

    def dtype(self, allowed: Iterable[int]) -> int:
        """An element type in ``allowed``, preferring the enabled ones in option order."""
        allowed = set(allowed)
        choices = [d for d in self.opts.dtype_codes if d in allowed] or sorted(allowed)
        return self.choice(choices)

    def values(self, dtype: int, shape: Sequence[int], *, nonzero: bool = False) -> np.ndarray:
        """Constant contents: a fill value or seeded random values (floats in [-2, 2])."""
        dt = np_dtype(dtype)
        if dt.kind == "b":
            if self.flip():
                return self._rng(shape)
            return np.full(tuple(shape), self.choice([True, False]))
        if self.flip():
            rng = np.random.default_rng(self.integer(0, 2**16))
            if dt.kind == "f":
                arr = rng.uniform(-2.0, 2.0, shape)
                if nonzero:
                    arr = np.where(np.abs(arr) < 0.25, 0.5, arr)
            else:
                arr = rng.integers(-4, 5, shape)
                if nonzero:
                    arr = np.where(arr == 0, 1, arr)
            return np.asarray(arr).astype(dt)
        fills = [1, 2, -1, 3] if dt.kind in "iu" else [1.0, 0.5, 2.0, -1.0, -0.5]
        return np.full(tuple(shape), self.choice(fills if nonzero else [*fills, 0]), dt)

    def _rng(self, shape: Sequence[int]) -> np.ndarray:
        return np.random.default_rng(self.integer(0, 2**16)).random(tuple(shape)) < 0.5

    # -- values ----------------------------------------------------------------------------

    def const(self, array: Any, *, node: bool | None = None) -> Value:
        """A constant: an initializer, or a ``Constant`` node (always, inside bodies)."""
        arr = np.asarray(array)
        if node is None:
            node = self.outer is not None or self.flip()
        if node:
            v = Value(self.name("k"), TensorType(onnx_dtype(arr.dtype), arr.shape))
            n = Node("Constant", [], outputs=[v])
            n.set_attr("value", Tensor(arr))
            self.graph.append(n)
            self.produced.append(v)
        else:
            v = self.graph.add_initializer(Value(self.name("c"), const=Tensor(arr)))
        self.known[v] = arr
        # Empty constants (a scalar's shape) and Slice's INT64_MAX sentinels stay out of the
        # operand pool: the first are zero-sized, the second overflow any arithmetic.
        small = arr.dtype.kind not in "iu" or (
            arr.size and -(2**20) < arr.min() <= arr.max() < 2**20
        )
        if arr.size and small:
            self.pool.append(v)
        return v

    def fresh(self, dtype: int, shape: Sequence[int]) -> Value:
        """A new graph input (top level, while allowed) or else a constant."""
        g = self.graph
        shape = tuple(shape)
        can_input = self.outer is None and len(g.inputs) < self.opts.max_inputs
        if can_input and dtype in self.opts.dtype_codes and not (g.inputs and self.flip()):
            v = g.add_input(Value(self.name("x"), TensorType(dtype, shape)))
            self.pool.append(v)
            return v
        return self.const(self.values(dtype, shape))

    def pick(
        self,
        dtypes: Iterable[int],
        min_rank: int = 0,
        max_rank: int | None = None,
        *,
        pred: Callable[[Value], bool] | None = None,
        fresh: Callable[[], tuple[int, ...]] | None = None,
    ) -> Value:
        """An operand from the pool (newest first) or a fresh one; never rejects."""
        dts = set(dtypes)
        hi = 99 if max_rank is None else max_rank
        cands = [
            v
            for v in reversed(self.pool)
            if v.dtype in dts and min_rank <= len(v.shape) <= hi and (pred is None or pred(v))
        ]
        i = self.integer(0, len(cands))
        if i < len(cands):
            return cands[i]
        shape = fresh() if fresh is not None else self.shape(min_rank, max_rank)
        return self.fresh(self.dtype(dts), shape)

    def partner_shape(self, shape: Sequence[int], *, grow: bool = True) -> tuple[int, ...]:
        """A shape that broadcasts with ``shape`` (to exactly ``shape`` when not ``grow``)."""
        shape = tuple(shape)
        lead: list[int] = []
        if grow and len(shape) < self.opts.max_rank and self.flip():
            d = self.dim()
            if numel(shape) * d <= self.opts.max_numel:
                lead = [d]
        keep = len(shape) if lead else self.integer(0, len(shape))
        out = list(lead)
        for d in shape[len(shape) - keep :]:
            if self.flip():
                out.append(1)
            elif d == 1 and grow and self.flip():
                out.append(self.dim())
            else:
                out.append(d)
        if numel(bshape(shape, out)) > self.opts.max_numel:
            return shape
        return tuple(out)

    def partner(self, dtype: int, shape: Sequence[int], *, grow: bool = True) -> Value:
        """An operand of ``dtype`` that broadcasts with ``shape`` (onto it, when not ``grow``)."""
        shape = tuple(shape)

        def fits(v: Value) -> bool:
            if not broadcasts(v.shape, shape):
                return False
            out = bshape(v.shape, shape)
            return out == shape if not grow else numel(out) <= self.opts.max_numel

        return self.pick({dtype}, pred=fits, fresh=lambda: self.partner_shape(shape, grow=grow))

    def emit(
        self,
        op: str,
        inputs: Sequence[Value | None],
        types: Sequence[tuple[int, Sequence[int]]],
        attrs: dict[str, Any] | None = None,
    ) -> list[Value]:
        """Appends ``op`` with outputs of the given (dtype, shape) types; returns the outputs."""
        outs = [Value(self.name(), TensorType(dt, tuple(map(_dim, s)))) for dt, s in types]
        node = Node(op, list(inputs), outputs=outs)
        for key, value in (attrs or {}).items():
            node.set_attr(key, value)
        self.graph.append(node)
        self.pool.extend(v for v in outs if static(v))
        self.produced.extend(outs)
        return outs

    def emit1(
        self,
        op: str,
        inputs: Sequence[Value | None],
        dtype: int,
        shape: Sequence[int],
        **attrs: Any,
    ) -> Value:
        """:meth:`emit` for a single output."""
        return self.emit(op, inputs, [(dtype, shape)], attrs)[0]

    # -- steps -----------------------------------------------------------------------------

    def steps(self, lo: int, hi: int) -> None:
        """Draws ``lo`` to ``hi`` steps, each its own hypothesis span."""
        _BUILDERS.append(self)
        try:
            self.draw(st.lists(_STEP, min_size=lo, max_size=hi))
        finally:
            _BUILDERS.pop()

    def step(self) -> None:
        """Draws one op (or, a quarter of the time, one planted pattern) into the graph.

        A step whose first choice is exactly 0 adds nothing: shrinking replaces a step's
        choices by zeros, so a step the failure does not need disappears from the graph.
        """
        _STATS["steps"] += 1
        if self.draw(_CHOICE) == 0:
            _STATS["empty_steps"] += 1
            return
        if self.opts.plants and self.integer(0, 3) == 3:
            self.catalog.plants[self.choice(self.opts.plants)](self)
            return
        names = self.opts.ops
        if self.depth >= self.opts.max_depth:
            nesting = self.catalog.nesting
            names = tuple(o for o in names if o not in nesting) or (self.catalog.fallback,)
        self.op(self.choice(names))

    def op(self, name: str) -> None:
        """Draws one ``name`` node (with its operands) into the graph."""
        self.catalog.ops[name](self)

    def finish(self) -> None:
        """Makes graph outputs: the last unread value, some other unread ones, a few more."""
        dead = self.dead | {v for v in self.produced if static(v) and not numel(v.shape)}
        leaves = [v for v in self.produced if not v.num_uses and v not in dead]
        chosen = [v for v in leaves[:-1] if self.flip()] + leaves[-1:]
        live = [v for v in self.produced if v not in dead and v not in chosen]
        if live and self.flip():
            chosen.append(live[self.integer(0, len(live) - 1)])
        if not chosen:  # every node was dead: output a copy of the newest value
            chosen = [
                self.emit1("Identity", [self.pool[-1]], self.pool[-1].dtype, self.pool[-1].shape)
            ]
        self.graph.set_outputs(sorted(chosen, key=self.produced.index))

    def body(self, name: str, inputs: Sequence[tuple[int, Sequence[int]]]) -> Builder:
        """A builder for a new body graph (of a Loop or If) with the given inputs."""
        sub = Builder(self.draw, self.opts, Graph(name), self.catalog, outer=self)
        for dt, shape in inputs:
            v = sub.graph.add_input(Value(self.name("b"), TensorType(dt, shape)))
            if static(v):
                sub.pool.append(v)
        return sub

    def transform(self, v: Value) -> Value:
        """A value of ``v``'s type computed from it (Loop / If bodies use it)."""
        kind = self.integer(0, 2)
        if kind == 0:
            return v
        if kind == 1 and v.dtype != BOOL:
            other = self.partner(v.dtype, v.shape, grow=False)
            return self.emit1(
                self.choice(["Add", "Mul", "Sub", "Max"]), [v, other], v.dtype, v.shape
            )
        if v.dtype == BOOL:
            return self.emit1("Not", [v], BOOL, v.shape)
        return self.emit1(self.choice(["Neg", "Abs"]), [v], v.dtype, v.shape)

    def typed(self, dtype: int, shape: Sequence[int]) -> Value:
        """A value of exactly this type from the pool (newest first), else a constant."""
        shape = tuple(shape)
        return self.pick({dtype}, pred=lambda v: v.shape == shape, fresh=lambda: shape)


#: The builders whose steps are being drawn (innermost last): one module-level step strategy
#: reads it, so hypothesis sees the same strategy object (and span label) for every step.
_BUILDERS: list[Builder] = []


@st.composite
def _step(draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
    b = _BUILDERS[-1]
    outer = b.draw
    b.draw = draw
    try:
        b.step()
    finally:
        b.draw = outer


_STEP = _step()
