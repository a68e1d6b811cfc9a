"""A zoo of real torch modules for the TorchScript frontend's tests and coverage bench.

Each entry is a function ``build(size) -> (module, example_inputs)`` returning an eager
``nn.Module`` in eval mode with deterministic weights and a tuple of example tensors, plus the
forms it is meant to be converted in (``script``, ``trace`` or both: a module with data-dependent
control flow is only scripted, one whose trace records a fused op is kept for that).
``size="small"`` keeps tests fast; ``size="real"`` is the size the bench reports on.

The named models of issue 11 live here (the Conformer OCR with its greedy loop, a BERT-like
encoder, ``nn.TransformerEncoder`` on the fused fast path, a ResNet-50 in code, LSTM and GRU
greedy decoders); the smaller ones, one or two lifting families each, in
:mod:`neffkit.testing.torchscript_zoo_small`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ZOO", "ZooEntry", "convert", "seeded", "zoo_inputs"]

Built = tuple[nn.Module, tuple[Any, ...]]


@dataclass(frozen=True)
class ZooEntry:
    """One zoo module: its builder and the forms (``script``/``trace``) it is converted in."""

    name: str
    build: Callable[[str], Built]
    forms: tuple[str, ...]


ZOO: dict[str, ZooEntry] = {}


def entry(*forms: str) -> Callable[[Callable[[str], Built]], Callable[[str], Built]]:
    """Registers a builder under its function name (without a leading ``build_``)."""

    def register(fn: Callable[[str], Built]) -> Callable[[str], Built]:
        name = fn.__name__.removeprefix("build_")
        ZOO[name] = ZooEntry(name, fn, forms or ("script", "trace"))
        return fn

    return register


def seeded(cls: Callable[..., nn.Module], *args: Any, seed: int = 0, **kwargs: Any) -> nn.Module:
    """``cls(*args, **kwargs)`` built under a fixed seed (the caller's RNG untouched), with
    non-trivial normalization statistics, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = cls(*args, **kwargs)
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                    m.running_mean.uniform_(-0.3, 0.3)
                    m.running_var.uniform_(0.5, 1.5)
    return module.eval()


def zoo_inputs(*shapes: Any, seed: int = 1) -> tuple[Tensor, ...]:
    """Deterministic example inputs: a shape gives float32 normals, ``(shape, high)`` int64 in
    ``[0, high)``, ``(shape, "bool")`` a bool mask."""
    g = torch.Generator().manual_seed(seed)
    out: list[Tensor] = []
    for s in shapes:
        if isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], tuple):
            shape, kind = s
            if kind == "bool":
                out.append(torch.rand(*shape, generator=g) > 0.3)
            else:
                out.append(torch.randint(0, kind, shape, generator=g))
        else:
            out.append(torch.randn(*s, generator=g))
    return tuple(out)


def convert(module: nn.Module, form: str, example: tuple[Any, ...]) -> Any:
    """The module scripted or traced (under no_grad, as the fused fast paths need)."""
    module.eval()
    if form == "script":
        return torch.jit.script(module)
    with torch.no_grad():
        return torch.jit.trace(module, example, check_trace=False)


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


def _register_small() -> None:
    from neffkit.testing import torchscript_zoo_small  # noqa: F401, PLC0415 - registers


_register_small()
