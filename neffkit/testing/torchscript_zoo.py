"""A zoo of real torch modules for the TorchScript frontend's tests and coverage bench.

Each entry is a function ``build(size) -> (module, example_inputs)`` returning an eager
``nn.Module`` in eval mode with deterministic weights and a tuple of example tensors, plus the
forms it is meant to be converted in (``script``, ``trace`` or both: a module with data-dependent
control flow is only scripted, one whose trace records a fused op is kept for that).
``size="small"`` keeps tests fast; ``size="real"`` is the size the bench reports on.

The named models of issue 11 live here (the Conformer OCR with its greedy loop, a BERT-like
encoder, ``nn.TransformerEncoder`` on the fused fast path, a ResNet-50 in code, LSTM and GRU
greedy decoders), with ViT, LLaMA and U-Net blocks; the smaller ones, one or two lifting
families each, in :mod:`neffkit.testing.torchscript_zoo_small`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from torch import Tensor, nn

from neffkit.testing.torchscript_zoo_base import (
    ZOO,
    Built,
    ZooEntry,
    convert,
    entry,
    seeded,
    zoo_inputs,
)

__all__ = ["ZOO", "BertLike", "GreedyGRUDecoder", "GreedyLSTMDecoder", "GreedyRNNDecoder",
           "ResNet50", "ZooEntry", "convert", "seeded", "zoo_inputs"]  # fmt: skip

# -- Conformer OCR ---------------------------------------------------------------------------------


@entry("script")
def build_conformer_ocr(size: str = "small") -> Built:
    """The Conformer OCR model with its scripted greedy loop (``neffkit.examples.conformer``)."""
    from neffkit.examples.conformer import build_conformer_ocr as build  # noqa: PLC0415

    if size == "real":
        model = build(width=128, max_len=75)
        return model, zoo_inputs((1, 1, 32, 128))
    model = build(d_model=32, num_heads=2, encoder_layers=1, decoder_layers=1, max_len=8)
    return model, zoo_inputs((1, 1, 32, 32))


# -- BERT-like encoder (own code) ------------------------------------------------------------------


class _BertLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o, self.n1 = nn.Linear(d, d), nn.LayerNorm(d, eps=1e-12)
        self.f1, self.f2, self.n2 = nn.Linear(d, ff), nn.Linear(ff, d), nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(0.1)

    def _split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / (q.size(-1) ** 0.5) + bias
        ctx = torch.matmul(self.drop(torch.softmax(scores, dim=-1)), v)
        ctx = ctx.transpose(1, 2).contiguous().flatten(2)
        x = self.n1(x + self.drop(self.o(ctx)))
        return self.n2(x + self.f2(nn.functional.gelu(self.f1(x))))


class BertLike(nn.Module):
    """Token ids + attention mask -> hidden states and a tanh-pooled first token (BERT's shape)."""

    def __init__(self, vocab: int, d: int, heads: int, ff: int, layers: int, max_pos: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_pos, d)
        self.typ, self.norm = nn.Embedding(2, d), nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList([_BertLayer(d, heads, ff) for _ in range(layers)])
        self.pool = nn.Linear(d, d)

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        pos = torch.arange(ids.size(1), device=ids.device).unsqueeze(0)
        x = self.norm(self.tok(ids) + self.pos(pos) + self.typ(torch.zeros_like(ids)))
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        return x, torch.tanh(self.pool(x[:, 0]))


@entry()
def build_bert_encoder(size: str = "small") -> Built:
    """A BERT-like encoder written with plain ops, masked attention, pooled output."""
    if size == "real":
        model = seeded(BertLike, 30522, 768, 12, 3072, 12, 512)
        ids = zoo_inputs(((2, 128), 30522))[0]
    else:
        model = seeded(BertLike, 100, 32, 4, 64, 2, 64)
        ids = zoo_inputs(((2, 12), 100))[0]
    mask = torch.ones_like(ids)
    mask[1, ids.size(1) // 2 :] = 0
    return model, (ids, mask)


class _TorchEncoder(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, layers: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, heads, ff, batch_first=True, activation="gelu")
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.enc(x)


@entry("trace", "script")
def build_torch_transformer_encoder(size: str = "small") -> Built:
    """``nn.TransformerEncoder`` in eval: the trace records the fused fast-path op (kept as
    ``aten``), the script keeps it behind a runtime branch."""
    if size == "real":
        return seeded(_TorchEncoder, 768, 12, 3072, 12), zoo_inputs((2, 128, 768))
    return seeded(_TorchEncoder, 32, 4, 64, 2), zoo_inputs((2, 10, 32))


# -- ResNet-50 in code -----------------------------------------------------------------------------


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = mid * 4
        self.c1, self.b1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.c2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.b2 = nn.BatchNorm2d(mid)
        self.c3, self.b3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.b2(self.c2(y)))
        return torch.relu(self.b3(self.c3(y)) + self.down(x))


class ResNet50(nn.Module):
    """ResNet-50's topology (bottleneck stages of 3, 4, 6, 3 blocks); ``width`` is the stem's
    channel count (64 in the original)."""

    def __init__(self, width: int = 64, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))  # fmt: skip
        blocks: list[nn.Module] = []
        cin = width
        for i, n in enumerate((3, 4, 6, 3)):
            mid = width * 2**i
            for j in range(n):
                blocks.append(_Bottleneck(cin, mid, 2 if j == 0 and i > 0 else 1))
                cin = mid * 4
        self.blocks = nn.Sequential(*blocks)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(cin, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


@entry()
def build_resnet50(size: str = "small") -> Built:
    """ResNet-50 built in code (no torchvision); small: width 8, 10 classes, 64x64 input."""
    if size == "real":
        return seeded(ResNet50, 64, 1000), zoo_inputs((1, 3, 224, 224))
    return seeded(ResNet50, 8, 10), zoo_inputs((1, 3, 64, 64))


# -- ViT, LLaMA, U-Net blocks ----------------------------------------------------------------------


class _ViT(nn.Module):
    def __init__(self, d: int = 32, patches: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, patches + 1, d) * 0.1)
        self.n1, self.qkv, self.o = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.n2, self.f1, self.f2 = nn.LayerNorm(d), nn.Linear(d, 64), nn.Linear(64, d)

    def forward(self, img: Tensor) -> Tensor:
        x = self.patch(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.size(0), -1, -1), x], dim=1) + self.pos
        b, t, d = x.shape
        q, k, v = self.qkv(self.n1(x)).view(b, t, 3, 4, d // 4).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                            v.transpose(1, 2))  # fmt: skip
        x = x + self.o(y.transpose(1, 2).reshape(b, t, d))
        x = x + self.f2(F.gelu(self.f1(self.n2(x)), approximate="tanh"))
        return x[:, 0]


@entry()
def build_vit(size: str = "small") -> Built:
    """A ViT block: patch conv, class token, position embedding, SDPA, tanh-GELU MLP."""
    return seeded(_ViT), zoo_inputs((2, 3, 16, 16))


class _RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(d) + 0.1 * torch.randn(d))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w


class _LlamaBlock(nn.Module):
    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.n1, self.n2 = _RMSNorm(d), _RMSNorm(d)
        self.wq, self.wk = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.wv, self.wo = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.w1, self.w3 = nn.Linear(d, 64, bias=False), nn.Linear(d, 64, bias=False)
        self.w2 = nn.Linear(64, d, bias=False)

    def _rope(self, x: Tensor) -> Tensor:
        t, half = x.size(2), self.hd // 2
        inv = 1.0 / (10000.0 ** (torch.arange(0, half, dtype=torch.float32) / half))
        ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None, :]
        cos, sin = torch.cos(ang).repeat(1, 2), torch.sin(ang).repeat(1, 2)
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        h = self.n1(x)
        q = self._rope(self.wq(h).view(b, t, self.heads, self.hd).transpose(1, 2))
        k = self._rope(self.wk(h).view(b, t, self.heads, self.hd).transpose(1, 2))
        v = self.wv(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        s = (q @ k.transpose(-1, -2) / self.hd**0.5).masked_fill(causal, float("-inf"))
        x = x + self.wo((s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.w2(F.silu(self.w1(self.n2(x))) * self.w3(self.n2(x)))


@entry()
def build_llama_block(size: str = "small") -> Built:
    """A LLaMA block: RMSNorm, rotary embeddings (sin/cos, rotate-half), causal mask, SwiGLU."""
    return seeded(_LlamaBlock), zoo_inputs((2, 6, 32))


class _UNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.d1, self.d2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.u1, self.out = nn.Conv2d(16, 8, 3, padding=1), nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = torch.relu(self.d1(x))
        b = torch.relu(self.d2(F.max_pool2d(a, 2)))
        y = torch.relu(self.u1(torch.cat([self.up(b), a], dim=1)))
        return self.out(y)


@entry()
def build_unet(size: str = "small") -> Built:
    """A two-level U-Net: pooling down, ConvTranspose2d up, skip concatenation."""
    return seeded(_UNet), zoo_inputs((1, 1, 16, 16))


# -- greedy RNN decoders ---------------------------------------------------------------------------


class GreedyRNNDecoder(nn.Module):
    """Encoder state -> greedy tokens: a recurrent layer run step by step, tokens grown with
    ``torch.cat``, stopping when every row has emitted EOS (``step`` is the LSTM or GRU)."""

    def __init__(self, vocab: int, hidden: int, max_len: int, eos: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.out = nn.Linear(hidden, vocab)
        self.max_len, self.eos = max_len, eos

    def step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step: output, hidden and cell state."""
        raise NotImplementedError

    def forward(self, h0: Tensor) -> Tensor:
        b = h0.size(1)
        tokens = torch.ones(b, 1, dtype=torch.long, device=h0.device)
        h, c = h0, torch.zeros_like(h0)
        done = torch.zeros(b, 1, dtype=torch.bool, device=h0.device)
        for _ in range(self.max_len):
            y, h, c = self.step(self.embed(tokens[:, -1:]), h, c)
            nxt = self.out(y[:, -1]).argmax(dim=-1, keepdim=True)
            nxt = nxt.masked_fill(done, self.eos)
            tokens = torch.cat([tokens, nxt], dim=1)
            done = done | (nxt == self.eos)
            if bool(done.all()):
                break
        return tokens[:, 1:]


class GreedyLSTMDecoder(GreedyRNNDecoder):
    """The greedy decoder on an ``nn.LSTM``."""

    def __init__(self, vocab: int, hidden: int, max_len: int, eos: int = 2) -> None:
        super().__init__(vocab, hidden, max_len, eos)
        self.rnn = nn.LSTM(hidden, hidden, batch_first=True)

    def step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One LSTM step."""
        y, (h, c) = self.rnn(x, (h, c))
        return y, h, c


class GreedyGRUDecoder(GreedyRNNDecoder):
    """The greedy decoder on an ``nn.GRU`` (the cell state is carried unchanged)."""

    def __init__(self, vocab: int, hidden: int, max_len: int, eos: int = 2) -> None:
        super().__init__(vocab, hidden, max_len, eos)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)

    def step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One GRU step."""
        y, h = self.rnn(x, h)
        return y, h, c


def _decoder(cls: type[GreedyRNNDecoder], size: str) -> Built:
    if size == "real":
        model = seeded(cls, 1000, 256, 50)
        return model, (zoo_inputs((1, 2, 256))[0] * 2,)
    model = seeded(cls, 13, 16, 10)
    return model, (zoo_inputs((1, 2, 16))[0] * 2,)


@entry("script")
def build_lstm_decoder(size: str = "small") -> Built:
    """A greedy LSTM decoder (scripted loop with a data-dependent break)."""
    return _decoder(GreedyLSTMDecoder, size)


@entry("script")
def build_gru_decoder(size: str = "small") -> Built:
    """A greedy GRU decoder (scripted loop with a data-dependent break)."""
    return _decoder(GreedyGRUDecoder, size)


# the smaller modules register themselves on import (after the named ones, so the bench
# lists those first)
from neffkit.testing import torchscript_zoo_small  # noqa: E402, F401, I001
