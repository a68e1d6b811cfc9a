"""The compiled units of a graph: one per form (whole graph, host loop, partitions), traced with
static example inputs, stitched by scripted host code that matches onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neffkit
from neffkit.backends.neuron.units import compiled_units
from neffkit.errors import BackendError
from neffkit.examples import example_input
from neffkit.execution import Runner
from neffkit.ir.text import parse
from neffkit.passes.base import PassContext
from neffkit.passes.split_encoder_decoder import SplitEncoderDecoder
from tests.backends.neuron.conftest import LOOP, PARTITIONED, PLAIN, run_pipeline
from tests.passes.test_split_encoder_decoder import with_eos_bias


def assert_matches_onnxruntime(graph: neffkit.Graph, module, feeds: list[dict]) -> None:
    """``module`` (the stitched TorchScript) gives onnxruntime's outputs on every feed."""
    ort = Runner(graph, "onnxruntime")
    names = [v.name for v in graph.inputs if v.const is None]
    for feed in feeds:
        want = ort(feed)
        # the profiling executor's first-call optimization of a large module costs seconds
        with torch.jit.optimized_execution(False):
            got = module(*[torch.from_numpy(feed[n]) for n in names])
        got = [got] if isinstance(got, torch.Tensor) else list(got)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.shape == b.shape
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-5, atol=1e-5)


def test_a_graph_without_marks_is_one_unit() -> None:
    g = parse(PLAIN)
    x = np.array([[1.0, -2.0, 3.0], [-1.0, 0.5, 2.0]], np.float32)
    plan = compiled_units(g, {"x": x})
    assert plan.kind == "whole"
    assert plan.names == ["model"]
    (unit,) = plan.units
    assert [tuple(a.shape) for a in unit.example_inputs] == [(2, 3)]
    assert (unit.trips, unit.steps, unit.static) == (1, "", True)
    assert isinstance(unit.traced, torch.jit.ScriptModule)
    assert_matches_onnxruntime(g, plan.stitch(), [{"x": x}, {"x": -x}])


def test_a_host_loop_is_an_encoder_and_a_step_called_up_to_its_bound(tmp_path) -> None:
    g = parse(LOOP)
    SplitEncoderDecoder().run(g, PassContext())
    x = np.array([1.0, -2.0, 0.5], np.float32)
    plan = compiled_units(g, {"x": x, "limit": np.full(3, 10.0, np.float32)})
    assert plan.kind == "host-loop"
    assert plan.names == ["encoder", "step"]
    enc, step = plan.units
    assert (enc.trips, step.trips) == (1, 4)
    # the step takes the counter, the condition, the carried value and the captured ones flat
    assert [tuple(a.shape) for a in step.example_inputs] == [(), (), (3,), (3,), (3,)]
    assert step.static
    module = plan.stitch()
    path = tmp_path / "m.pt"
    torch.jit.save(module, str(path))
    loaded = torch.jit.load(str(path))
    # the running total is 2, 1, 0, -1: the loop exits after each step, or never
    feeds = [{"x": x, "limit": np.full(3, lim, np.float32)} for lim in (2.0, 0.5, 0.0, -10.0)]
    assert_matches_onnxruntime(g, loaded, feeds)


def test_stitch_puts_compiled_units_in_the_host_code() -> None:
    g = parse(LOOP)
    SplitEncoderDecoder().run(g, PassContext())
    feed = {"x": np.array([1.0, -2.0, 0.5], np.float32), "limit": np.full(3, -10.0, np.float32)}
    plan = compiled_units(g, feed)
    step = plan.units[1]

    class NegatedScan(torch.nn.Module):
        """The step with its scan output negated: visible in the model's third output."""

        def __init__(self, unit: torch.nn.Module) -> None:
            super().__init__()
            self.unit = unit

        def forward(self, *args):
            co, w, s = self.unit(*args)
            return co, w, -s

    compiled = torch.jit.trace(NegatedScan(step.traced), step.example_inputs)
    module = plan.stitch({"step": compiled})
    y, acc, seen = module(*[torch.from_numpy(feed[n]) for n in ("x", "limit")])
    want = Runner(g, "onnxruntime")(feed)
    np.testing.assert_allclose(y.numpy(), want[0], rtol=1e-6)
    np.testing.assert_allclose(acc.numpy(), want[1], rtol=1e-6)
    np.testing.assert_allclose(seen.numpy(), -want[2], rtol=1e-6)
    with pytest.raises(BackendError, match=r"no compiled unit named \['decoder'\]"):
        plan.stitch({"decoder": compiled})


def test_partitions_are_units_and_the_gates_stay_on_the_host(conformer) -> None:
    # EOS after 14 tokens: partitions 1 and 2 run whole, the third stops inside
    g = run_pipeline(with_eos_bias(conformer, 2.0), PARTITIONED)
    plan = compiled_units(g, {"image": example_input(32, 0)})
    assert plan.kind == "partitions"
    assert plan.names == ["partition_0_4", "partition_5_9", "partition_10_19"]
    assert [u.steps for u in plan.units] == ["0-4", "5-9", "10-19"]
    # a partition holds its weights: it takes the image, or the tokens and the two cached
    # cross-attention tensors, never a weight, as inputs
    assert [len(u.example_inputs) for u in plan.units] == [1, 3, 3]
    # every partition is reached on the example (the gates are opened), whatever EOS does
    assert all(u.static and u.example_inputs for u in plan.units)
    # the steps' exit tests became Where: no If is left inside a traced unit
    for unit in plan.units:
        assert "prim::If" not in str(unit.traced.inlined_graph)
    feeds = [{"image": example_input(32, seed)} for seed in (0, 1)]
    assert_matches_onnxruntime(g, plan.stitch(), feeds)


def test_padded_host_loop_step_is_static(padded) -> None:
    plan = compiled_units(padded, [example_input(32, 0)])
    assert plan.names == ["encoder", "step"]
    assert plan.units[1].static and plan.units[1].trips == 20
    assert_matches_onnxruntime(padded, plan.stitch(), [{"image": example_input(32, 1)}])


def test_an_unpadded_step_is_scripted_and_says_why(conformer) -> None:
    g = run_pipeline(conformer, "split")
    plan = compiled_units(g, [example_input(32, 0)])
    step = plan.units[1]
    assert not step.static
    assert "takes a shape from values" in step.note
    assert_matches_onnxruntime(g, plan.stitch(), [{"image": example_input(32, 0)}])


def test_an_if_over_values_of_two_shapes_stays_host_code() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    m (float[2] a, float[3] b, bool c) => (float[?] y) {
        r = Relu (a)
        y = If (c) <then_branch = t () => (float[2] p) { p = Identity (r) },
                    else_branch = e () => (float[3] q) { q = Identity (b) }>
    }
    """
    g = parse(text)
    feeds = {"a": np.ones(2, np.float32), "b": np.ones(3, np.float32), "c": np.array(True)}
    plan = compiled_units(g, feeds)
    assert plan.names == ["model"]
    assert [tuple(a.shape) for a in plan.units[0].example_inputs] == [(2,)]  # Relu only
    module = plan.stitch()
    for c in (True, False):
        assert_matches_onnxruntime(g, module, [{**feeds, "c": np.array(c)}])


def test_inputs_that_do_not_fit_are_refused() -> None:
    with pytest.raises(BackendError, match="expects shape"):
        compiled_units(parse(PLAIN), {"x": np.ones((3, 3), np.float32)})


def test_an_unmarked_loop_stays_host_code_and_is_named(conformer) -> None:
    plan = compiled_units(conformer, [example_input(32, 0)])
    assert plan.names == ["model"]  # the encoder, before the loop
    assert len(plan.notes) == 1 and "Loop '/Loop' runs in the host code" in plan.notes[0]
    assert_matches_onnxruntime(conformer, plan.stitch(), [{"image": example_input(32, 0)}])


def test_a_graph_that_is_all_control_flow_has_nothing_to_compile() -> None:
    g = parse("""
    <ir_version: 8, opset_import: ["" : 17]>
    m (int64 n, float[3] x) => (float[3] y) {
        y = Loop (n, "", x) <body = b (int64 i, bool c, float[3] v) => (bool co, float[3] w) {
            co = Identity (c)
            w = Add (v, v)
        }>
    }
    """)
    with pytest.raises(BackendError, match="nothing to compile"):
        compiled_units(g, {"n": np.array(2), "x": np.ones(3, np.float32)})


@pytest.mark.parametrize(
    ("mark", "message"),
    [
        ("neffkit:partition", "without 'steps=A-B'"),
        ("neffkit:partition steps=9-3", "run backwards"),
        ("neffkit:partition steps=5-9", "two partitions cover steps 5-9"),
    ],
)
def test_broken_partition_marks_are_a_backend_error(partitioned, mark, message) -> None:
    # the marks come from the model file: a hostile or hand-edited one gets a clear error
    from neffkit.ir.clone import clone_graph

    g = clone_graph(partitioned)
    parts = [s for s in g.all_graphs() if s.doc_string.startswith("neffkit:partition steps")]
    parts[-1].doc_string = mark
    with pytest.raises(BackendError, match=message):
        compiled_units(g, {"image": example_input(32, 0)})
