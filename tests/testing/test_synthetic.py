"""``synthetic_model``: a valid model of about the asked size, deterministic per seed, with the
duplicated weights and repeated subexpressions that dedup and cse are meant to merge."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import neffkit
from neffkit.passes import PassManager
from neffkit.testing.synthetic import synthetic_model


@pytest.mark.parametrize("num_nodes", [1, 10, 100, 1000])
def test_the_model_is_valid_and_about_the_asked_size(num_nodes: int) -> None:
    model = synthetic_model(num_nodes)
    onnx.checker.check_model(model, full_check=True)
    n = len(model.graph.node)
    assert num_nodes <= n < num_nodes + 11  # at most one block (6 nodes, 4 more, a skip) over


def test_it_runs_with_the_declared_shapes() -> None:
    width = 8
    model = synthetic_model(50, width=width)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.ones((1, width), np.float32)})
    assert y.shape == (1, width) and y.dtype == np.float32 and np.isfinite(y).all()


def test_the_same_seed_gives_the_same_model_and_another_seed_other_weights() -> None:
    a, b = synthetic_model(60, seed=3), synthetic_model(60, seed=3)
    assert a.SerializeToString() == b.SerializeToString()
    c = synthetic_model(60, seed=4)
    assert [n.op_type for n in c.graph.node] == [n.op_type for n in a.graph.node]
    assert a.graph.initializer[1].raw_data != c.graph.initializer[1].raw_data


def test_duplicated_weights_are_what_dedup_merges() -> None:
    model = synthetic_model(120, duplicate_every=2, repeat_every=1000)
    weights = [i for i in model.graph.initializer if i.name.endswith("_w")]
    distinct = {w.raw_data for w in weights}
    assert len(distinct) < len(weights)
    graph = neffkit.load(model)
    report = PassManager("dedup").run(graph)
    assert report.changed
    kept = [v for name, v in graph.initializers.items() if name.endswith("_w")]
    assert len(kept) == len(distinct)


def test_repeated_subexpressions_are_what_cse_merges() -> None:
    model = synthetic_model(60, duplicate_every=1000, repeat_every=2)
    squares = [n for n in model.graph.node if n.name.endswith(("_sq1", "_sq2"))]
    assert squares
    graph = neffkit.load(model)
    before = len(list(graph))
    PassManager("cse").run(graph)
    assert before - len(list(graph)) == len(squares) // 2
