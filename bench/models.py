"""Models for the optimizer benchmarks, built in code (fixed seeds, no downloads).

Every builder returns an ``onnx.ModelProto`` tagged with its bench name (metadata key
``neffkit_bench_model``), and ``inputs_for(model)`` gives matching example inputs:

    model = build("bert_base")
    feeds = inputs_for(model)

Torch models are exported with the TorchScript exporter (``dynamo=False``) at opset 17.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import unittest.mock
import warnings
from collections.abc import Callable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn

OPSET = 17
TAG = "neffkit_bench_model"
#: Sizes of symbolic input dimensions (the Conformer decoder step's token count).
DIMS = {"num_tokens": 8}
LIGHT = ("light_resnet50", "light_densenet121", "light_inception_v2")


def _tag(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    del model.metadata_props[:]
    helper.set_model_props(model, {TAG: name})
    return model


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    names: list[str],
    outs: list[str],
    exporter_cse: bool = True,
) -> onnx.ModelProto:
    """Traces ``module`` in eval mode and exports it at opset 17.

    ``exporter_cse=False`` turns off the TorchScript exporter's own common-subexpression pass
    (a private hook, patched for the call), so repeats that naive code computes stay in the
    graph for the optimizers to find.
    """
    buf = io.BytesIO()
    module.eval()
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        stack.enter_context(torch.no_grad())
        warnings.simplefilter("ignore")
        if not exporter_cse and hasattr(torch._C, "_jit_pass_cse"):
            no_cse = unittest.mock.patch.object(torch._C, "_jit_pass_cse", lambda graph: False)
            stack.enter_context(no_cse)
        torch.onnx.export(
            module,
            args,
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=outs,
        )
    return onnx.load_from_string(buf.getvalue())


# -- Conformer (neffkit.examples) -------------------------------------------------------------


def conformer_encoder(**kwargs: int) -> onnx.ModelProto:
    """The Conformer OCR encoder: image ``[1, 1, 32, 128]`` -> memory ``[1, 32, 144]``.

    ``kwargs`` go to ``export_encoder_onnx`` (``width``, ``d_model``, ... for smaller models).
    """
    from neffkit.examples import export_encoder_onnx

    return _tag(export_encoder_onnx(**kwargs), "conformer_encoder")


def conformer_decoder_step(**kwargs: int) -> onnx.ModelProto:
    """One Conformer decoder step: tokens ``[1, num_tokens]`` + memory -> logits.

    ``kwargs`` go to ``export_decoder_step_onnx``.
    """
    from neffkit.examples import export_decoder_step_onnx

    return _tag(export_decoder_step_onnx(**kwargs), "conformer_decoder_step")


# -- BERT-base-like encoder -------------------------------------------------------------------


class _BertLayer(nn.Module):
    """Post-norm transformer layer: MHA from matmuls/softmax, then a GELU feed-forward."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.ff_in = nn.Linear(hidden, 4 * hidden)
        self.act = nn.GELU()
        self.ff_out = nn.Linear(4 * hidden, hidden)
        self.ff_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(0.1)

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + bias
        probs = self.drop(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(x.shape)
        x = self.attn_norm(x + self.drop(self.attn_out(ctx)))
        return self.ff_norm(x + self.drop(self.ff_out(self.act(self.ff_in(x)))))


class _Bert(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, vocab: int, max_pos: int) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_pos, hidden)
        self.token_type = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(0.1)
        self.layers = nn.ModuleList(_BertLayer(hidden, heads) for _ in range(layers))
        self.pool = nn.Linear(hidden, hidden)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        t = input_ids.shape[1]
        pos = torch.arange(t, dtype=torch.long).unsqueeze(0)
        types = torch.zeros_like(input_ids)
        x = self.word(input_ids) + self.position(pos) + self.token_type(types)
        x = self.drop(self.norm(x))
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        return x, torch.tanh(self.pool(x[:, 0]))


def bert_base_encoder(
    layers: int = 12, hidden: int = 768, heads: int = 12, seq: int = 128, vocab: int = 30522
) -> onnx.ModelProto:
    """A BERT-base-like encoder (random weights): ids, mask ``[1, seq]`` -> hidden, pooled."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _Bert(layers, hidden, heads, vocab, max(512, seq))
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape))
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape))
    ids = torch.randint(0, vocab, (1, seq), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, seq, dtype=torch.long)
    names = ["input_ids", "attention_mask"]
    return _tag(_export(model, (ids, mask), names, ["hidden", "pooled"]), "bert_base")


# -- light_* models of the onnx package -------------------------------------------------------


def light_model(name: str) -> onnx.ModelProto:
    """``light_resnet50``, ``light_densenet121`` or ``light_inception_v2`` (IR v3, weights made
    at run time by ConstantOfShape)."""
    from neffkit.testing.onnx_cases import data_dir

    if name not in LIGHT:
        raise ValueError(f"unknown light model {name!r}; choose one of {', '.join(LIGHT)}")
    return _tag(onnx.load(os.path.join(data_dir(), "light", f"{name}.onnx")), name)


# -- repeated weights -------------------------------------------------------------------------


def shared_weights_model(layers: int = 12, width: int = 256, distinct: int = 3) -> onnx.ModelProto:
    """An MLP whose ``layers`` layers reuse ``distinct`` weight matrices, each layer storing
    its own copy (initializer ``w{i}``), with biases and scales as duplicated Constant nodes."""
    rng = np.random.default_rng(0)
    mats = [
        (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        for _ in range(distinct)
    ]
    biases = [(0.1 * rng.standard_normal(width)).astype(np.float32) for _ in range(distinct)]
    scale = np.array(0.5, np.float32)
    nodes, inits = [], []
    x = "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array(mats[i % distinct].copy(), f"w{i}"))
        nodes += [
            helper.make_node(
                "Constant",
                [],
                [f"b{i}"],
                value=numpy_helper.from_array(biases[i % distinct], f"b{i}_v"),
            ),
            helper.make_node(
                "Constant", [], [f"s{i}"], value=numpy_helper.from_array(scale, f"s{i}_v")
            ),
            helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"add{i}"]),
            helper.make_node("Relu", [f"add{i}"], [f"act{i}"]),
            helper.make_node("Mul", [f"act{i}", f"s{i}"], [f"sc{i}"]),
            helper.make_node("Add", [f"sc{i}", x], [f"h{i}"]),
        ]
        x = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "shared_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [4, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return _tag(model, "shared_weights")


# -- unrolled greedy decoder ------------------------------------------------------------------


class _UnrolledGreedy(nn.Module):
    """Greedy decoding by a Python loop; tracing unrolls it into ``steps`` copies of the step.

    The step (the Conformer decoder step: no KV cache) projects the memory to keys and values
    again at every step, as naive code does, so cross-step CSE has work to do (the exporter's
    own CSE is off for this model, else it would merge them already).
    """

    def __init__(self, step: nn.Module, steps: int, bos: int) -> None:
        super().__init__()
        self.step = step
        self.steps = steps
        self.bos = bos

    def forward(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        tokens = torch.full((1, 1), self.bos, dtype=torch.long)
        all_logits = []
        for _ in range(self.steps):
            logits = self.step(tokens, memory)
            tokens = torch.cat([tokens, logits.argmax(dim=-1, keepdim=True)], dim=1)
            all_logits.append(logits)
        return tokens[:, 1:], torch.stack(all_logits, dim=1)


def unrolled_decoder(
    steps: int = 75, d_model: int = 128, layers: int = 2, vocab: int = 100, memory_len: int = 32
) -> onnx.ModelProto:
    """A traced, fully unrolled greedy decoder: memory ``[1, L, d]`` -> tokens, logits."""
    from neffkit.examples import BOS_ID, build_conformer_decoder_step

    step = build_conformer_decoder_step(
        d_model=d_model, decoder_layers=layers, vocab_size=vocab, max_len=steps, num_heads=4
    )
    memory = torch.from_numpy(
        np.random.default_rng(0).standard_normal((1, memory_len, d_model)).astype(np.float32)
    )
    module = _UnrolledGreedy(step, steps, BOS_ID)
    model = _export(module, (memory,), ["memory"], ["tokens", "logits"], exporter_cse=False)
    return _tag(model, "unrolled_decoder")


# -- registry and inputs ----------------------------------------------------------------------

BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "conformer_encoder": conformer_encoder,
    "conformer_decoder_step": conformer_decoder_step,
    "bert_base": bert_base_encoder,
    **{name: (lambda n=name: light_model(n)) for name in LIGHT},
    "shared_weights": shared_weights_model,
    "unrolled_decoder": unrolled_decoder,
}


def build(name: str) -> onnx.ModelProto:
    """The bench model called ``name`` (one of ``BUILDERS``)."""
    try:
        return BUILDERS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(BUILDERS)}") from None


def bench_name(model: onnx.ModelProto) -> str | None:
    """The name a builder tagged ``model`` with, if any."""
    return next((p.value for p in model.metadata_props if p.key == TAG), None)


def inputs_for(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Example inputs for a bench model.

    light_* models get what their shipped outputs were computed from (``arange(n) / n``);
    integer inputs that index an embedding (Gather on an initializer) are uniform over its rows;
    everything else comes from ``neffkit.api.random_inputs`` (symbolic dims from ``DIMS``).
    """
    from neffkit.api import random_inputs
    from neffkit.dims import symbolic_dims
    from neffkit.frontends.onnx import load

    inits = {t.name: t for t in model.graph.initializer}
    if bench_name(model) in LIGHT:
        return ramp_inputs(model)
    graph = load(model)
    named = set(symbolic_dims(graph))
    feeds = random_inputs(graph, seed, dims={k: v for k, v in DIMS.items() if k in named})
    rng = np.random.default_rng(seed + 1)
    for name, rows in _embedding_rows(model.graph, inits).items():
        if name in feeds and "mask" not in name:
            x = feeds[name]
            feeds[name] = rng.integers(0, rows, size=x.shape).astype(x.dtype)
    return feeds


def ramp_inputs(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """``arange(n) / n`` for every input without an initializer (as the light models' shipped
    outputs were made)."""
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = tuple(d.dim_value or 1 for d in vi.type.tensor_type.shape.dim)
        n = int(np.prod(dims))
        feeds[vi.name] = (np.arange(n).reshape(dims) / n).astype(np.float32)
    return feeds


def _embedding_rows(graph: onnx.GraphProto, inits: dict[str, TensorProto]) -> dict[str, int]:
    """Graph input -> rows of the initializer it gathers from (axis 0 Gathers only)."""
    rows: dict[str, int] = {}
    for n in graph.node:
        if n.op_type != "Gather" or n.input[0] not in inits:
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
        if axis == 0:
            size = int(inits[n.input[0]].dims[0])
            rows[n.input[1]] = min(rows.get(n.input[1], size), size)
    return rows
