"""A Conformer text-line OCR model built in code, with random weights and a fixed seed.

The model is a realistic compiler workload with no downloads: a convolutional subsampling front
end, Conformer encoder blocks (with a depthwise Conv1d of kernel 15 and BatchNorm to fold), and
an autoregressive transformer decoder whose greedy loop stops at EOS. The loop is scripted so the
ONNX export keeps it as a real ``Loop`` with a data-dependent exit, and the encoder and a single
decoder step are also exposed (with shared weights) for encoder/decoder splitting.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from neffkit.files import atomic_write, write_bytes

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "ConformerDecoderStep",
    "ConformerEncoder",
    "ConformerOCR",
    "ConformerOCRBatch",
    "build_conformer_decoder_step",
    "build_conformer_encoder",
    "build_conformer_ocr",
    "build_conformer_ocr_batch",
    "example_input",
    "export_conformer_batch_onnx",
    "export_conformer_onnx",
    "export_decoder_step_onnx",
    "export_encoder_onnx",
]

BOS_ID = 1
EOS_ID = 2
IMAGE_HEIGHT = 32


class _FeedForward(nn.Module):
    def __init__(self, d_model: int, expansion: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, expansion * d_model)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(expansion * d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class _Attention(nn.Module):
    """Multi-head attention from plain matmuls/softmax (exports as MatMul/Softmax, no fused op)."""

    def __init__(self, d_model: int, num_heads: int, causal: bool = False) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.scale = self.head_dim**-0.5
        self.causal = causal
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, kv: Tensor) -> Tensor:
        b, tq, d = x.size(0), x.size(1), x.size(2)
        tk = kv.size(1)
        q = self.q(x).reshape(b, tq, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k(kv).reshape(b, tk, self.num_heads, self.head_dim).permute(0, 2, 3, 1)
        v = self.v(kv).reshape(b, tk, self.num_heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k) * self.scale  # [b, h, tq, tk]
        if self.causal:
            pos_q = torch.arange(tq, device=x.device)
            pos_k = torch.arange(tk, device=x.device)
            future = pos_k.unsqueeze(0) > pos_q.unsqueeze(1)  # [tq, tk]
            # finite (fp16-safe) yet exp() of it is exactly 0 in float32
            scores = scores.masked_fill(future, -1e4)
        attn = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(attn, v).transpose(1, 2).reshape(b, tq, d)
        return self.out(ctx)


class _ConvModule(nn.Module):
    """Conformer convolution module: pointwise+GLU, depthwise k=15, BatchNorm, SiLU, pointwise."""

    def __init__(self, d_model: int, kernel_size: int = 15) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.pointwise1 = nn.Conv1d(d_model, 2 * d_model, kernel_size=1)
        self.glu = nn.GLU(dim=1)
        self.depthwise = nn.Conv1d(
            d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model
        )
        self.bn = nn.BatchNorm1d(d_model)
        self.act = nn.SiLU()
        self.pointwise2 = nn.Conv1d(d_model, d_model, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x).transpose(1, 2)  # [b, d, t]
        y = self.glu(self.pointwise1(y))
        y = self.act(self.bn(self.depthwise(y)))
        return self.pointwise2(y).transpose(1, 2)


class _ConformerBlock(nn.Module):
    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.ff1 = _FeedForward(d_model)
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = _Attention(d_model, num_heads)
        self.conv = _ConvModule(d_model)
        self.ff2 = _FeedForward(d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        y = self.attn_norm(x)
        x = x + self.attn(y, y)
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class ConformerEncoder(nn.Module):
    """Image ``[1, 1, 32, W]`` -> memory ``[1, W/4, d_model]``."""

    def __init__(self, d_model: int, num_heads: int, num_layers: int) -> None:
        super().__init__()
        self.subsample = nn.Sequential(
            nn.Conv2d(1, d_model, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(d_model, d_model, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.proj = nn.Linear(d_model * (IMAGE_HEIGHT // 4), d_model)
        self.blocks = nn.ModuleList(_ConformerBlock(d_model, num_heads) for _ in range(num_layers))

    def forward(self, image: Tensor) -> Tensor:
        x = self.subsample(image)  # [b, c, h/4, w/4]
        b, c, h, w = x.size(0), x.size(1), x.size(2), x.size(3)
        x = self.proj(x.permute(0, 3, 1, 2).reshape(b, w, c * h))
        for block in self.blocks:
            x = block(x)
        return x


class _DecoderLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(d_model)
        self.self_attn = _Attention(d_model, num_heads, causal=True)
        self.cross_norm = nn.LayerNorm(d_model)
        self.cross_attn = _Attention(d_model, num_heads)
        self.ff = _FeedForward(d_model)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        y = self.self_norm(x)
        x = x + self.self_attn(y, y)
        x = x + self.cross_attn(self.cross_norm(x), memory)
        return x + self.ff(x)


class ConformerDecoderStep(nn.Module):
    """One greedy step: tokens so far ``[1, t]`` + memory -> last-position logits ``[1, vocab]``.

    Recomputes every position (no KV cache) so a step is a pure function of its inputs.
    """

    def __init__(
        self, d_model: int, num_heads: int, num_layers: int, vocab_size: int, max_len: int
    ) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len + 1, d_model)
        self.layers = nn.ModuleList(_DecoderLayer(d_model, num_heads) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: Tensor, memory: Tensor) -> Tensor:
        pos = torch.arange(tokens.size(1), device=tokens.device)
        x = self.tok_emb(tokens) + self.pos_emb(pos).unsqueeze(0)
        for layer in self.layers:
            x = layer(x, memory)
        return self.out(self.norm(x[:, -1]))


class ConformerOCR(nn.Module):
    """Image -> greedy tokens ``[1, T]`` (BOS dropped; ends with EOS when it stopped early)."""

    __constants__ = ["bos_id", "eos_id", "max_len"]  # TorchScript cannot read module globals

    def __init__(
        self, encoder: ConformerEncoder, decoder: ConformerDecoderStep, max_len: int
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.max_len = max_len
        self.bos_id = BOS_ID
        self.eos_id = EOS_ID

    def forward(self, image: Tensor) -> Tensor:
        memory = self.encoder(image)
        tokens = torch.full([1, 1], self.bos_id, dtype=torch.long, device=image.device)
        for step in range(self.max_len):
            # tokens has exactly step + 1 entries, so the slice is a no-op; it ties the length to
            # the loop counter, else the ONNX exporter folds tokens.size(1) to its initial 1.
            logits = self.decoder(tokens[:, : step + 1], memory)
            next_tok = logits.argmax(dim=-1, keepdim=True)  # [1, 1]
            tokens = torch.cat([tokens, next_tok], dim=1)
            if bool(next_tok[0, 0] == self.eos_id):
                break
        return tokens[:, 1:]


class ConformerOCRBatch(ConformerOCR):
    """Images ``[b, 1, 32, W]``, ``max_tokens`` ``[b]`` -> greedy tokens ``[b, T]`` (BOS dropped).

    Sequence i is done once it emits EOS or holds ``max_tokens[i]`` tokens; the loop stops when
    every sequence is done (or after ``max_len`` steps), so T is the longest sequence's length.
    A done sequence's tokens are EOS from then on (its row is padded with EOS). The same greedy
    decode as :class:`ConformerOCR`: at batch 1 with ``max_tokens = max_len`` the tokens are equal.
    It exists so that requests of chosen lengths can be served, batched (the random weights
    never emit EOS of their own within ``max_len`` steps).
    """

    def forward(self, image: Tensor, max_tokens: Tensor) -> Tensor:  # type: ignore[override]
        memory = self.encoder(image)
        tokens = torch.full([image.size(0), 1], self.bos_id, dtype=torch.long, device=image.device)
        done = max_tokens <= 0
        for step in range(self.max_len):
            # the slice ties the length to the loop counter (see ConformerOCR.forward)
            logits = self.decoder(tokens[:, : step + 1], memory)
            next_tok = logits.argmax(dim=-1).masked_fill(done, self.eos_id)  # [b]
            tokens = torch.cat([tokens, next_tok.unsqueeze(1)], dim=1)
            done = done | (next_tok == self.eos_id) | (max_tokens <= step + 1)
            if bool(done.all()):
                break
        return tokens[:, 1:]


def _randomize(model: nn.Module, gen: torch.Generator) -> None:
    """Give norms non-trivial affine params / BN stats (so folding matters) and damp EOS."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm | nn.BatchNorm1d):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=gen))
                var = torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5
                m.running_var.copy_(var)
        out = model.decoder.out
        out.weight.mul_(3.0)  # sharper logits: larger argmax margins, stable across runtimes
        out.bias[EOS_ID] = -4.0  # keep random weights from stopping on step 1


def build_conformer_ocr(
    *,
    width: int = 128,
    d_model: int = 144,
    num_heads: int = 4,
    encoder_layers: int = 2,
    decoder_layers: int = 2,
    vocab_size: int = 100,
    max_len: int = 75,
    seed: int = 0,
) -> ConformerOCR:
    """Build the full OCR model in eval mode; same arguments give bit-identical weights.

    ``width`` only fixes the intended input size (weights do not depend on it) and must be a
    positive multiple of 4 so the subsampled sequence is exactly ``width // 4`` long.
    """
    if width <= 0 or width % 4:
        raise ValueError(f"width must be a positive multiple of 4, got {width}")
    if vocab_size <= EOS_ID:
        raise ValueError(f"vocab_size must exceed EOS_ID={EOS_ID}, got {vocab_size}")
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        encoder = ConformerEncoder(d_model, num_heads, encoder_layers)
        decoder = ConformerDecoderStep(d_model, num_heads, decoder_layers, vocab_size, max_len)
        model = ConformerOCR(encoder, decoder, max_len)
    _randomize(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def build_conformer_ocr_batch(**kwargs: int) -> ConformerOCRBatch:
    """The batched, length-limited model with the weights of ``build_conformer_ocr(**kwargs)``."""
    model = build_conformer_ocr(**kwargs)
    return ConformerOCRBatch(model.encoder, model.decoder, model.max_len).eval()


def build_conformer_encoder(**kwargs: int) -> ConformerEncoder:
    """The encoder of ``build_conformer_ocr(**kwargs)`` (same weights): image -> memory."""
    return build_conformer_ocr(**kwargs).encoder


def build_conformer_decoder_step(**kwargs: int) -> ConformerDecoderStep:
    """The decoder step of ``build_conformer_ocr(**kwargs)`` (same weights)."""
    return build_conformer_ocr(**kwargs).decoder


def example_input(width: int = 128, seed: int = 0, batch: int = 1) -> np.ndarray:
    """A deterministic float32 image ``[batch, 1, 32, width]`` with pixels in [0, 1)."""
    rng = np.random.default_rng(seed)
    return rng.random((batch, 1, IMAGE_HEIGHT, width), dtype=np.float32)


def _relax_loop_state_shapes(graph: onnx.GraphProto) -> None:
    """Make Loop-carried dims that change per iteration symbolic, in place (recursively).

    The TorchScript exporter stamps each loop-carried body input with the *initial* value's
    static shape (tokens ``[1, 1]``), though the body returns it grown (``[1, t + 1]``). ORT
    trusts that shape: it warns every iteration and its Gemm fusion can reshape ``[1, t, d]``
    to ``[1, d]`` and fail; downstream shape inference would be wrong too.
    """
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _relax_loop_state_shapes(attr.g)
        if node.op_type != "Loop":
            continue
        body = next(a.g for a in node.attribute if a.name == "body")
        # body inputs: (iter, cond, *state); body outputs: (cond, *state, *scan_outputs)
        for k, (inp, out) in enumerate(zip(body.input[2:], body.output[1:])):
            in_t, out_t = inp.type.tensor_type, out.type.tensor_type
            if not in_t.HasField("shape"):
                continue
            out_dims = list(out_t.shape.dim) if out_t.HasField("shape") else []
            for i, dim in enumerate(in_t.shape.dim):
                same = i < len(out_dims) and out_dims[i].HasField("dim_value")
                if not (same and out_dims[i].dim_value == dim.dim_value):
                    dim.Clear()
                    dim.dim_param = f"{node.name or 'loop'}_state{k}_dim{i}"


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: str | os.PathLike | None,
    opset: int,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> onnx.ModelProto:
    """Script ``module`` and export it with the TorchScript exporter; save atomically."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit.script and the TorchScript exporter are deprecated but still the only path
        # that keeps a data-dependent `break` as an ONNX Loop; silence the per-call nagging.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "It is recommended that constant folding", UserWarning)
        scripted = torch.jit.script(module)
        torch.onnx.export(
            scripted,
            args,
            buf,
            dynamo=False,
            # PRESERVE (model is in eval) skips the exporter's Conv+BN fusion: keep BN to fold.
            training=torch.onnx.TrainingMode.PRESERVE,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )
    model = onnx.load_from_string(buf.getvalue())
    _relax_loop_state_shapes(model.graph)
    if path is not None:
        write_bytes(path, model.SerializeToString())  # atomic: temp file, then rename
    return model


def export_conformer_torchscript(
    path: str | os.PathLike | None = None,
    *,
    width: int = 128,
    seed: int = 0,
    model: ConformerOCR | None = None,
    **kwargs: int,
) -> torch.jit.ScriptModule:
    """Script the full model, greedy loop kept as TorchScript control flow (``image`` ->
    ``tokens``), and, given ``path``, save it with ``torch.jit.save`` atomically."""
    model, _ = _model_and_image(model, width, seed, kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, not gone
        scripted = torch.jit.script(model.eval())
        if path is not None:
            atomic_write(path, lambda tmp: torch.jit.save(scripted, tmp))
    return scripted


def _model_and_image(
    model: ConformerOCR | None, width: int, seed: int, kwargs: dict[str, int]
) -> tuple[ConformerOCR, Tensor]:
    if model is None:
        model = build_conformer_ocr(width=width, seed=seed, **kwargs)
    return model, torch.from_numpy(example_input(width, seed))


def export_conformer_onnx(
    path: str | os.PathLike | None = None,
    *,
    width: int = 128,
    seed: int = 0,
    opset: int = 17,
    model: ConformerOCR | None = None,
    **kwargs: int,
) -> onnx.ModelProto:
    """Export the full model (greedy loop kept as an ONNX ``Loop``): ``image`` -> ``tokens``.

    Pass ``model`` to export an already-built (e.g. modified) model instead of building one.
    """
    model, image = _model_and_image(model, width, seed, kwargs)
    axes = {"tokens": {1: "num_tokens"}}
    return _export(model, (image,), path, opset, ["image"], ["tokens"], axes)


def export_encoder_onnx(
    path: str | os.PathLike | None = None,
    *,
    width: int = 128,
    seed: int = 0,
    opset: int = 17,
    model: ConformerOCR | None = None,
    **kwargs: int,
) -> onnx.ModelProto:
    """Export the encoder alone: ``image`` ``[1, 1, 32, W]`` -> ``memory`` ``[1, W/4, d]``."""
    model, image = _model_and_image(model, width, seed, kwargs)
    return _export(model.encoder, (image,), path, opset, ["image"], ["memory"], {})


def export_decoder_step_onnx(
    path: str | os.PathLike | None = None,
    *,
    width: int = 128,
    seed: int = 0,
    opset: int = 17,
    model: ConformerOCR | None = None,
    **kwargs: int,
) -> onnx.ModelProto:
    """Export one decoder step: ``tokens`` ``[1, t]`` (dynamic t), ``memory`` -> ``logits``."""
    model, image = _model_and_image(model, width, seed, kwargs)
    with torch.no_grad():
        memory = model.encoder(image)
    tokens = torch.full([1, 3], BOS_ID, dtype=torch.long)
    names, axes = ["tokens", "memory"], {"tokens": {1: "num_tokens"}}
    return _export(model.decoder, (tokens, memory), path, opset, names, ["logits"], axes)


def export_conformer_batch_onnx(
    path: str | os.PathLike | None = None,
    *,
    width: int = 128,
    seed: int = 0,
    opset: int = 17,
    model: ConformerOCRBatch | None = None,
    **kwargs: int,
) -> onnx.ModelProto:
    """Export :class:`ConformerOCRBatch` (greedy loop kept as an ONNX ``Loop``, symbolic batch):
    ``image`` ``[batch, 1, 32, W]``, ``max_tokens`` ``[batch]`` -> ``tokens``
    ``[batch, num_tokens]``."""
    if model is None:
        model = build_conformer_ocr_batch(width=width, seed=seed, **kwargs)
    image = torch.from_numpy(example_input(width, seed, batch=2))
    max_tokens = torch.tensor([3, model.max_len], dtype=torch.long)
    axes = {
        "image": {0: "batch"},
        "max_tokens": {0: "batch"},
        "tokens": {0: "batch", 1: "num_tokens"},
    }
    names = ["image", "max_tokens"]
    proto = _export(model, (image, max_tokens), None, opset, names, ["tokens"], axes)
    _keep_batch_dim(proto.graph)
    if path is not None:
        write_bytes(path, proto.SerializeToString())
    return proto


def _keep_batch_dim(graph: onnx.GraphProto) -> None:
    """Name the batch axis of the loop state ``batch`` in the decoder Loop's body, in place.

    The exporter gives the body's outputs fresh dim names, so ``_relax_loop_state_shapes``
    cannot tell that the state's leading axis (tokens ``[b, t]``, done ``[b]``) is the batch
    every step and makes it unknown; shape inference inside the body then loses the batch
    (and pad-loop refuses the loop). Every carried value of this model is batch-major.
    """
    (loop,) = [n for n in graph.node if n.op_type == "Loop"]
    body = next(a.g for a in loop.attribute if a.name == "body")
    for value in [*body.input[2:], *body.output[1:]]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) >= 1:
            dims[0].Clear()
            dims[0].dim_param = "batch"
