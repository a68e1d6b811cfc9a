"""The zoo's smaller modules (see :mod:`neffkit.testing.torchscript_zoo`): real blocks people
write (MobileNet, TCN, FPN, MoE routing, CTC post-processing..), each touching one
or two lifting families; registered on import by the zoo."""

from __future__ import annotations

import torch
import torch.nn.functional as fn
from torch import Tensor, nn

from neffkit.testing.torchscript_zoo_base import Built, entry, seeded, zoo_inputs

__all__: list[str] = []


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.GELU(), nn.Dropout(0.2), nn.Linear(64, 64),
                                 nn.Tanh(), nn.Linear(64, 5), nn.LogSoftmax(dim=-1))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@entry()
def build_mlp(size: str = "small") -> Built:
    """An MLP classifier: Linear, GELU, Dropout (eval), Tanh, LogSoftmax."""
    return seeded(_MLP), zoo_inputs((4, 20))


class _CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = fn.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
        y = fn.avg_pool2d(torch.relu(self.b2(self.c2(y))), 2, ceil_mode=True)
        y = fn.interpolate(self.head(y), scale_factor=4.0, mode="nearest")
        return torch.sigmoid(y)


@entry()
def build_cnn_pool_upsample(size: str = "small") -> Built:
    """Conv + BatchNorm + max/avg pooling, then nearest upsampling back (a segmentation head)."""
    return seeded(_CNN), zoo_inputs((2, 3, 16, 16))


class _MobileBlock(nn.Module):
    def __init__(self, c: int = 16, expand: int = 4) -> None:
        super().__init__()
        h = c * expand
        self.pw1, self.b1 = nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h)
        self.dw, self.b2 = nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h)
        self.se1, self.se2 = nn.Conv2d(h, 8, 1), nn.Conv2d(8, h, 1)
        self.pw2, self.b3 = nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: Tensor) -> Tensor:
        y = fn.relu6(self.b1(self.pw1(x)))
        y = fn.hardswish(self.b2(self.dw(y)))
        s = fn.adaptive_avg_pool2d(y, 1)
        y = y * fn.hardsigmoid(self.se2(torch.relu(self.se1(s))))
        return x + self.b3(self.pw2(y))


@entry()
def build_mobilenet_block(size: str = "small") -> Built:
    """A MobileNetV3 inverted residual: depthwise conv, ReLU6, hardswish, squeeze-excite."""
    return seeded(_MobileBlock), zoo_inputs((1, 16, 12, 12))


class _MaskedAttention(nn.Module):
    def __init__(self, d: int = 24, heads: int = 3) -> None:
        super().__init__()
        self.heads, self.qkv, self.o = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        pad = torch.arange(t, device=x.device)[None, :] >= lengths[:, None]  # [b, t]
        scores = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        return self.o(y).masked_fill(pad[:, :, None], 0.0)


@entry()
def build_masked_attention(size: str = "small") -> Built:
    """Self-attention with a key-padding mask built from int lengths (masked_fill with -inf)."""
    return seeded(_MaskedAttention), (zoo_inputs((3, 7, 24))[0], torch.tensor([7, 4, 1]))


class _EmbedPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(50, 16, padding_idx=0), nn.Linear(16, 3)

    def forward(self, ids: Tensor) -> Tensor:
        mask = (ids != 0).unsqueeze(-1).float()
        pooled = (self.emb(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.fc(pooled)


@entry()
def build_embedding_bag(size: str = "small") -> Built:
    """Bag of embeddings: int ids, padding mask, masked mean pooling, a classifier."""
    ids = zoo_inputs(((4, 9), 50))[0]
    ids[:, 6:] = 0
    return seeded(_EmbedPool), (ids,)


class _Norms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln, self.gn = nn.LayerNorm([8, 6]), nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm1d(8, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        a = self.ln(x)
        b = self.gn(x)
        c = self.inorm(x)
        d = fn.normalize(x, dim=-1)
        return a + b * c + d


@entry()
def build_norms(size: str = "small") -> Built:
    """Layer, group and instance norm and L2 normalize over one [N, C, L] tensor."""
    m = seeded(_Norms)
    with torch.no_grad():
        m.gn.weight.uniform_(0.5, 1.5)
        m.inorm.bias.uniform_(-0.5, 0.5)
    return m, zoo_inputs((2, 8, 6))


class _Reductions(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        a = x.sum(-1) + x.mean(dim=(2,)) + x.amax(2, keepdim=True).squeeze(-1)
        b = torch.logsumexp(x, dim=-1) - x.var(-1) + x.std(-1, unbiased=False)
        c = x.abs().prod(2) + torch.linalg.vector_norm(x, dim=-1) + x.norm(1.0, -1)
        mx, arg = x.min(dim=-1)
        return a, b, c + mx, arg


@entry()
def build_reductions(size: str = "small") -> Built:
    """sum/mean/amax/min with indices, logsumexp, var/std, prod, vector norms."""
    return seeded(_Reductions), zoo_inputs((3, 4, 5))


class _Slicing(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a = x[:, -3:, ::2] + x[:, :3, 1::2]
        b = x[..., -1] * x[:, -2].sum(-1, keepdim=True)
        c = x.narrow(2, 1, 3)[:, 1:-1].transpose(-1, -2).flip(-1)
        return a, b, torch.cat([c, c[..., :1]], dim=-1)


@entry()
def build_slicing(size: str = "small") -> Built:
    """Slicing with negative dims and indices, open ends, steps, narrow, flip."""
    return seeded(_Slicing), zoo_inputs((2, 6, 6))


class _IntBool(nn.Module):
    def forward(self, ids: Tensor, keep: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        shifted = (ids * 3 + 1) % 7 - ids // 2
        y = torch.where(keep, x, -x) * shifted.float()
        return y, (shifted > 2) & keep | ~keep


@entry()
def build_int_bool_inputs(size: str = "small") -> Built:
    """int64 and bool graph inputs: integer arithmetic, floor division, modulo, logic."""
    ids, keep, x = zoo_inputs(((4, 5), 10), ((4, 5), "bool"), (4, 5))
    return seeded(_IntBool), (ids, keep, x)


class _LoopInIf(nn.Module):
    def forward(self, x: Tensor, steps: int) -> Tensor:
        if bool(x.mean() > 0):
            for i in range(steps):
                x = x * 0.5 + float(i)
        else:
            x = -x
        return x


@entry("script")
def build_loop_in_if(size: str = "small") -> Built:
    """A scripted loop (int trip count input) inside a data-dependent if."""
    x = zoo_inputs((3, 4))[0].abs()
    return _LoopInIf().eval(), (x, 3)


class _WhileRefine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.step = nn.Linear(6, 6)

    def forward(self, x: Tensor) -> tuple[Tensor, int]:
        n = 0
        while bool(x.norm() > 1.0) and n < 20:
            x = torch.tanh(self.step(x)) * 0.7
            n += 1
        return x, n


@entry("script")
def build_while_refine(size: str = "small") -> Built:
    """A scripted while loop on a data condition, with an int counter returned."""
    return seeded(_WhileRefine), (zoo_inputs((2, 6))[0] * 3,)


class _Positions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Embedding(32, 8)

    def forward(self, ids: Tensor) -> Tensor:
        mask = ids.ne(0).long()
        pos = torch.cumsum(mask, dim=1) * mask  # RoBERTa's position ids from the padding mask
        return self.pos(pos).masked_fill(mask.unsqueeze(-1) == 0, 0.0)


@entry()
def build_position_ids(size: str = "small") -> Built:
    """RoBERTa-style position ids: cumsum of the padding mask, masked_fill."""
    ids = zoo_inputs(((3, 8), 9))[0]
    ids[0, :3] = 0
    return seeded(_Positions), (ids,)


class _TopKRouter(nn.Module):
    def __init__(self, d: int = 12, experts: int = 4) -> None:
        super().__init__()
        self.gate = nn.Linear(d, experts)
        self.w = nn.Parameter(torch.randn(experts, d, d) * 0.2)

    def forward(self, x: Tensor) -> Tensor:
        probs = self.gate(x).softmax(-1)
        top, idx = probs.topk(2, dim=-1)  # [n, 2]
        top = top / top.sum(-1, keepdim=True)
        w = self.w.index_select(0, idx.reshape(-1)).view(x.size(0), 2, x.size(1), x.size(1))
        y = torch.einsum("nd,nkde->nke", x, w)
        return (y * top.unsqueeze(-1)).sum(1) + torch.gather(probs, 1, idx).sum(-1, keepdim=True)


@entry()
def build_moe_router(size: str = "small") -> Built:
    """Mixture-of-experts routing: softmax, topk, index_select, gather, einsum."""
    return seeded(_TopKRouter), zoo_inputs((5, 12))


class _WhereClamp(nn.Module):
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        a = torch.where(x > y, x - y, torch.zeros_like(x)).clamp(max=1.0)
        b = torch.clamp(y, min=-0.5) + torch.clamp_min(x, 0.2) - x.clamp_max(0.1)
        return torch.where(a > 0.5, a, b) + torch.maximum(x, y) - torch.minimum(x, y)


@entry()
def build_where_clamp(size: str = "small") -> Built:
    """where, clamp with one or both bounds, elementwise maximum/minimum."""
    return _WhereClamp().eval(), zoo_inputs((3, 4), (3, 4))


class _TCN(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.inp = nn.Conv1d(4, c, 1)
        self.convs = nn.ModuleList([nn.Conv1d(c, c, 3, dilation=d) for d in (1, 2, 4)])

    def forward(self, x: Tensor) -> Tensor:
        x = self.inp(x)
        for conv in self.convs:
            d = conv.dilation[0]
            x = x + torch.relu(conv(fn.pad(x, [2 * d, 0])))  # causal: left padding only
        return x[:, :, -1]


@entry()
def build_tcn(size: str = "small") -> Built:
    """A temporal conv net: dilated causal Conv1d with left padding, residuals, last step."""
    return seeded(_TCN), zoo_inputs((2, 4, 20))


class _BiGRUClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 12)
        self.gru = nn.GRU(12, 10, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(20, 4)

    def forward(self, ids: Tensor) -> Tensor:
        out, _ = self.gru(self.emb(ids))
        return self.fc(torch.max(out, dim=1)[0])


@entry()
def build_bigru_classifier(size: str = "small") -> Built:
    """A text classifier: embedding, 2-layer bidirectional GRU, max pooling over time."""
    return seeded(_BiGRUClassifier), (zoo_inputs(((3, 7), 30))[0],)


class _LSTMTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y, (h, c) = self.lstm(x, (h, c))
        return fn.log_softmax(self.fc(y), dim=-1), h, c


@entry()
def build_lstm_tagger(size: str = "small") -> Built:
    """A sequence tagger: LSTM with given initial state, per-step log-softmax."""
    return seeded(_LSTMTagger), zoo_inputs((2, 5, 6), (1, 2, 8), (1, 2, 8))


class _CTCGreedy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(10, 6)

    def forward(self, feats: Tensor) -> Tensor:
        best = self.proj(feats).argmax(-1)  # [b, t]
        prev = torch.cat([torch.full_like(best[:, :1], -1), best[:, :-1]], dim=1)
        keep = (best != prev) & (best != 0)
        return torch.where(keep, best, torch.full_like(best, -1))


@entry()
def build_ctc_greedy(size: str = "small") -> Built:
    """CTC greedy post-processing: argmax, shifted compare, blank removal as a mask (int out)."""
    return seeded(_CTCGreedy), zoo_inputs((2, 12, 10))


class _FPN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)
        self.l1, self.l2 = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        top = fn.interpolate(self.l2(b), size=a.shape[-2:], mode="bilinear", align_corners=False)
        return self.l1(a) + top


@entry()
def build_fpn_bilinear(size: str = "small") -> Built:
    """A feature-pyramid merge: bilinear upsampling to the finer map's size, lateral add."""
    return seeded(_FPN), zoo_inputs((1, 3, 16, 16))


class _PixelShuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.ps = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.ps(self.conv(x)) + fn.interpolate(x.mean(1, keepdim=True), scale_factor=2.0)


@entry()
def build_super_resolution(size: str = "small") -> Built:
    """A super-resolution head: conv then pixel shuffle, plus an upsampled residual."""
    return seeded(_PixelShuffle), zoo_inputs((1, 3, 8, 8))


class _Bilinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.randn(6, 6) * 0.3)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        scores = torch.einsum("bid,de,bje->bij", a, self.u, b)
        return torch.baddbmm(scores, a, b.transpose(1, 2), alpha=0.5) + torch.bmm(a, b.mT)


@entry()
def build_bilinear_scores(size: str = "small") -> Built:
    """Bilinear attention scores: three-operand einsum, baddbmm, bmm, ``.mT``."""
    return seeded(_Bilinear), zoo_inputs((2, 4, 6), (2, 5, 6))


class _OneHot(nn.Module):
    def forward(self, labels: Tensor, logits: Tensor) -> Tensor:
        target = fn.one_hot(labels, 5).float() * 0.9 + 0.02
        return -(target * fn.log_softmax(logits, -1)).sum(-1).mean()


@entry()
def build_label_smoothing_loss(size: str = "small") -> Built:
    """A label-smoothed cross entropy: one_hot, log_softmax, mean (a scalar out)."""
    labels, logits = zoo_inputs(((6,), 5), (6, 5))
    return _OneHot().eval(), (labels, logits)


class _EarlyExit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: Tensor, threshold: float) -> Tensor:
        h = torch.relu(self.a(x))
        p = self.head(h).softmax(-1)
        if bool(p.max() > threshold):
            return p
        h = torch.relu(self.b(h)) + h
        return self.head(h).softmax(-1)


@entry("script")
def build_early_exit(size: str = "small") -> Built:
    """An early-exit classifier: a data-dependent return on a float threshold input."""
    return seeded(_EarlyExit), (zoo_inputs((2, 8))[0], 0.5)


class _Conv1dSpeech(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(16, 16, 5, padding=2, groups=16)
        self.pw, self.norm = nn.Conv1d(16, 16, 1), nn.BatchNorm1d(16)

    def forward(self, spec: Tensor) -> Tensor:
        x = torch.log(spec.clamp(min=1e-5))
        x = x - x.mean(dim=-1, keepdim=True)
        x = fn.glu(torch.cat([self.pw(self.conv(x)), self.norm(x)], dim=1), dim=1)
        return fn.avg_pool1d(fn.elu(x), 2).squeeze(0)


@entry()
def build_speech_frontend(size: str = "small") -> Built:
    """A speech front end: log-mel clamp/log, mean normalization, depthwise Conv1d, GLU."""
    return seeded(_Conv1dSpeech), (zoo_inputs((1, 16, 20))[0].abs(),)


class _Chunked(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b, c = x.chunk(3, dim=-1)
        parts = torch.split(x, [2, 4], dim=1)
        y = torch.stack([a, b, c], 0).sum(0) * parts[0].mean()
        tiled = y.unsqueeze(1).expand(-1, 2, -1, -1).reshape(-1, y.size(-1))
        return tiled, parts[1].permute(2, 0, 1)


@entry()
def build_chunk_stack(size: str = "small") -> Built:
    """chunk, split with sizes, stack, expand with -1, reshape with -1, permute."""
    return _Chunked().eval(), zoo_inputs((2, 6, 9))


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.cell = nn.GRUCell(8, 8)
        self.lstm_cell = nn.LSTMCell(8, 8)

    def forward(self, ids: Tensor) -> Tensor:
        h = torch.zeros(ids.size(0), 8)
        c = torch.zeros(ids.size(0), 8)
        x = self.emb(ids)
        for t in range(ids.size(1)):
            h = self.cell(x[:, t], h)
            h, c = self.lstm_cell(h, (h, c))
        return h


@entry()
def build_rnn_cells(size: str = "small") -> Built:
    """GRUCell and LSTMCell stepped over time by a Python loop (unrolled when traced)."""
    return seeded(_Gated), (zoo_inputs(((2, 4), 20))[0],)
