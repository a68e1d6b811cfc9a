"""Compiling for each Neuron target against stand-in packages that record every call: the API,
the exact keywords, one call per compiled unit with static shapes, and a stitched artifact that
matches onnxruntime. Without the packages: one error that says where they come from."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from neffkit.backends.neuron import (
    AWS_INDEX,
    NeuronBackend,
    NeuronOptions,
    compile_graph,
    compiled_units,
    dry_run,
    neuron_api,
)
from neffkit.backends.neuron import compile as neuron_compile
from neffkit.backends.neuron.compile import compile_plan
from neffkit.errors import BackendError
from neffkit.examples import example_input
from neffkit.execution import Runner, get_backend
from neffkit.ir.text import parse
from neffkit.passes.base import PassContext
from neffkit.passes.split_encoder_decoder import SplitEncoderDecoder
from tests.backends.neuron.conftest import LOOP, PLAIN
from tests.backends.neuron.standins import neuron_packages
from tests.backends.neuron.test_units import assert_matches_onnxruntime

X = np.array([[1.0, -2.0, 3.0], [-1.0, 0.5, 2.0]], np.float32)
LOOP_FEED = {"x": np.array([1.0, -2.0, 0.5], np.float32), "limit": np.full(3, 0.5, np.float32)}


@pytest.fixture
def calls():
    recorded: list = []
    with neuron_packages(recorded):
        yield recorded


def _host_loop():
    g = parse(LOOP)
    SplitEncoderDecoder().run(g, PassContext())
    return g


def test_inf1_calls_torch_neuron_trace_once_for_the_whole_model(calls) -> None:
    g = parse(PLAIN)
    opts = NeuronOptions(compiler_args=("--neuroncore-pipeline-cores", "1"), compiler_workdir="w")
    result = compile_graph(g, {"x": X}, "inf1", opts)
    (call,) = calls
    assert call.api == "torch_neuron.trace"
    assert call.shapes == [(2, 3)]
    assert call.kwargs == {
        "compiler_args": ["--neuroncore-pipeline-cores", "1"],
        "compiler_workdir": "w/model",
        "fallback": True,  # a whole model: torch_neuron's default
        "dynamic_batch_size": False,
        "separate_weights": False,
    }
    assert_matches_onnxruntime(g, result.module, [{"x": X}, {"x": -X}])


def test_inf1_host_loop_is_two_calls_with_fallback_off(calls) -> None:
    g = _host_loop()
    result = compile_graph(g, LOOP_FEED, "inf1", NeuronOptions(dynamic_batch=True))
    assert [c.api for c in calls] == ["torch_neuron.trace"] * 2
    assert [c.shapes for c in calls] == [[(3,), (3,)], [(), (), (3,), (3,), (3,)]]
    assert [c.kwargs["fallback"] for c in calls] == [False, False]  # decoder units
    assert [c.kwargs["dynamic_batch_size"] for c in calls] == [True, True]
    assert [c.name for c in result.plan.units] == ["encoder", "step"]
    feeds = [{**LOOP_FEED, "limit": np.full(3, lim, np.float32)} for lim in (2.0, 0.0, -10.0)]
    assert_matches_onnxruntime(g, result.module, feeds)


@pytest.mark.parametrize("target", ["inf2", "trn1"])
def test_inf2_and_trn1_call_torch_neuronx_trace_per_unit(calls, target) -> None:
    g = _host_loop()
    opts = NeuronOptions(compiler_args=("--optlevel", "1"), separate_weights=True)
    result = compile_graph(g, LOOP_FEED, target, opts)
    assert [c.api for c in calls] == ["torch_neuronx.trace"] * 2
    for c in calls:
        assert c.kwargs == {
            "compiler_args": ["--optlevel", "1", "--target", target],
            "inline_weights_to_neff": False,
        }
    assert calls[1].shapes == [(), (), (3,), (3,), (3,)]
    assert_matches_onnxruntime(g, result.module, [LOOP_FEED])


def test_trn2_compiles_each_unit_with_torch_compile_and_one_warm_call(calls) -> None:
    g = _host_loop()
    opts = NeuronOptions(compiler_args=("--optlevel", "2"), compiler_workdir="/tmp/w")
    result = compile_graph(g, LOOP_FEED, "trn2", opts)
    # torch.compile is lazy: the backend saw each unit's graph because of the warm call, at
    # the example's static shapes (dynamo passes on the tensors the graph reads)
    assert [c.api for c in calls] == ["neuron backend"] * 2
    assert [c.shapes for c in calls] == [[(3,)], [(3,), (3,), (3,)]]
    assert calls[0].env == {
        "NEURON_CC_FLAGS": "--optlevel 2",
        "TORCH_NEURONX_DEBUG_DIR": "/tmp/w/encoder",
    }
    assert [c.kwargs for c in result.calls] == [{"backend": "neuron", "fullgraph": True}] * 2
    assert [c.warm_calls for c in result.calls] == [1, 1]
    import os

    assert "NEURON_CC_FLAGS" not in os.environ  # set for the calls only
    assert_matches_onnxruntime(g, result.module, [LOOP_FEED])


def test_partitions_are_one_call_each(calls, partitioned) -> None:
    # (inf1's fallback=False for partitions: tests/cli/test_compile.py)
    plan = compiled_units(partitioned, [example_input(32, 0)])
    result = compile_plan(plan, "inf2", NeuronOptions(), api=neuron_api("inf2"))
    assert [c.api for c in calls] == ["torch_neuronx.trace"] * 3
    assert [c.shapes for c in calls] == [
        [tuple(a.shape) for a in u.example_inputs] for u in plan.units
    ]
    assert all(isinstance(d, int) for c in calls for s in c.shapes for d in s)
    assert_matches_onnxruntime(partitioned, result.module, [{"image": example_input(32, 1)}])


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("inf2", NeuronOptions(fallback=True), "inf1 only"),
        ("trn2", NeuronOptions(dynamic_batch=True), "inf1 only"),
        ("trn2", NeuronOptions(separate_weights=True), "no trn2 counterpart"),
    ],
)
def test_options_a_target_has_no_meaning_for_are_refused(calls, target, options, message) -> None:
    with pytest.raises(BackendError, match=message):
        compile_graph(parse(PLAIN), {"x": X}, target, options)
    assert not calls


def test_an_unpadded_step_is_refused_before_the_compiler(calls, conformer) -> None:
    from tests.backends.neuron.conftest import run_pipeline

    g = run_pipeline(conformer, "split")
    with pytest.raises(BackendError, match=r"unit 'step' has no single static shape.*pad-loop"):
        compile_graph(g, [example_input(32, 0)], "inf2")
    assert len(calls) == 0


@pytest.mark.parametrize("target", ["inf1", "inf2", "trn1", "trn2"])
def test_without_the_packages_the_error_says_where_they_are(monkeypatch, target) -> None:
    # None in sys.modules makes the import fail, whatever is installed
    monkeypatch.setitem(sys.modules, "torch_neuron", None)
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)
    with pytest.raises(BackendError) as e:
        neuron_api(target)
    text = str(e.value)
    package = "torch-neuron " if target == "inf1" else "torch-neuronx "
    assert package in text and AWS_INDEX in text
    assert "placeholder" in text and "--dry-run" in text


def test_a_placeholder_package_without_trace_is_named(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_neuronx", types.ModuleType("torch_neuronx"))
    with pytest.raises(BackendError, match=r"torch_neuronx imports but has no trace\(\)"):
        neuron_api("inf2")
    with pytest.raises(BackendError, match="registers no 'neuron' torch.compile backend"):
        neuron_api("trn2")


def test_the_registry_has_a_neuron_backend_that_compiles_and_runs(calls) -> None:
    backend = get_backend("neuron")
    assert isinstance(backend, NeuronBackend)
    g = parse(PLAIN)
    runner = Runner(g, "neuron", device="inf2")
    np.testing.assert_allclose(runner({"x": X})[0], Runner(g, "onnxruntime")({"x": X})[0])
    assert [c.api for c in calls] == ["torch_neuronx.trace"]
    with pytest.raises(BackendError, match="unknown Neuron target 'inf3'"):
        Runner(g, "neuron", device="inf3")


def test_dry_run_hands_each_traced_unit_to_the_support_analysis(monkeypatch) -> None:
    seen = []

    def analyze_unit(name, module, target, *, trips=1, fallback=True):
        seen.append((name, type(module).__name__, target, trips, fallback))
        return name

    def render_report(units, *, target):
        return f"# {target}: {', '.join(units)}\n", {"target": target, "units": list(units)}

    monkeypatch.setattr(neuron_compile, "analyze_unit", analyze_unit)
    monkeypatch.setattr(neuron_compile, "render_report", render_report)
    result = dry_run(_host_loop(), LOOP_FEED, "inf1")
    assert [(s[0], s[2], s[3], s[4]) for s in seen] == [
        ("encoder", "inf1", 1, False),
        ("step", "inf1", 4, False),
    ]
    assert {s[1] for s in seen} <= {"RecursiveScriptModule", "TopLevelTracedModule"}
    assert result.markdown == "# inf1: encoder, step\n"
    assert [c.api for c in result.calls] == ["torch_neuron.trace"] * 2
    assert_matches_onnxruntime(_host_loop(), result.module, [LOOP_FEED])
