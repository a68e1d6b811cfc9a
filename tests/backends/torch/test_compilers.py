"""The torch backend's modules go through PyTorch's own compilers, as the accelerator paths take
them: ``torch.jit.trace`` (torch-neuron), ``torch.export`` (torch-xla / torch-neuronx style
ahead-of-time graphs) and ``torch.compile(fullgraph=True)``; each compiled module's outputs agree
with onnxruntime under neffkit's compare policy. Bench models at their smallest sizes, after
``neffkit.optimize(..., target="torch")``; bench/compilers.py measures the full ones."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import numpy as np
import onnx
import pytest
import torch
import torch._functorch.config
import torch._inductor.config

import neffkit
from bench import models
from neffkit.backends import onnxruntime as ort_backend
from neffkit.backends.torch import compile as lower
from neffkit.backends.torch import prepare_inputs, to_numpy
from neffkit.execution.compare import compare_all

# Helpers that read a tensor back into Python at run time (data-dependent for the compilers).
RUNTIME_READS = ("int_list", "float_list", "range_dynamic", ".item()", ".tolist()")

SMALL: dict[str, Callable[[], onnx.ModelProto]] = {
    "conformer_encoder": lambda: models.conformer_encoder(
        width=16, d_model=16, num_heads=2, encoder_layers=1, decoder_layers=1
    ),
    "conformer_decoder_step": lambda: models.conformer_decoder_step(
        width=16, d_model=16, num_heads=2, encoder_layers=1, decoder_layers=1, vocab_size=12
    ),
    "bert_base": lambda: models.bert_base_encoder(layers=1, hidden=16, heads=2, seq=6, vocab=40),
    "light_resnet50": lambda: models.light_model("light_resnet50"),
}


def _optimized(name: str) -> tuple[neffkit.Graph, dict[str, np.ndarray], list[np.ndarray]]:
    model = SMALL[name]()
    feeds = models.inputs_for(model)
    want = ort_backend.run(neffkit.load(model), feeds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, _ = neffkit.optimize(model, target="torch", verify=False)
    return graph, feeds, want


@pytest.fixture(scope="module")
def optimized() -> Callable[[str], tuple[neffkit.Graph, dict[str, np.ndarray], list]]:
    cache: dict[str, tuple[neffkit.Graph, dict[str, np.ndarray], list]] = {}

    def get(name: str) -> tuple[neffkit.Graph, dict[str, np.ndarray], list]:
        if name not in cache:
            cache[name] = _optimized(name)
        return cache[name]

    return get


def _compiled(compiler: str, gm: torch.nn.Module, args: tuple) -> Callable[..., object]:
    if compiler == "trace":
        return torch.jit.trace(gm, args, check_trace=False)
    if compiler == "export":
        return torch.export.export(gm, args).module()
    torch._dynamo.reset()
    # aot_eager: dynamo's whole-graph capture and AOTAutograd's functionalization, as inductor
    # gets them, without its C++ kernel builds (test_inductor_fuses_attention builds those)
    return torch.compile(gm, fullgraph=True, backend="aot_eager")


CASES = [
    (name, compiler)
    for name in SMALL
    for compiler in ("trace", "export", "compile")
    if not (name.startswith("light") and compiler == "compile")  # its export covers it
]


@pytest.mark.parametrize(("name", "compiler"), CASES)
def test_compiled_module_agrees_with_onnxruntime(optimized, name: str, compiler: str) -> None:
    graph, feeds, want = optimized(name)
    gm = lower(graph)
    assert not [r for r in RUNTIME_READS if r in gm.code]
    args = tuple(prepare_inputs(graph, feeds))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = _compiled(compiler, gm, args)(*args)
    got = [to_numpy(o) for o in outs]
    worst = [c for c in compare_all(want, got) if not c.ok]
    assert not worst, worst


def test_inductor_fuses_attention_with_a_float_scale(optimized) -> None:
    # A 0-d scale tensor broke the fusion ("Expected ... Optional[float] for argument 'scale'")
    # and a permuted key was taken for k.transpose(-2, -1); both are lowered differently now.
    from torch._dynamo.utils import counters

    graph, feeds, want = optimized("bert_base")
    gm = lower(graph)
    assert re.search(r" / \d", gm.code) and ".transpose(-2, -1)" in gm.code
    args = tuple(prepare_inputs(graph, feeds))
    torch._dynamo.reset()
    counters.clear()
    # the graph caches would skip the pattern passes (and the count) on a second run
    no_cache = (
        torch._inductor.config.patch(fx_graph_cache=False),
        torch._functorch.config.patch(enable_autograd_cache=False),
    )
    with torch.no_grad(), warnings.catch_warnings(), no_cache[0], no_cache[1]:
        warnings.simplefilter("ignore")
        outs = torch.compile(gm, fullgraph=True)(*args)
    assert counters["inductor"]["fuse_attention"] >= 1
    worst = [c for c in compare_all(want, [to_numpy(o) for o in outs]) if not c.ok]
    assert not worst, worst
