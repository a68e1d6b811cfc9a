"""Models the Neuron backend's tests share: small text models and the small Conformer in the
decoder forms the compiler sees (partitioned unroll, padded host loop, unpadded host loop)."""

from __future__ import annotations

import pytest

import neffkit
from neffkit.examples import export_conformer_onnx
from neffkit.ir.clone import clone_graph
from neffkit.optimize import DEFAULT_PIPELINES
from neffkit.passes.manager import PassManager
from tests.backends.torch.test_host_loop import STATIC
from tests.passes.test_split_encoder_decoder import with_eos_bias

#: the default pipeline (docs/user-guide.md, "Decoder loops")
D = DEFAULT_PIPELINES["torch"]
PARTITIONED = f"{D},partition-unroll{{boundaries=5+10}},{D}"
PADDED = f"{D},pad-loop{{max-len=20}},{D},split"
SMALL = {"d_model": 32, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 1}

# encoder (Mul, Relu) -> Loop with a static-shaped state and an exit -> epilogue (Neg)
LOOP = STATIC

PLAIN = """
<ir_version: 8, opset_import: ["" : 17]>
m (float[2, 3] x) => (float[2, 3] y, float[2] s) {
    r = Relu (x)
    y = Mul (r, x)
    one = Constant <value = int64[1] {1}> ()
    s = ReduceSum <keepdims = 0> (y, one)
}
"""


def run_pipeline(graph: neffkit.Graph, pipeline: str) -> neffkit.Graph:
    """A copy of ``graph`` after ``pipeline``."""
    g = clone_graph(graph)
    PassManager(pipeline).run(g)
    return g


@pytest.fixture(scope="session")
def conformer() -> neffkit.Graph:
    """The small Conformer (width 32, up to 20 tokens); EOS never wins: all 20 steps run."""
    return with_eos_bias(neffkit.load(export_conformer_onnx(width=32, max_len=20, **SMALL)), -4.0)


@pytest.fixture(scope="session")
def partitioned(conformer) -> neffkit.Graph:
    """The Conformer unrolled into partitions of steps 0-4, 5-9 and 10-19."""
    return run_pipeline(conformer, PARTITIONED)


@pytest.fixture(scope="session")
def padded(conformer) -> neffkit.Graph:
    """The Conformer as a host loop whose step is padded to one static shape."""
    return run_pipeline(conformer, PADDED)
