"""reduce_model shrinks a failing model to the nodes the failure needs, every candidate valid,
the result still failing; with recorded inputs the cut values come from onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from neffkit.errors import BackendError, NeffkitError
from neffkit.testing import Reduction, reduce_model
from neffkit.testing.reduce import NothingToReduce


def _chain(ops: list[str], shape: tuple[int, ...] = (2, 3)) -> onnx.ModelProto:
    """A chain of unary ops on one float input."""
    nodes, prev = [], "x"
    for i, op in enumerate(ops):
        nodes.append(helper.make_node(op, [prev], [f"t{i}"], name=f"n{i}"))
        prev = f"t{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _has(op: str):
    def fails(model: onnx.ModelProto, inputs: list) -> bool:
        return op in _ops(model)

    return fails


CHAIN = ["Relu", "Abs", "Sigmoid"] * 3 + ["Neg"] + ["Relu", "Abs", "Sigmoid"] * 3


def test_a_single_culprit_is_shrunk_to_one_node() -> None:
    model = _chain(CHAIN)
    seen: list[onnx.ModelProto] = []

    def fails(candidate: onnx.ModelProto, inputs: list) -> bool:
        onnx.checker.check_model(candidate, full_check=True)  # every candidate is valid
        seen.append(candidate)
        return "Neg" in _ops(candidate)

    found = reduce_model(model, fails)
    assert isinstance(found, Reduction)
    assert _ops(found.model) == ["Neg"]
    assert fails(found.model, [])  # the reduced model still fails
    # the cut value became a graph input of its inferred type, the Neg's output an output
    (x,) = found.model.graph.input
    assert x.name == "t8" and x.type.tensor_type.shape.dim[1].dim_value == 3
    assert found.nodes_before == 19 and found.checks == len(seen) - 1 and found.inputs == []
    assert len(model.graph.node) == 19  # the original is not changed


def test_a_failure_needing_two_distant_nodes_keeps_both() -> None:
    model = _chain(["Relu", "Neg", "Abs", "Sigmoid", "Relu", "Abs", "Sigmoid", "Softplus"])

    def fails(candidate: onnx.ModelProto, inputs: list) -> bool:
        ops = _ops(candidate)
        return "Neg" in ops and "Softplus" in ops

    found = reduce_model(model, fails)
    assert sorted(_ops(found.model)) == ["Neg", "Softplus"]
    assert fails(found.model, [])


def test_progress_reports_each_step() -> None:
    lines: list[str] = []
    reduce_model(_chain(CHAIN), _has("Neg"), progress=lines.append)
    assert lines[0] == "reduce: 19 nodes"
    assert any(line.startswith("reduce: kept the ") for line in lines)
    assert lines[-1].startswith("reduce: 1 nodes after ")


def test_a_model_already_minimal_comes_back_as_is() -> None:
    model = _chain(["Neg"])
    found = reduce_model(model, _has("Neg"))
    assert found.model is model and found.checks == 1


def test_recorded_inputs_give_the_values_of_the_cut_inputs() -> None:
    # Neg only fails on negative values: the candidate's input must carry the original's value
    model = _chain(["Identity"] * 5 + ["Neg"] + ["Identity"] * 4)
    sets = [{"x": np.full((2, 3), 1.5, np.float32)}, {"x": np.full((2, 3), -1.5, np.float32)}]

    def fails(candidate: onnx.ModelProto, inputs: list[dict[str, np.ndarray]]) -> bool:
        assert len(inputs) == 2
        assert all(set(i) == {vi.name for vi in candidate.graph.input} for i in inputs)
        # only the second set shows the failure, as a flaky bug would
        return "Neg" in _ops(candidate) and all((v < 0).all() for v in inputs[1].values())

    found = reduce_model(model, fails, feeds=sets)
    assert _ops(found.model) == ["Neg"]
    name = found.model.graph.input[0].name
    assert [sorted(i) for i in found.inputs] == [[name], [name]]
    np.testing.assert_array_equal(found.inputs[1][name], sets[1]["x"])


def test_a_model_that_does_not_fail_is_refused() -> None:
    with pytest.raises(NothingToReduce, match="nothing to reduce"):
        reduce_model(_chain(CHAIN), _has("Conv"))
    assert issubclass(NothingToReduce, NeffkitError)


def test_not_a_model_is_a_neffkit_error() -> None:
    with pytest.raises(NeffkitError, match="onnx.ModelProto"):
        reduce_model(b"not a model", _has("Neg"))  # type: ignore[arg-type]


def test_feeds_that_do_not_fit_are_a_backend_error() -> None:
    with pytest.raises(BackendError):
        reduce_model(_chain(CHAIN), _has("Neg"), feeds=[{"y": np.zeros((2, 3), np.float32)}])
