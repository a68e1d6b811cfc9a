"""Hypothesis strategies for random valid graphs: shapes and dtypes consistent by construction.

``graphs()`` draws a top-level ``Graph`` (opset 18) op by op. Each op generator picks operands
from the values built so far (or makes a fresh graph input or constant of a shape that fits),
computes its output types, and appends the node, so every value has a static shape and a dtype
and no draw is ever rejected. Structure comes from hypothesis primitives, so failures shrink to
fewer ops, smaller shapes, earlier operands and plainer constants::

    from hypothesis import given
    from neffkit.testing import graphs, random_feeds

    @given(graphs(ops=["Conv", "Add", "Relu"], max_ops=6))
    def test_my_backend(graph):
        feeds = random_feeds(graph)
        ...

Besides ops, the draws plant what passes look for: duplicated constants, repeated
subexpressions, dead nodes and dead ``If`` branches, no-op copy chains, transpose pairs and
constant or shape-only subexpressions. ``Loop`` nodes may be decoder-like (values growing along
an axis, data-dependent exits, scan outputs, run-time trip counts, nested loops);
``loop_graphs()`` (``graphs(loops=True)``) puts one in every graph. Ops and guards:
``strategies_ops``, ``strategies_nn``; ``Loop``, ``If`` and plants: ``strategies_control``; the
:class:`~neffkit.testing.builder.Builder` they draw into: :mod:`neffkit.testing.builder`. This
module assembles them (:data:`CATALOG`); none of them imports it. A step whose first choice is 0
adds nothing, so shrinking (which zeroes a step's choices) removes unneeded ops.

Numeric guards, so that onnxruntime comparisons are meaningful: divisors of float ``Div`` and
``Reciprocal`` inputs are ``Abs(x) + 0.5`` (or constants at least 0.25 away from zero), integer
``Div`` divides by a non-zero constant, ``Log`` / ``Pow`` bases are ``Abs(x) + 0.5``, ``Sqrt``
reads ``Abs(x)``, ``Exp`` reads ``Clip(x, -8, 8)``; indices, shapes, axes and pads are in-range
constants. Feeds from :func:`random_feeds` are small (floats in [-2, 2], ints in [-4, 4]).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from onnx import TensorProto

from neffkit.execution.inputs import random_inputs
from neffkit.ir.core import Graph
from neffkit.testing import strategies_nn, strategies_ops
from neffkit.testing.builder import BOOL, Builder, Catalog, build_graph, generation_stats
from neffkit.testing.strategies_control import (
    CONTROL_OPS,
    LOOP_FEATURES,
    PLANT_GENS,
    PLANTS,
    gen_if,
    gen_loop,
    gen_required_loop,
    loop_features,
)
from neffkit.testing.strategies_ops import OpSpec

__all__ = [
    "CATALOG",
    "CONTROL_OPS",
    "DTYPES",
    "OPS",
    "PLANTS",
    "Builder",
    "LOOP_FEATURES",
    "GraphOptions",
    "generation_stats",
    "graphs",
    "loop_features",
    "loop_graphs",
    "random_feeds",
]

#: Element types by name (the ``dtypes`` option).
DTYPES: dict[str, int] = {
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "bool": TensorProto.BOOL,
}
#: Op generators by ONNX op name (``If`` and ``Loop`` apart).
SPECS: dict[str, OpSpec] = {**strategies_ops.SPECS, **strategies_nn.SPECS}
#: Every ONNX op the strategies draw (helper nodes such as guards use a few of these too).
OPS: tuple[str, ...] = (*SPECS, *CONTROL_OPS)

#: What the builder draws from: every op generator, the plants, and the ops with bodies.
CATALOG = Catalog(
    ops={**{name: spec.gen for name, spec in SPECS.items()}, "If": gen_if, "Loop": gen_loop},
    plants=PLANT_GENS,
    nesting=frozenset(CONTROL_OPS),
)


@dataclass(frozen=True)
class GraphOptions:
    """What ``graphs()`` may draw (its keyword arguments).

    Attributes:
        ops: ONNX op names to draw (default: all of :data:`OPS`).
        dtypes: element types of graph inputs and fresh constants; ops whose results have other
            types (comparisons give bool, ``Shape`` gives int64) still add them.
        min_ops, max_ops: steps drawn in the top-level graph (each adds an op or a planted
            pattern, with helper nodes).
        max_inputs: graph inputs at most (then fresh operands are constants).
        max_rank, max_dim: fresh shapes have rank <= max_rank and dims in [1, max_dim].
        max_numel: ops that grow tensors (Tile, Expand, broadcasting) stay under this.
        max_depth: nesting of Loop / If bodies.
        plants: True (all of :data:`PLANTS`), False, or the names of the patterns to plant.
        loops: every graph has a ``Loop`` (drawn first, at the top level or inside an ``If``
            branch), with the decoder-like options of :data:`LOOP_FEATURES` drawn as usual.

    Raises:
        ValueError: an unknown op, dtype or plant, or no drawable op for the dtypes.
    """

    ops: Iterable[str] = OPS
    dtypes: Iterable[str] = ("float32", "int64")
    min_ops: int = 1
    max_ops: int = 10
    max_inputs: int = 3
    max_rank: int = 4
    max_dim: int = 4
    max_numel: int = 256
    max_depth: int = 1
    plants: bool | Iterable[str] = True
    loops: bool = False

    def __post_init__(self) -> None:
        dts = tuple(self.dtypes)
        bad = [d for d in dts if d not in DTYPES]
        if bad or not dts:
            raise ValueError(f"unknown dtypes {bad}; known: {sorted(DTYPES)}")
        names = tuple(self.ops)
        unknown = [o for o in names if o not in OPS]
        if unknown:
            raise ValueError(f"unknown ops {unknown}; known: {', '.join(OPS)}")
        codes = {DTYPES[d] for d in dts} | {BOOL}
        names = tuple(o for o in names if o in CONTROL_OPS or SPECS[o].dtypes & codes)
        if not names:
            raise ValueError(f"none of the ops can take the dtypes {list(dts)}")
        plants = PLANTS if self.plants is True else () if not self.plants else tuple(self.plants)
        if set(plants) - set(PLANTS):
            raise ValueError(f"unknown plants {sorted(set(plants) - set(PLANTS))}; known: {PLANTS}")
        if not 1 <= self.min_ops <= self.max_ops:
            raise ValueError(f"need 1 <= min_ops <= max_ops, got {self.min_ops}, {self.max_ops}")
        object.__setattr__(self, "ops", names)
        object.__setattr__(self, "dtypes", dts)
        object.__setattr__(self, "plants", plants)

    @property
    def dtype_codes(self) -> tuple[int, ...]:
        """The ``dtypes`` as ONNX element types."""
        return tuple(DTYPES[d] for d in self.dtypes)


def graphs(**options: Any) -> st.SearchStrategy[Graph]:
    """A strategy for valid top-level graphs; the options are :class:`GraphOptions`' fields.

    Raises:
        ValueError: invalid options (see :class:`GraphOptions`).
    """
    return _graph(GraphOptions(**options))


def loop_graphs(**options: Any) -> st.SearchStrategy[Graph]:
    """:func:`graphs` whose every graph has a ``Loop`` (``loops=True``; ``max_depth`` 2 unless
    given, so some loops nest or sit in ``If`` branches): what loop passes are fuzzed with.

    Raises:
        ValueError: invalid options (see :class:`GraphOptions`).
    """
    return graphs(**{"loops": True, "max_depth": 2, **options})


@st.composite
def _graph(draw: Callable[[st.SearchStrategy[Any]], Any], opts: GraphOptions) -> Graph:
    return build_graph(draw, opts, CATALOG, gen_required_loop if opts.loops else None)


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for a generated graph: floats in [-2, 2], ints in [-4, 4], random bools."""
    return random_inputs(graph, seed, floats=(-2.0, 2.0), ints=(-4, 5))
