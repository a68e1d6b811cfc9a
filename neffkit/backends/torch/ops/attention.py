"""Lowerings of the attention ops: Attention, RotaryEmbedding, CausalConvWithState,
LinearAttention and (ai.onnx.preview) FlexAttention.

Attention follows the ONNX reference step by step (``attention`` below): 3-D inputs are split
into heads, ``Q`` and ``K`` are each scaled by ``sqrt(scale)``, the causal / window frontier is
offset by the cache length, a fully masked row gives zeros (not NaN), and
``qk_matmul_output_mode`` picks which intermediate the fourth output shows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import arg, torch_dtype
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, S, H * D] -> [B, H, S, D]``."""
    return x.reshape([x.shape[0], x.shape[1], heads, -1]).transpose(1, 2)


def _frontier(
    q_len: int, kv_len: int, offset: torch.Tensor | None, past: int, device: torch.device
) -> torch.Tensor:
    """``(query index + offset) - key index``: ``[q, kv]``, or ``[B, 1, q, kv]`` per batch."""
    i = torch.arange(q_len, device=device).reshape(q_len, 1)
    j = torch.arange(kv_len, device=device).reshape(1, kv_len)
    if offset is None:
        return i + past - j
    d = i.unsqueeze(0) + offset.reshape(-1, 1, 1).to(torch.int64) - j.unsqueeze(0)
    return d.unsqueeze(1)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    past_k: torch.Tensor | None,
    past_v: torch.Tensor | None,
    nonpad: torch.Tensor | None,
    scale: float,
    is_causal: bool,
    q_heads: int,
    kv_heads: int,
    softmax_dtype: torch.dtype | None,
    softcap: float,
    qk_mode: int,
    left: int,
    right: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ONNX Attention: ``(Y, present_key, present_value, qk_matmul_output)``.

    ``scale`` <= 0 means 1/sqrt(head size); ``softcap`` <= 0 means none.
    """
    three_d = q.dim() == 3
    if three_d:
        q = _split_heads(q, q_heads)
        k = _split_heads(k, kv_heads)
        v = _split_heads(v, kv_heads)
    if scale <= 0:
        scale = 1.0 / math.sqrt(q.shape[3])
    s = torch.tensor(math.sqrt(scale), dtype=q.dtype, device=q.device)
    if past_k is not None:
        k = torch.cat([past_k, k], 2)
    if past_v is not None:
        v = torch.cat([past_v, v], 2)
    present_k, present_v = k, v
    q_len, kv_len = q.shape[2], k.shape[2]
    zero = torch.zeros([q_len, kv_len], dtype=q.dtype, device=q.device)
    neg_inf = torch.tensor(float("-inf"), dtype=q.dtype, device=q.device)
    if mask is not None:
        pad = kv_len - mask.shape[-1]
        if pad > 0:
            if mask.dtype == torch.bool:
                mask = F.pad(mask, [0, pad], value=False)
            else:
                mask = F.pad(mask, [0, pad], value=float("-inf"))
        if mask.dtype == torch.bool:
            mask = torch.where(mask, torch.zeros_like(neg_inf), neg_inf)
    past = past_k.shape[2] if past_k is not None else 0
    offset: torch.Tensor | None = None
    if past_k is None and nonpad is not None:
        offset = nonpad.reshape(-1) - q_len
    bias = zero
    if mask is not None:
        bias = zero + mask
    if is_causal:
        allowed = _frontier(q_len, kv_len, offset, past, q.device) >= 0
        bias = bias + torch.where(allowed, torch.zeros_like(neg_inf), neg_inf)
    if left >= 0 or right >= 0:
        diff = _frontier(q_len, kv_len, offset, past, q.device)
        allowed = torch.ones_like(diff, dtype=torch.bool)
        if left >= 0:
            allowed = allowed & (diff <= left)
        if right >= 0:
            allowed = allowed & (-diff <= right)
        bias = bias + torch.where(allowed, torch.zeros_like(neg_inf), neg_inf)
    if nonpad is not None:
        keep = torch.arange(kv_len, device=q.device).reshape(1, kv_len) < nonpad.reshape(-1, 1)
        pm = torch.where(keep, torch.zeros_like(neg_inf), neg_inf)
        bias = bias + pm.reshape(q.shape[0], 1, 1, kv_len)
    hq, hk = q.shape[1], k.shape[1]
    if hq != hk and hq % hk == 0 and hk == v.shape[1]:
        k = k.repeat_interleave(hq // hk, 1)
        v = v.repeat_interleave(hq // hk, 1)
    qk = torch.matmul(q * s, k.transpose(2, 3) * s)
    if softcap > 0:
        qk = torch.tanh(qk / softcap) * softcap
    scores = qk + bias
    qk_out = scores if qk_mode == 2 else qk
    if softmax_dtype is not None:
        scores = scores.to(softmax_dtype)
    top = scores.amax(-1, keepdim=True)
    top = torch.where(torch.isneginf(top), torch.zeros_like(top), top)
    e = torch.exp(scores - top)
    if e.dtype == torch.bfloat16 and e.shape[-1] <= 64:
        # short rows: sum left to right rounding each partial sum, as the reference does in
        # bfloat16 (longer rows accumulate in float32: faster, and more accurate)
        total = e.narrow(-1, 0, 1)
        for j in range(1, e.shape[-1]):
            total = total + e.narrow(-1, j, 1)
    else:
        total = e.sum(-1, keepdim=True)
    probs = e / torch.where(total == 0, torch.ones_like(total), total)
    dead = torch.isneginf(bias.amax(-1, keepdim=True))
    probs = torch.where(dead, torch.zeros_like(probs), probs)
    if qk_mode == 3:
        qk_out = probs
    y = torch.matmul(probs.to(q.dtype), v)
    if three_d:
        y = y.transpose(1, 2).reshape([y.shape[0], y.shape[2], -1])
    return y, present_k, present_v, qk_out.to(q.dtype)


@lowers("Attention")
def attention_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Attention(Q, K, V, mask, past_key, past_value, nonpad_kv_seqlen) -> attention(...)
    sp = node.attr("softmax_precision", None)
    r = ctx.call(
        attention,
        args[0],
        args[1],
        args[2],
        arg(args, 3),
        arg(args, 4),
        arg(args, 5),
        arg(args, 6),
        float(node.attr("scale", 0.0) or 0.0),
        bool(node.attr("is_causal", 0)),
        int(node.attr("q_num_heads", 0)),
        int(node.attr("kv_num_heads", 0)),
        None if sp is None else torch_dtype(int(sp)),
        float(node.attr("softcap", 0.0)),
        int(node.attr("qk_matmul_output_mode", 0)),
        int(node.attr("left_window_size", -1)),
        int(node.attr("right_window_size", -1)),
    )
    return [ctx.getitem(r, i) for i in range(len(node.outputs))]


def rotary_embedding(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    position_ids: torch.Tensor | None,
    interleaved: bool,
    rotary_dim: int,
    num_heads: int,
) -> torch.Tensor:
    """ONNX RotaryEmbedding on ``[B, H, S, D]`` or ``[B, S, H * D]`` input."""
    shape = x.shape
    if x.dim() == 4:
        x = x.transpose(1, 2)
    else:
        x = x.reshape([x.shape[0], x.shape[1], num_heads, -1])
    d = x.shape[3]
    if rotary_dim == 0:
        rotary_dim = d
    rot, keep = x[..., :rotary_dim], x[..., rotary_dim:]
    if position_ids is not None:
        cos = cos[position_ids]
        sin = sin[position_ids]
    cos = cos.unsqueeze(2)
    sin = sin.unsqueeze(2)
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        half = rotary_dim // 2
        x1, x2 = rot[..., :half], rot[..., half:]
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    if interleaved:
        rot = torch.stack([real, imag], -1).reshape(rot.shape)
    else:
        rot = torch.cat([real, imag], -1)
    y = torch.cat([rot, keep], -1)
    if len(shape) == 3:
        return y.reshape(shape)
    return y.transpose(1, 2)


@lowers("RotaryEmbedding")
def rotary_embedding_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # RotaryEmbedding(x, cos_cache, sin_cache, position_ids) -> rotary_embedding(...)
    return ctx.call(
        rotary_embedding,
        args[0],
        args[1],
        args[2],
        arg(args, 3),
        bool(node.attr("interleaved", 0)),
        int(node.attr("rotary_embedding_dim", 0)),
        int(node.attr("num_heads", 0)),
    )


def causal_conv_with_state(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    past: torch.Tensor | None,
    silu: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv1d over ``cat(past_state, x)``; returns ``(y, present_state)``."""
    k = w.shape[2]
    if past is None:
        past = torch.zeros([x.shape[0], x.shape[1], k - 1], dtype=x.dtype, device=x.device)
    padded = torch.cat([past, x], 2)
    y = torch.conv1d(padded, w, b, [1], [0], [1], x.shape[1])
    if silu:
        y = F.silu(y.float()).to(x.dtype)
    return y, padded[:, :, padded.shape[2] - (k - 1) :]


@lowers("CausalConvWithState")
def causal_conv_with_state_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # CausalConvWithState(x, w, b, past_state) -> causal_conv_with_state(...)
    act = node.attr("activation", "none")
    act = act.decode() if isinstance(act, bytes) else act
    if act not in ("none", "silu", "swish"):
        raise Unsupported(f"CausalConvWithState activation {act!r}")
    r = ctx.call(
        causal_conv_with_state, args[0], args[1], arg(args, 2), arg(args, 3), act != "none"
    )
    return [ctx.getitem(r, 0), ctx.getitem(r, 1)]


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    past: torch.Tensor | None,
    decay: torch.Tensor | None,
    beta: torch.Tensor | None,
    q_heads: int,
    kv_heads: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX LinearAttention (the recurrent form, float32 state): ``(output, present_state)``.

    ``decay`` given means a gated rule and ``beta`` a delta rule.
    """
    b, t = q.shape[0], q.shape[1]
    dk = q.shape[2] // q_heads
    dv = v.shape[2] // kv_heads
    group = q_heads // kv_heads
    q4 = _split_heads(q, q_heads).float()
    k4 = _split_heads(k, kv_heads).float()
    v4 = _split_heads(v, kv_heads).float()
    decay4: torch.Tensor | None = None
    if decay is not None:
        if decay.shape[2] == kv_heads:
            decay4 = decay.reshape([b, t, kv_heads, 1]).transpose(1, 2).float()
        else:
            decay4 = _split_heads(decay, kv_heads).float()
    beta4: torch.Tensor | None = None
    if beta is not None:
        beta4 = beta.reshape([b, t, beta.shape[2], 1]).transpose(1, 2).float()
    state_dtype = q.dtype
    if past is not None:
        state_dtype = past.dtype
        state = past.float()
    else:
        state = torch.zeros([b, kv_heads, dk, dv], dtype=torch.float32, device=q.device)
    if scale == 0.0:
        scale = 1.0 / math.sqrt(dk)
    outs: list[torch.Tensor] = []
    for i in range(t):
        k_t = k4[:, :, i, :]
        v_t = v4[:, :, i, :]
        if decay4 is not None:
            state = state * torch.exp(decay4[:, :, i, :]).unsqueeze(-1)
        if beta4 is not None:
            retrieved = torch.einsum("bhdm,bhd->bhm", state, k_t)
            v_t = beta4[:, :, i, :] * (v_t - retrieved)
        state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        read = state if group == 1 else state.repeat_interleave(group, 1)
        outs.append(scale * torch.einsum("bhd,bhdm->bhm", q4[:, :, i, :], read))
    out = torch.stack(outs, 2).transpose(1, 2).reshape([b, t, q_heads * dv])
    return out.to(q.dtype), state.to(state_dtype)


@lowers("LinearAttention")
def linear_attention_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # LinearAttention(q, k, v, past_state, decay, beta) -> linear_attention(...)
    rule = node.attr("update_rule", "gated_delta")
    rule = rule.decode() if isinstance(rule, bytes) else rule
    decay, beta = arg(args, 4), arg(args, 5)
    if (decay is not None) != (rule in ("gated", "gated_delta")) or (beta is not None) != (
        rule in ("delta", "gated_delta")
    ):
        raise Unsupported(f"LinearAttention update_rule {rule!r} with these inputs")
    r = ctx.call(
        linear_attention,
        args[0],
        args[1],
        args[2],
        arg(args, 3),
        decay,
        beta,
        int(node.attr("q_num_heads")),
        int(node.attr("kv_num_heads")),
        float(node.attr("scale", 0.0) or 0.0),
    )
    return [ctx.getitem(r, 0), ctx.getitem(r, 1)]


def flex_scores(q: torch.Tensor, k: torch.Tensor, scale: float, work: torch.dtype) -> torch.Tensor:
    """FlexAttention scores ``(Q * sqrt(scale)) @ (K * sqrt(scale))^T`` in softmax precision;
    K heads repeat for grouped-query attention."""
    if q.shape[1] != k.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], 1)
    if scale <= 0:
        scale = 1.0 / math.sqrt(q.shape[3])
    s = torch.tensor(math.sqrt(scale), dtype=torch.float32).to(q.dtype)
    return torch.matmul(q * s, (k * s).transpose(-1, -2)).to(work)


def flex_output(probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """FlexAttention ``probs @ V`` in softmax precision, cast back to V's dtype."""
    if probs.shape[1] != v.shape[1]:
        v = v.repeat_interleave(probs.shape[1] // v.shape[1], 1)
    return torch.matmul(probs, v.to(probs.dtype)).to(v.dtype)


def _call_mod(ctx: LoweringContext, node: Node, name: str, x: Arg) -> Arg:
    """Calls a FlexAttention score_mod / prob_mod subgraph on ``x``."""
    sub = node.attr(name)
    if sub is None:
        return x
    module, captures = ctx.lower_subgraph(sub)
    caps = [ctx.value(v) for v in captures]
    out = ctx.fx.call_module(ctx.submodule(module, name), ([x], caps))
    return ctx.getitem(out, 0)


@lowers("FlexAttention", domain="ai.onnx.preview")
def flex_attention(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # FlexAttention(Q, K, V) -> softmax(score_mod(Q K^T * scale)) -> prob_mod -> @ V
    sp = node.attr("softmax_precision", None)
    dt = node.inputs[0].dtype
    if sp is not None:
        work = torch_dtype(int(sp))
    elif dt is not None and torch_dtype(dt) in (torch.float16, torch.bfloat16):
        work = torch.float32
    else:
        work = torch_dtype(dt) if dt is not None else torch.float32
    scores = ctx.call(flex_scores, args[0], args[1], float(node.attr("scale", 0.0) or 0.0), work)
    scores = _call_mod(ctx, node, "score_mod", scores)
    probs = ctx.call(torch.softmax, scores, -1)
    probs = _call_mod(ctx, node, "prob_mod", probs)
    return ctx.call(flex_output, probs, args[2])
