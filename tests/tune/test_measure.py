"""Measuring a decoder loop: the loop found and made standalone, its states, its costs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from neffkit.errors import NeffkitError
from neffkit.execution import run
from neffkit.tune.measure import find_loop, measure_costs, positions_to_measure

INT64_MAX = np.iinfo(np.int64).max


def _loop_model(trip: int = INT64_MAX, loops: int = 1) -> onnx.ModelProto:
    """x [1,4] -> tokens [1, n]: each step appends (sum(tokens) + sum(relu(x)) * w) mod 7,
    stopping after the step that appends 0 or after 9 steps; the body reads relu(x) and
    constants from outside."""
    body = helper.make_graph(
        [
            helper.make_node("Cast", ["tok_in"], ["tok_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["tok_f"], ["s1"], keepdims=0),
            helper.make_node("ReduceSum", ["enc"], ["s2"], keepdims=0),
            helper.make_node("Mul", ["s2", "w"], ["s2w"]),
            helper.make_node("Add", ["s1", "s2w"], ["s"]),
            helper.make_node("Floor", ["s"], ["fl"]),
            helper.make_node("Mod", ["fl", "seven"], ["m"], fmod=1),
            helper.make_node("Cast", ["m"], ["m_i"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["m_i", "shape11"], ["next"]),
            helper.make_node("Concat", ["tok_in", "next"], ["tok_out"], axis=1),
            helper.make_node("Equal", ["m_i", "zero"], ["is_end"]),
            helper.make_node("Not", ["is_end"], ["going"]),
            helper.make_node("Less", ["i", "limit"], ["more"]),
            helper.make_node("And", ["going", "more"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("tok_in", TensorProto.INT64, [1, "n"]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("tok_out", TensorProto.INT64, [1, "n1"]),
        ],
    )
    nodes = [helper.make_node("Relu", ["x"], ["enc"])]
    nodes += [
        helper.make_node("Loop", ["trip", "cond", "bos"], [f"tokens{k}"], body=body)
        for k in range(loops)
    ]
    inits = [
        numpy_helper.from_array(np.array(trip, np.int64), "trip"),
        numpy_helper.from_array(np.array(True), "cond"),
        numpy_helper.from_array(np.array([[1]], np.int64), "bos"),
        numpy_helper.from_array(np.array(1.5, np.float32), "w"),
        numpy_helper.from_array(np.array(7.0, np.float32), "seven"),
        numpy_helper.from_array(np.array([1, 1], np.int64), "shape11"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(8, np.int64), "limit"),
    ]
    graph = helper.make_graph(
        nodes,
        "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor_value_info(f"tokens{k}", TensorProto.INT64, [1, None])
            for k in range(loops)
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


X = {"x": np.array([[0.5, -1.0, 2.0, 0.25]], np.float32)}


def test_the_standalone_body_reproduces_the_loop():
    model = _loop_model()
    loop = find_loop(model, X)
    assert loop.trip_count == INT64_MAX
    assert [a.shape for a in loop.carried] == [(1, 1)]
    assert list(loop.captured) == ["enc"]  # the constants are copied in as constants
    np.testing.assert_array_equal(loop.captured["enc"], np.maximum(X["x"], 0))
    inputs = [i.name for i in loop.body.graph.input]
    assert inputs == ["i", "cond_in", "tok_in", "enc"]
    assert {t.name for t in loop.body.graph.initializer} == {
        "w",
        "seven",
        "shape11",
        "zero",
        "limit",
    }
    states = loop.states(6)
    assert [s[0].shape for s in states] == [(1, t) for t in range(1, 7)]
    (tokens,) = run(model, X, "onnxruntime")  # BOS and one token a step, the last one 0
    assert tokens.shape[1] == 10  # the sequence never hits 0: the step limit stops it
    for k, state in enumerate(states):  # the state before step k + 1: BOS and k tokens
        np.testing.assert_array_equal(state[0], tokens[:, : k + 1])


def test_static_body_and_state_unit_run_on_both_backends():
    loop = find_loop(_loop_model(), X)
    states = loop.states(4)
    feeds = loop.feeds(4, states[3])
    static = loop.static_body(feeds)
    dims = [d.dim_value for d in static.graph.input[2].type.tensor_type.shape.dim]
    assert dims == [1, 4]
    unit = loop.state_unit(feeds)
    for backend in ("onnxruntime", "torch"):
        cond, tok = run(static, feeds, backend, check=False)
        assert tok.shape == (1, 5)
        (same,) = run(unit, feeds, backend, check=False)
        np.testing.assert_array_equal(same, states[3][0])


def test_measure_costs_on_onnxruntime():
    loop = find_loop(_loop_model(), X)
    seen = []
    costs = measure_costs(loop, "onnxruntime", 6, positions=[1, 6], repeats=2, progress=seen.append)
    assert costs.max_len == 6
    assert len(costs.steps) == 6
    assert all(c >= 0 for c in costs.steps) and costs.overhead > 0
    assert "2 of 6 positions measured, the rest interpolated linearly" in costs.source
    assert any("step 6/6" in s for s in seen)
    full = measure_costs(loop, "onnxruntime", 3, repeats=1, pipeline="shape-infer,fold,dce")
    assert "interpolated" not in full.source
    assert "shape-infer,fold,dce" in full.source


def test_refusals():
    with pytest.raises(NeffkitError, match="one decoder Loop at the top level; this one has 2"):
        find_loop(_loop_model(loops=2), X)
    no_loop = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with pytest.raises(NeffkitError, match="has 0"):
        find_loop(no_loop)
    loop = find_loop(_loop_model(), X)
    with pytest.raises(NeffkitError, match=r"must lie in 1\.\.6"):
        measure_costs(loop, "onnxruntime", 6, positions=[0, 3])


def test_positions_to_measure():
    assert positions_to_measure(75, 4) == [1, 26, 50, 75]
    assert positions_to_measure(5, None) == [1, 2, 3, 4, 5]
    assert positions_to_measure(5, 9) == [1, 2, 3, 4, 5]
    with pytest.raises(NeffkitError, match="at least 2"):
        positions_to_measure(75, 1)


def test_noisy_timings_are_flagged(monkeypatch):
    """Calls of one unit far apart (a busy machine) make the costs suspect: the output says so."""
    from neffkit.tune import measure

    loop = find_loop(_loop_model(), X)
    monkeypatch.setattr(measure, "_time_unit", lambda *args: (1e-3, 5.0))
    seen = []
    costs = measure_costs(loop, "onnxruntime", 3, repeats=1, progress=seen.append)
    assert "NOISY: the calls of one unit took up to 5.0x the time of its fastest" in costs.source
    assert any(s.startswith("NOISY") for s in seen)
    monkeypatch.setattr(measure, "_time_unit", lambda *args: (1e-3, 1.5))
    assert "NOISY" not in measure_costs(loop, "onnxruntime", 3, repeats=1).source
