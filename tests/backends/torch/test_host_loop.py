"""The torch backend's host loop: a model ``split`` marked becomes one TorchScript module whose
scripted loop calls the traced encoder and step; it loads back and matches onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neffkit
from neffkit.backends.torch import to_torchscript
from neffkit.backends.torch.host_loop import marked_loops
from neffkit.errors import BackendError
from neffkit.examples import example_input, export_conformer_onnx
from neffkit.execution import Runner
from neffkit.ir.clone import clone_graph
from neffkit.ir.text import parse
from neffkit.passes.base import PassContext
from neffkit.passes.split_encoder_decoder import SplitEncoderDecoder
from tests.passes.test_split_encoder_decoder import with_eos_bias

# encoder (Mul, Relu) -> Loop with a static-shaped state and an exit -> epilogue (Neg)
STATIC = """
<ir_version: 8, opset_import: ["" : 17]>
m (float[3] x, float[3] limit) => (float[3] y, float[3] acc, float[4, 3] seen) {
    two = Constant <value = float {2.0}> ()
    e = Mul (x, two)
    h = Relu (e)
    n = Constant <value = int64 {4}> ()
    c = Constant <value = bool {1}> ()
    acc, seen = Loop (n, c, h) <body = g (int64 i, bool ci, float[3] v)
            => (bool co, float[3] w, float[3] s) {
        w = Add (v, e)
        s = Identity (w)
        total = ReduceSum <keepdims = 0> (w)
        lim = ReduceSum <keepdims = 0> (limit)
        co = Less (lim, total)
    }>
    y = Neg (acc)
}
"""


def _split(text: str) -> neffkit.Graph:
    g = parse(text)
    SplitEncoderDecoder().run(g, PassContext())
    return g


def _check_against_onnxruntime(g: neffkit.Graph, module, feeds: list[dict]) -> None:
    ort = Runner(g, "onnxruntime")
    names = [v.name for v in g.inputs if v.const is None]
    for feed in feeds:
        want = ort(feed)
        got = module(*[torch.from_numpy(feed[n]) for n in names])
        got = [got] if isinstance(got, torch.Tensor) else list(got)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-6, atol=1e-6)


def test_a_static_step_is_traced_and_exits_like_onnxruntime(tmp_path) -> None:
    g = _split(STATIC)
    x = np.array([1.0, -2.0, 0.5], np.float32)
    module, how = to_torchscript(g, {"x": x, "limit": np.full(3, 10.0, np.float32)})
    assert how == "host-loop: host loop 'host_loop_0': encoder traced, step traced"
    path = tmp_path / "m.pt"
    torch.jit.save(module, str(path))
    loaded = torch.jit.load(str(path))
    assert isinstance(loaded.encoder, torch.jit.ScriptModule)
    # the running total is 2, 1, 0, -1: the loop exits after the first, the second, the third
    # and the last step, or never (its 4 steps all run)
    limits = (2.0, 0.5, 0.0, -0.1, -10.0)
    feeds = [{"x": x, "limit": np.full(3, lim, np.float32)} for lim in limits]
    _check_against_onnxruntime(g, loaded, feeds)


def test_a_step_with_control_flow_is_scripted_and_says_why() -> None:
    text = STATIC.replace(
        "w = Add (v, e)",
        "w = If (ci) <then_branch = th () => (float[3] a) { a = Add (v, e) },"
        " else_branch = el () => (float[3] b) { b = Identity (v) }>",
    )
    g = _split(text)
    x = np.array([1.0, -2.0, 0.5], np.float32)
    module, how = to_torchscript(g, {"x": x, "limit": np.full(3, -10.0, np.float32)})
    assert how.endswith("step scripted (the body has control flow: If '')")
    feeds = [{"x": x, "limit": np.full(3, lim, np.float32)} for lim in (0.5, -10.0)]
    _check_against_onnxruntime(g, module, feeds)


GROWING = """
<ir_version: 8, opset_import: ["" : 17]>
m (float[1] x) => (float[?] acc) {
    n = Constant <value = int64 {3}> ()
    c = Constant <value = bool {1}> ()
    acc = Loop (n, c, x) <body = g (int64 i, bool ci, float[?] v) => (bool co, float[?] w) {
        co = Identity (ci)
        w = Concat <axis = 0> (v, x)
    }>
}
"""


def test_a_growing_step_of_shape_generic_ops_stays_traced() -> None:
    # torch.cat traces for any length: the check on the second iteration keeps the trace
    g = _split(GROWING)
    x = np.array([1.5], np.float32)
    module, how = to_torchscript(g, {"x": x})
    assert how.endswith("step traced")
    _check_against_onnxruntime(g, module, [{"x": x}])


def test_a_growing_step_that_reshapes_by_its_own_shape_stays_traced() -> None:
    # Reshape(v, Shape(v)): the lowering reads the sizes as v.size(0), which a trace records
    # as a size call, not as the first iteration's number; the second-iteration check agrees
    g = _split(
        GROWING.replace(
            "w = Concat <axis = 0> (v, x)",
            "sh = Shape (v)\n        v2 = Reshape (v, sh)\n        w = Concat <axis = 0> (v2, x)",
        )
    )
    x = np.array([1.5], np.float32)
    module, how = to_torchscript(g, {"x": x})
    assert how.endswith("step traced")
    _check_against_onnxruntime(g, module, [{"x": x}])


def test_a_step_whose_trace_disagrees_on_the_second_iteration_is_scripted() -> None:
    # Cast(Shape(v)) used as data, not as a shape operand: no control flow and no shape operand
    # from data, so only the second-iteration check can see that the trace bakes the first
    # iteration's length (torch.tensor(v.shape) is a constant in a trace) into x * len(v)
    g = _split(
        GROWING.replace(
            "w = Concat <axis = 0> (v, x)",
            "n = Shape (v)\n        nf = Cast <to = 1> (n)\n        xs = Mul (x, nf)\n"
            "        w = Concat <axis = 0> (v, xs)",
        )
    )
    x = np.array([1.5], np.float32)
    module, how = to_torchscript(g, {"x": x})
    assert how.endswith("step scripted (the step's shapes change between iterations: see pad-loop)")
    got = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_array_equal(got, np.array([1.5, 1.5, 3.0, 4.5], np.float32))
    np.testing.assert_array_equal(got, Runner(g, "onnxruntime")({"x": x})[0])


def test_a_step_sliced_by_the_loop_counter_is_scripted() -> None:
    # shapes stay static, but the slice's end is the loop counter: a trace would fix it at 0
    text = (
        STATIC.replace(
            "s = Identity (w)",
            "zero = Constant <value = int64[1] {0}> ()\n"
            "        one = Constant <value = int64 {1}> ()\n"
            "        i1 = Add (i, one)\n"
            "        end = Unsqueeze (i1, zero)\n"
            "        part = Slice (w, zero, end)\n"
            "        s = ReduceSum <keepdims = 0> (part)",
        )
        .replace("float[4, 3] seen", "float[4] seen")
        .replace("float[3] w, float[3] s)", "float[3] w, float s)")
    )
    g = _split(text)
    x = np.array([1.0, -2.0, 0.5], np.float32)
    module, how = to_torchscript(g, {"x": x, "limit": np.full(3, -10.0, np.float32)})
    assert how.endswith("step scripted (Slice '' takes a shape from values, not from shapes)")
    _check_against_onnxruntime(g, module, [{"x": x, "limit": np.full(3, -10.0, np.float32)}])


def test_unmarked_models_convert_as_before() -> None:
    g = parse(STATIC)
    assert not marked_loops(g)
    _, how = to_torchscript(g)
    assert how == "script"


def test_a_host_loop_needs_example_inputs() -> None:
    with pytest.raises(BackendError, match="needs example inputs"):
        to_torchscript(_split(STATIC))


def test_two_host_loops_are_refused() -> None:
    text = STATIC.replace("y = Neg (acc)", "y = Neg (acc2)").replace(
        "    acc, seen = Loop",
        "    acc2, seen2 = Loop (n, c, h) <body = g2 (int64 i, bool ci,"
        " float[3] v) => (bool co, float[3] w, float[3] s) {\n w = Add (v, e)\n s = Identity (w)\n"
        " co = Identity (ci)\n }>\n    acc, seen = Loop",
    )
    g = _split(text)
    assert len(marked_loops(g)) == 2
    with pytest.raises(BackendError, match="needs one marked Loop"):
        to_torchscript(g, {"x": np.ones(3, np.float32), "limit": np.ones(3, np.float32)})


@pytest.fixture(scope="module")
def conformer() -> neffkit.Graph:
    small = {"d_model": 32, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 1}
    return neffkit.load(export_conformer_onnx(width=32, max_len=20, **small))


@pytest.mark.parametrize("bias", [3.0, -4.0])  # EOS after 4 steps; never (20 steps run)
def test_conformer_host_loop_round_trips_through_a_file(conformer, tmp_path, bias) -> None:
    original = with_eos_bias(conformer, bias)
    g = clone_graph(original)
    SplitEncoderDecoder().run(g, PassContext())
    x = example_input(32, 0)
    module, how = to_torchscript(g, {"image": x})
    # the step slices the tokens by the loop counter: tracing would fix its length
    assert how.endswith(
        "encoder traced, step scripted (Slice '/Slice' takes a shape from values, not from shapes)"
    )
    path = tmp_path / "conformer.pt"
    torch.jit.save(module, str(path))
    loaded = torch.jit.load(str(path))
    ort = Runner(original, "onnxruntime")
    for seed in (0, 1):
        x = example_input(32, seed)
        np.testing.assert_array_equal(loaded(torch.from_numpy(x))[0].numpy(), ort([x])[0])


def test_neffkit_convert_writes_and_checks_a_host_loop_module(tmp_path, capsys) -> None:
    from neffkit.cli import main

    model, out = tmp_path / "split.onnx", tmp_path / "split.pt"
    neffkit.save(_split(STATIC), str(model))
    assert main(["convert", str(model), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "host-loop: host loop 'host_loop_0': encoder traced, step traced" in printed
    assert "all 3 outputs agree on 2 input sets" in printed
    loaded = torch.jit.load(str(out))
    feeds = [{"x": np.array([3.0, -1.0, 2.0], np.float32), "limit": np.full(3, 1.0, np.float32)}]
    _check_against_onnxruntime(neffkit.load(str(model)), loaded, feeds)
