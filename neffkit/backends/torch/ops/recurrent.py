"""Lowerings of the recurrent ops RNN, LSTM and GRU.

torch's own ``nn.LSTM``/``nn.GRU`` order gates differently, have no peepholes, clip,
custom activations or GRU ``linear_before_reset=0``, so ``recurrent`` spells the ONNX
equations out step by step (one matmul for all input projections, then a loop over time),
with ``sequence_lens`` (a finished sequence keeps its state and outputs zeros), both
directions and both layouts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import arg
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node

RNN = "RNN"
LSTM = "LSTM"
GRU = "GRU"
_DEFAULT_ACTS = {RNN: ["Tanh"], LSTM: ["Sigmoid", "Tanh", "Tanh"], GRU: ["Sigmoid", "Tanh"]}

# default (alpha, beta) of the activations that take them
_ACT_DEFAULTS = {
    "affine": (1.0, 0.0),
    "leakyrelu": (0.01, 0.0),
    "thresholdedrelu": (1.0, 0.0),
    "scaledtanh": (1.0, 1.0),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.0, 0.0),
}

_KNOWN_ACTS = {"relu", "tanh", "sigmoid", "softsign", "softplus", *_ACT_DEFAULTS}


def activation(x: torch.Tensor, name: str, alpha: float, beta: float) -> torch.Tensor:
    """An ONNX RNN activation by its (lower-case) name."""
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "relu":
        return torch.relu(x)
    if name == "affine":
        return x * alpha + beta
    if name == "leakyrelu":
        return F.leaky_relu(x, alpha)
    if name == "thresholdedrelu":
        return torch.where(x > alpha, x, torch.zeros_like(x))
    if name == "scaledtanh":
        return torch.tanh(x * beta) * alpha
    if name == "hardsigmoid":
        return (x * alpha + beta).clamp(0.0, 1.0)
    if name == "elu":
        return F.elu(x, alpha)
    if name == "softsign":
        return x / (1 + x.abs())
    return F.softplus(x)


def _act(
    x: torch.Tensor, k: int, acts: list[str], al: list[float], be: list[float], clip: float
) -> torch.Tensor:
    if clip > 0:
        x = x.clamp(-clip, clip)
    return activation(x, acts[k], al[k], be[k])


def _direction(
    kind: str,
    x: torch.Tensor,
    w: torch.Tensor,
    r: torch.Tensor,
    b: torch.Tensor | None,
    p: torch.Tensor | None,
    h: torch.Tensor,
    c: torch.Tensor,
    lens: torch.Tensor | None,
    reverse: bool,
    acts: list[str],
    al: list[float],
    be: list[float],
    clip: float,
    lbr: bool,
    input_forget: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One direction over ``x`` ``[T, B, I]``: ``(Y [T, B, H], last h, last c)``."""
    t_len = x.shape[0]
    hs = r.shape[1]
    xw = torch.matmul(x, w.t())
    rb = torch.zeros([r.shape[0]], dtype=x.dtype, device=x.device)
    if b is not None:
        xw = xw + b[: w.shape[0]]
        rb = b[w.shape[0] :]
    ys: list[torch.Tensor] = []
    for s in range(t_len):
        t = t_len - 1 - s if reverse else s
        hr = torch.matmul(h, r.t())
        c_new = c
        if kind == "RNN":
            h_new = _act(xw[t] + hr + rb, 0, acts, al, be, clip)
        elif kind == "GRU":
            g = xw[t]
            z = _act(g[:, :hs] + hr[:, :hs] + rb[:hs], 0, acts, al, be, clip)
            rr = _act(
                g[:, hs : 2 * hs] + hr[:, hs : 2 * hs] + rb[hs : 2 * hs], 0, acts, al, be, clip
            )
            if lbr:
                cand = g[:, 2 * hs :] + rr * (hr[:, 2 * hs :] + rb[2 * hs :])
            else:
                cand = g[:, 2 * hs :] + torch.matmul(rr * h, r[2 * hs :].t()) + rb[2 * hs :]
            hh = _act(cand, 1, acts, al, be, clip)
            h_new = (1 - z) * hh + z * h
        else:
            g = xw[t] + hr + rb
            gi, go, gf, gc = g[:, :hs], g[:, hs : 2 * hs], g[:, 2 * hs : 3 * hs], g[:, 3 * hs :]
            if p is not None:
                gi = gi + p[:hs] * c
                gf = gf + p[2 * hs :] * c
            i = _act(gi, 0, acts, al, be, clip)
            f = 1 - i if input_forget else _act(gf, 0, acts, al, be, clip)
            c_new = f * c + i * _act(gc, 1, acts, al, be, clip)
            if p is not None:
                go = go + p[hs : 2 * hs] * c_new
            o = _act(go, 0, acts, al, be, clip)
            h_new = o * _act(c_new, 2, acts, al, be, clip)
        if lens is not None:
            live = (lens > t).reshape(-1, 1)
            h = torch.where(live, h_new, h)
            c = torch.where(live, c_new, c)
            ys.append(torch.where(live, h_new, torch.zeros_like(h_new)))
        else:
            h, c = h_new, c_new
            ys.append(h_new)
    if reverse:
        ys.reverse()
    return torch.stack(ys, 0), h, c


def recurrent(
    kind: str,
    x: torch.Tensor,
    w: torch.Tensor,
    r: torch.Tensor,
    b: torch.Tensor | None,
    lens: torch.Tensor | None,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    p: torch.Tensor | None,
    direction: str,
    layout: int,
    acts: list[str],
    alphas: list[float],
    betas: list[float],
    clip: float,
    lbr: bool,
    input_forget: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ONNX RNN / LSTM / GRU: ``(Y, Y_h, Y_c)`` (``Y_c`` is meaningful for LSTM only)."""
    if layout == 1:
        x = x.transpose(0, 1)
        if h0 is not None:
            h0 = h0.transpose(0, 1)
        if c0 is not None:
            c0 = c0.transpose(0, 1)
    dirs = w.shape[0]
    hs = r.shape[2]
    zeros = torch.zeros([dirs, x.shape[1], hs], dtype=x.dtype, device=x.device)
    h_init = zeros if h0 is None else h0
    c_init = zeros if c0 is None else c0
    n_act = len(acts) // dirs
    ys: list[torch.Tensor] = []
    hn: list[torch.Tensor] = []
    cn: list[torch.Tensor] = []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        lo = d * n_act
        bd: torch.Tensor | None = None
        if b is not None:
            bd = b[d]
        pd: torch.Tensor | None = None
        if p is not None:
            pd = p[d]
        y, h, c = _direction(
            kind,
            x,
            w[d],
            r[d],
            bd,
            pd,
            h_init[d],
            c_init[d],
            lens,
            reverse,
            acts[lo : lo + n_act],
            alphas[lo : lo + n_act],
            betas[lo : lo + n_act],
            clip,
            lbr,
            input_forget,
        )
        ys.append(y)
        hn.append(h)
        cn.append(c)
    y_all = torch.stack(ys, 1)
    h_all = torch.stack(hn, 0)
    c_all = torch.stack(cn, 0)
    if layout == 1:
        return y_all.permute(2, 0, 1, 3), h_all.transpose(0, 1), c_all.transpose(0, 1)
    return y_all, h_all, c_all


def _activations(node: Node, kind: str, dirs: int) -> tuple[list[str], list[float], list[float]]:
    acts = [a.decode() if isinstance(a, bytes) else a for a in node.attr("activations", []) or []]
    per_dir = len(_DEFAULT_ACTS[kind])
    if not acts:
        acts = _DEFAULT_ACTS[kind] * dirs
    elif len(acts) == per_dir and dirs == 2:
        acts = acts * 2
    acts = [a.lower() for a in acts]
    for a in acts:
        if a not in _KNOWN_ACTS:
            raise Unsupported(f"{node.op_type} activation {a!r}")
    alphas = list(node.attr("activation_alpha", []) or [])
    betas = list(node.attr("activation_beta", []) or [])
    # the alpha / beta lists are consumed in order by the activations that take them
    out_a: list[float] = []
    out_b: list[float] = []
    for a in acts:
        da, db = _ACT_DEFAULTS.get(a, (0.0, 0.0))
        if a in _ACT_DEFAULTS and alphas:
            da = float(alphas.pop(0))
        if a in ("affine", "scaledtanh", "hardsigmoid") and betas:
            db = float(betas.pop(0))
        out_a.append(da)
        out_b.append(db)
    return acts, out_a, out_b


def _lower(ctx: LoweringContext, node: Node, args: list[Arg], kind: str) -> Lowered:
    direction = node.attr("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = 2 if direction == "bidirectional" else 1
    acts, alphas, betas = _activations(node, kind, dirs)
    clip = float(node.attr("clip", 0.0) or 0.0)
    layout = int(node.attr("layout", 0))
    lbr = bool(node.attr("linear_before_reset", 0))
    input_forget = bool(node.attr("input_forget", 0))
    p = arg(args, 7) if kind == LSTM else None
    c0 = arg(args, 6) if kind == LSTM else None
    r = ctx.call(
        recurrent,
        kind,
        args[0],
        args[1],
        args[2],
        arg(args, 3),
        arg(args, 4),
        arg(args, 5),
        c0,
        p,
        direction,
        layout,
        acts,
        alphas,
        betas,
        clip,
        lbr,
        input_forget,
    )
    n = len(node.outputs)
    return [ctx.getitem(r, i) for i in range(min(n, 3))]


@lowers("RNN")
def rnn(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # RNN(X, W, R, B, sequence_lens, initial_h) -> recurrent(RNN, ...)
    return _lower(ctx, node, args, RNN)


@lowers("LSTM")
def lstm(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # LSTM(X, W, R, B, sequence_lens, initial_h, initial_c, P) -> recurrent(LSTM, ...)
    return _lower(ctx, node, args, LSTM)


@lowers("GRU")
def gru(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # GRU(X, W, R, B, sequence_lens, initial_h) -> recurrent(GRU, ...)
    return _lower(ctx, node, args, GRU)
