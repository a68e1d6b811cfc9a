"""The graph builder on its own: it draws from whatever catalog it is given, never rejects a
draw, keeps shapes consistent, shrinks empty steps away and stops nesting at max_depth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from hypothesis import find, given, settings
from hypothesis import strategies as st

from neffkit.backends import onnxruntime as ort_backend
from neffkit.backends.onnx import to_onnx
from neffkit.ir.core import Graph
from neffkit.ir.verifier import verify
from neffkit.testing.builder import (
    BOOL,
    F32,
    FLOATS,
    I64,
    Builder,
    Catalog,
    broadcasts,
    bshape,
    build_graph,
    i64,
    numel,
)
from neffkit.testing.strategies import random_feeds

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None)


@dataclass(frozen=True)
class Limits:
    """Options for a catalog of ops GraphOptions does not know (the builder needs no more)."""

    ops: tuple[str, ...] = ("Relu",)
    plants: tuple[str, ...] = ()
    dtype_codes: tuple[int, ...] = (F32,)
    min_ops: int = 1
    max_ops: int = 6
    max_inputs: int = 2
    max_rank: int = 3
    max_dim: int = 4
    max_numel: int = 64
    max_depth: int = 1


def _relu(b: Builder) -> None:
    x = b.pick(FLOATS)
    b.emit1("Relu", [x], x.dtype, x.shape)


def _add(b: Builder) -> None:
    x = b.pick(FLOATS)
    y = b.partner(x.dtype, x.shape)
    b.emit1("Add", [x, y], x.dtype, bshape(x.shape, y.shape))


def _graphs(limits: Limits, catalog: Catalog) -> st.SearchStrategy[Graph]:
    return st.composite(lambda draw: build_graph(draw, limits, catalog))()


def _check_runs(graph: Graph) -> None:
    verify(graph)
    model = to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    outs = ort_backend.run(model, random_feeds(graph))
    for v, o in zip(graph.outputs, outs):
        assert tuple(o.shape) == tuple(v.shape)


def test_it_draws_only_the_ops_of_its_catalog() -> None:
    catalog = Catalog(ops={"Relu": _relu, "Add": _add}, plants={})

    @FAST
    @given(_graphs(Limits(ops=("Relu", "Add")), catalog))
    def run(graph: Graph) -> None:
        assert {n.op_type for n in graph} <= {"Relu", "Add", "Constant", "Identity"}
        _check_runs(graph)

    run()


def test_an_empty_step_adds_nothing_so_graphs_shrink_to_one_copy() -> None:
    catalog = Catalog(ops={"Relu": _relu}, plants={})
    smallest = find(_graphs(Limits(), catalog), lambda g: True, settings=FAST)
    # the one step shrinks to "no op"; the graph outputs a copy of its input
    assert [n.op_type for n in smallest] == ["Identity"]
    assert len(smallest.inputs) == 1 and smallest.outputs[0].shape == smallest.inputs[0].shape


def test_plants_are_drawn_from_the_catalog() -> None:
    def plant(b: Builder) -> None:
        x = b.pick(FLOATS)
        b.emit1("Neg", [x], x.dtype, x.shape)

    catalog = Catalog(ops={"Relu": _relu}, plants={"neg": plant})
    planted = find(
        _graphs(Limits(plants=("neg",)), catalog),
        lambda g: "Neg" in {n.op_type for n in g},
        settings=FAST,
    )
    assert [n.op_type for n in planted] == ["Neg"]  # shrunk to the one planted node
    _check_runs(planted)


def test_nesting_ops_are_not_drawn_past_max_depth() -> None:
    depths: list[int] = []

    def nest(b: Builder) -> None:
        depths.append(b.depth)
        x = b.pick(FLOATS)
        sub = b.body(b.name("body"), [])
        sub.steps(1, 3)  # at depth 1 only the fallback op may be drawn
        assert {n.op_type for n in sub.graph} <= {"Relu", "Constant"}
        assert all(v.graph is sub.graph for v in sub.produced)  # its nodes, not the outer ones
        b.emit1("Relu", [x], x.dtype, x.shape)

    catalog = Catalog(ops={"Nest": nest, "Relu": _relu}, plants={}, nesting=frozenset({"Nest"}))

    @FAST
    @given(_graphs(Limits(ops=("Nest",)), catalog))
    def run(graph: Graph) -> None:
        pass

    run()
    assert depths and set(depths) == {0}


@FAST
@given(st.data())
def test_operands_fit_what_was_asked(data: st.DataObject) -> None:
    graph = Graph("g", opset_imports={"": 18})
    b = Builder(data.draw, Limits(dtype_codes=(F32, I64)), graph, Catalog({}, {}))
    x = b.pick({F32, I64}, 2)
    assert x.dtype in (F32, I64) and 2 <= len(x.shape) <= 3
    y = b.partner(x.dtype, x.shape)
    assert y.dtype == x.dtype and broadcasts(x.shape, y.shape)
    assert numel(bshape(x.shape, y.shape)) <= max(64, numel(x.shape))
    z = b.partner(x.dtype, x.shape, grow=False)
    assert bshape(x.shape, z.shape) == x.shape
    k = b.const(np.ones((2,), np.float32))
    assert b.known[k].tolist() == [1.0, 1.0]
    c = b.typed(BOOL, (2, 1))
    assert c.dtype == BOOL and c.shape == (2, 1)
    assert len(graph.inputs) <= 2


def test_shape_helpers() -> None:
    assert bshape((2, 1), (3,), (1, 1, 1)) == (1, 2, 3)
    assert broadcasts((2, 3), (3,)) and not broadcasts((2, 3), (2,))
    assert numel(()) == 1 and numel((2, 0, 4)) == 0
    assert i64([1, 2]).dtype == np.int64
