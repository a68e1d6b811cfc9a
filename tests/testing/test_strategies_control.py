"""The decoder-like Loops of the graph strategies: growing carried values, data-dependent exits,
scan outputs, run-time trip counts and conditions, captures, nested Loops and Loops in If
branches are all drawn, valid, typed with symbolic dims where sizes depend on the iterations,
and the torch backend agrees with onnxruntime on them."""

from __future__ import annotations

import pytest
from hypothesis import find, given, settings

from neffkit.backends import onnxruntime as ort_backend
from neffkit.backends.onnx import to_onnx
from neffkit.ir.core import Graph, Node
from neffkit.ir.text import parse, print_graph
from neffkit.testing import (
    check_backend,
    check_pass,
    graphs,
    loop_features,
    loop_graphs,
    random_feeds,
)
from neffkit.testing.builder import static
from neffkit.testing.strategies import LOOP_FEATURES
from tests.testing.test_strategies import ALL_DTYPES, check_valid

SETTINGS = {"deadline": None, "derandomize": True, "database": None}


def loops(graph: Graph) -> list[Node]:
    return [n for n in graph.all_nodes() if n.op_type == "Loop"]


def in_if(graph: Graph) -> bool:
    """Some If branch holds a Loop."""
    ifs = [n for n in graph.all_nodes() if n.op_type == "If"]
    return any(m.op_type == "Loop" for n in ifs for b in n.subgraphs for m in b.all_nodes())


@settings(max_examples=60, **SETTINGS)
@given(loop_graphs(max_ops=6, dtypes=ALL_DTYPES))
def test_loop_graphs_are_valid_print_back_and_run_on_torch(graph: Graph) -> None:
    assert loops(graph)
    check_valid(graph)
    text = print_graph(graph)
    assert print_graph(parse(text)) == text
    check_backend(graph)


def test_every_loop_feature_shows_up_often() -> None:
    counts = dict.fromkeys([*LOOP_FEATURES, "in-if"], 0)

    @settings(max_examples=150, **SETTINGS)
    @given(loop_graphs(max_ops=4))
    def run(graph: Graph) -> None:
        seen = set().union(*(loop_features(n) for n in loops(graph)))
        seen |= {"in-if"} if in_if(graph) else set()
        for f in seen:
            counts[f] += 1

    run()
    # 500 draws of loop_graphs(max_ops=6) give: scan 258, capture 211, exit 211, grow 171,
    # runtime-trips 181, cond-input 91, nested 73, in-if 54
    # the draws shift a little with what the session imported before (hypothesis' own state):
    # the bar is every feature more than once, not the rates above
    assert all(n >= 2 for n in counts.values()), counts


def test_growing_values_and_data_dependent_scans_have_symbolic_dims() -> None:
    def growing(g: Graph) -> bool:
        return any({"grow", "exit", "scan"} <= loop_features(n) for n in loops(g))

    graph = find(loop_graphs(), growing, settings=settings(max_examples=500, **SETTINGS))
    node = next(n for n in loops(graph) if {"grow", "exit", "scan"} <= loop_features(n))
    n_carried = len(node.inputs) - 2
    grown = [v for v in node.outputs[:n_carried] if not static(v)]
    assert len(grown) == 1 and sum(type(d) is str for d in grown[0].shape) == 1
    (scan,) = node.outputs[n_carried:]
    assert type(scan.shape[0]) is str  # how many iterations ran is known only at run time
    assert len({d for v in node.outputs for d in v.shape if type(d) is str}) == 2
    body = node.attr("body")
    assert body.inputs[-1].shape.count(None) == 1  # the growing body input: an unknown dim
    check_valid(graph)


def _iterations(graph: Graph, node: Node, seeds: range) -> set[int]:
    """Iterations ``node`` ran for each seed's feeds, read from its growing carried value."""
    n_carried = len(node.inputs) - 2
    j = next(i for i, v in enumerate(node.outputs[:n_carried]) if not static(v))
    axis = next(a for a, d in enumerate(node.outputs[j].shape) if type(d) is not int)
    start = node.inputs[2 + j].shape[axis]
    graph.set_outputs([node.outputs[j]])
    model = to_onnx(graph)
    return {
        int(ort_backend.run(model, random_feeds(graph, seed))[0].shape[axis]) - start
        for seed in seeds
    }


def test_exits_depend_on_the_inputs_and_hit_the_first_and_last_step() -> None:
    """Loops with a data-dependent exit stop after different iterations for different
    inputs, the first and the last included; run-time trip counts and initial conditions let
    some run no iteration."""
    firsts = lasts = varied = zeros = 0

    @settings(max_examples=600, **SETTINGS)
    @given(loop_graphs(max_ops=2, max_depth=1))
    def run(graph: Graph) -> None:
        nonlocal firsts, lasts, varied, zeros
        node = next(n for n in graph if n.op_type == "Loop")
        feats = loop_features(node)
        if "grow" not in feats:
            return
        runs = _iterations(graph, node, range(12))
        if feats & {"runtime-trips", "cond-input"}:
            zeros += 0 in runs
        elif "exit" in feats:
            m = node.inputs[0]
            trips = int((m.const if m.is_initializer else m.producer.attr("value")).numpy())
            assert all(1 <= r <= trips for r in runs)
            firsts += 1 in runs
            lasts += trips in runs
            varied += len(runs) > 1

    run()
    assert min(firsts, lasts, varied, zeros) >= 3, (firsts, lasts, varied, zeros)


def test_loops_option_puts_a_loop_in_every_graph() -> None:
    @settings(max_examples=40, **SETTINGS)
    @given(graphs(loops=True, ops=["Relu", "Add"], max_ops=2))
    def run(graph: Graph) -> None:
        assert [n for n in graph if n.op_type == "Loop"]  # depth 1: at the top level
        assert not any("nested" in loop_features(n) for n in loops(graph))

    run()


@pytest.mark.parametrize("name", ["dce", "cse"])
def test_check_pass_takes_loop_graphs(name: str) -> None:
    summary = check_pass(name, max_examples=15, seed=None, loops=True, max_depth=2, torch=True)
    assert summary.examples == 15


def test_first_choices_shrink_to_a_plain_loop() -> None:
    graph = find(loop_graphs(), lambda g: True, settings=settings(**SETTINGS))
    (node,) = loops(graph)
    assert loop_features(node) <= {"capture"}
    m = node.inputs[0]
    tensor = m.const if m.is_initializer else m.producer.attr("value")
    assert int(tensor.numpy()) == 1 and node.inputs[1] is None
