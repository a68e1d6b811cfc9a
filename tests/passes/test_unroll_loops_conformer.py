"""``unroll`` on the Conformer example: outputs identical to the rolled loop through
onnxruntime and the torch backend for several output lengths (EOS at the first step, at a
middle step, never), and static token shapes in every step after ``shape-infer``/``fold``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neffkit.examples.conformer import EOS_ID, build_conformer_ocr, export_conformer_onnx
from neffkit.execution import Runner
from neffkit.frontends.onnx import load
from neffkit.ir.core import Graph
from neffkit.passes import PassContext, parse_pipeline
from neffkit.passes.manager import PassManager

MAX_LEN = 12


def _small_conformer(eos_bias: float) -> Graph:
    """A small Conformer whose EOS logit bias moves the exit step (weights fixed by seed)."""
    model = build_conformer_ocr(
        d_model=32, num_heads=2, encoder_layers=1, decoder_layers=1, max_len=MAX_LEN
    )
    with torch.no_grad():
        model.decoder.out.bias[EOS_ID] = eos_bias
    return load(export_conformer_onnx(model=model))


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(s * rng.standard_normal((1, 1, 32, 128))).astype(np.float32) for s in (0.1, 2.0)]


@pytest.mark.parametrize(
    ("spec", "eos_bias", "lengths"),
    [
        ("unroll", 4.0, {1}),
        ("unroll", -0.5, {2, MAX_LEN}),
        # stops inside the second partition (2 tokens), or runs through all four
        ("partition-unroll{boundaries=1+2+6}", -0.5, {2, MAX_LEN}),
    ],
)
def test_unrolled_conformer_matches_the_loop(spec: str, eos_bias: float, lengths: set[int]) -> None:
    rolled = _small_conformer(eos_bias)
    unrolled = _small_conformer(eos_bias)
    (unroll,) = parse_pipeline(spec).items
    result = unroll.run(unrolled, PassContext())
    assert result.stats["steps"] == MAX_LEN  # the counter in the exit condition bounds it
    assert not any(n.op_type == "Loop" for n in unrolled.all_nodes())
    reference = Runner(rolled, "onnxruntime")
    runners = [Runner(unrolled, "onnxruntime"), Runner(unrolled, "torch")]
    seen = set()
    for image in _images():
        want = reference({"image": image})[0]
        seen.add(want.shape[1])
        for run in runners:
            np.testing.assert_array_equal(run({"image": image})[0], want)
    assert seen == lengths


def test_every_step_has_static_token_shapes_after_shape_inference() -> None:
    graph = _small_conformer(-0.5)
    PassManager(parse_pipeline("unroll,(shape-infer,fold,simplify,cse,dce)")).run(graph)
    tokens = {v.shape for n in graph for v in n.outputs if n.op_type == "Concat" and v.dtype == 7}
    # step t appends its token to the t + 1 it has: [1, 2] ... [1, MAX_LEN + 1]
    assert {(1, t + 2) for t in range(MAX_LEN)} <= tokens
    loose = [v for n in graph for v in n.outputs if n.op_type != "If" and not v.type.is_static]
    assert [v.name for v in loose] == ["tokens"]  # only the output, cut to the steps run


def test_after_unroll_dedup_and_cse_every_weight_and_step_invariant_computation_exists_once() -> (
    None
):
    graph = _small_conformer(-0.5)
    PassManager(parse_pipeline("hoist,unroll,(shape-infer,dedup,fold,simplify,cse,dce)")).run(graph)
    weights = [
        v.const.numpy().tobytes()
        for g in graph.all_graphs()
        for v in g.initializers.values()
        if v.const is not None and v.const.nbytes > 64
    ]
    assert weights and len(weights) == len(set(weights))  # one copy of each weight
    computations = [
        (
            n.op_type,
            n.domain,
            tuple(id(v) for v in n.inputs),
            tuple(sorted((k, repr(a.value)) for k, a in n.attributes.items() if not n.subgraphs)),
        )
        for n in graph.all_nodes()
        if not n.subgraphs
    ]
    # the cross-attention keys and values of the encoder output, and every other computation
    # that does not depend on the step, exist once, not once a step
    assert len(computations) == len(set(computations))
    # and the step-invariant work is really shared: without cse each step has its own copy
    copies = _small_conformer(-0.5)
    PassManager(parse_pipeline("unroll,(shape-infer,dedup,fold,simplify,dce)")).run(copies)
    gemms = sum(n.op_type == "Gemm" for n in graph.all_nodes())
    assert gemms < sum(n.op_type == "Gemm" for n in copies.all_nodes())
