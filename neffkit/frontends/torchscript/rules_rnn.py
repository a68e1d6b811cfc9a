"""Lifting rules for ``aten::lstm`` and ``aten::gru`` (the ``.input`` overloads ``nn.LSTM`` and
``nn.GRU`` call): one ONNX ``LSTM``/``GRU`` node per layer.

The layouts differ: torch stacks gates i,f,g,o (LSTM) and r,z,n (GRU), ONNX i,o,f,c and z,r,h
(GRU with ``linear_before_reset=1``, torch's form); ONNX wants one ``[dirs, gates*H, in]``
weight, one recurrence weight and the two biases concatenated, and returns
``Y[seq, dirs, batch, H]``, which the next layer (and torch's output) reads as
``[seq, batch, dirs*H]``. Weights are frozen constants, so they are reordered here in numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neffkit.frontends.torchscript._base import Decline, rule, static, torch_to_numpy
from neffkit.ir import TensorType, Value

#: torch gate blocks -> ONNX order, by op.
_ORDER = {"aten::lstm": [0, 3, 1, 2], "aten::gru": [1, 0, 2]}


def _gates(w: np.ndarray, order: list[int]) -> np.ndarray:
    """Rows of a stacked-gate weight or bias reordered block by block."""
    blocks = np.split(w, len(order), axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


@rule("aten::lstm", "aten::gru")
def _rnn(lx: Any, a: dict[str, Any], node: Any) -> Any:
    import torch  # noqa: PLC0415

    kind = node.kind()
    if "params" not in a or "input" not in a:
        raise Decline("packed-sequence overload")
    if static(lx, a["train"]) and static(lx, a["dropout"]):
        raise Decline("dropout between layers in training mode")
    params = a["params"]
    if not all(isinstance(p, torch.Tensor) for p in params):
        raise Decline("weights are not constants")
    layers, bidir = int(static(lx, a["num_layers"])), bool(static(lx, a["bidirectional"]))
    has_bias, batch_first = bool(static(lx, a["has_biases"])), bool(static(lx, a["batch_first"]))
    dirs = 2 if bidir else 1
    per = 4 if has_bias else 2
    if len(params) != layers * dirs * per:
        raise Decline("projections (proj_size) are not lifted")
    x = lx.tensor(a["input"])
    if batch_first:
        x = lx.emit("Transpose", [x], perm=[1, 0, 2], rank=3)
    hx = a["hx"] if kind == "aten::lstm" else [a["hx"]]
    states = [lx.tensor(h) for h in hx]  # each [layers*dirs, batch, H]
    order = _ORDER[kind]
    hidden = torch_to_numpy(params[1]).shape[1]
    outs_h, outs_c = [], []
    for layer in range(layers):
        ws, rs, bs = [], [], []
        for d in range(dirs):
            group = [torch_to_numpy(p) for p in params[(layer * dirs + d) * per :][:per]]
            ws.append(_gates(group[0], order))
            rs.append(_gates(group[1], order))
            if has_bias:
                bs.append(np.concatenate([_gates(group[2], order), _gates(group[3], order)]))
            else:
                bs.append(np.zeros(2 * len(order) * hidden, group[0].dtype))
        lo, hi = layer * dirs, (layer + 1) * dirs
        init = [_rows(lx, s, lo, hi) for s in states]
        weights = [lx.constant(np.stack(w)) for w in (ws, rs, bs)]
        inputs = [x, *weights, None, *init]
        attrs: dict[str, Any] = {"hidden_size": hidden,
                                 "direction": "bidirectional" if bidir else "forward"}  # fmt: skip
        if kind == "aten::gru":
            attrs["linear_before_reset"] = 1
        n_out = 3 if kind == "aten::lstm" else 2
        results = lx.emit(kind[len("aten::") :].upper(), inputs, outputs=n_out, rank=None,
                          **attrs)  # fmt: skip
        y = results[0]  # [seq, dirs, batch, H] -> [seq, batch, dirs*H]
        y = lx.emit("Transpose", [y], perm=[0, 2, 1, 3], rank=4)
        x = lx.emit("Reshape", [y, lx.constant(np.array([0, 0, -1]))], rank=3)
        for r in results[1:]:
            r.type = TensorType(x.type.dtype, [None] * 3) if x.type is not None else None
        outs_h.append(results[1])
        if kind == "aten::lstm":
            outs_c.append(results[2])
    out = lx.emit("Transpose", [x], perm=[1, 0, 2], rank=3) if batch_first else x
    h_n = _stack(lx, outs_h)
    if kind == "aten::gru":
        return [out, h_n]
    return [out, h_n, _stack(lx, outs_c)]


def _rows(lx: Any, state: Value, lo: int, hi: int) -> Value:
    """``state[lo:hi]`` along the first axis (one layer's initial states)."""
    c = lx.constant
    return lx.emit("Slice", [state, c(np.array([lo])), c(np.array([hi])), c(np.array([0]))])


def _stack(lx: Any, parts: list[Value]) -> Value:
    """Per-layer ``[dirs, batch, H]`` states as torch's ``[layers*dirs, batch, H]``."""
    return parts[0] if len(parts) == 1 else lx.emit("Concat", parts, axis=0, rank=3)


@rule("aten::lstm_cell", "aten::gru_cell")
def _cell(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # lstm_cell(x[B, I], (h, c)) -> LSTM over a one-step sequence, states squeezed back to [B, H]
    import torch  # noqa: PLC0415

    kind = node.kind()
    weights = [a["w_ih"], a["w_hh"], a.get("b_ih"), a.get("b_hh")]
    if not all(w is None or isinstance(w, torch.Tensor) for w in weights):
        raise Decline("weights are not constants")
    x = lx.tensor(a["input"])
    if x.type is None or x.type.rank != 2:
        raise Decline("an unbatched or unranked cell input")
    order = _ORDER[kind.replace("_cell", "")]
    w, r = (_gates(torch_to_numpy(t), order) for t in weights[:2])
    hidden = r.shape[1]
    if weights[2] is None or weights[3] is None:
        b = np.zeros(2 * len(order) * hidden, w.dtype)
    else:
        b = np.concatenate([_gates(torch_to_numpy(t), order) for t in weights[2:]])
    axis0 = lx.constant(np.array([0]))
    hx = a["hx"] if kind == "aten::lstm_cell" else [a["hx"]]
    states = [lx.emit("Unsqueeze", [lx.tensor(h), axis0], rank=3) for h in hx]
    seq = lx.emit("Unsqueeze", [x, axis0], rank=3)
    consts = [lx.constant(v[None]) for v in (w, r, b)]
    attrs: dict[str, Any] = {"hidden_size": hidden}
    if kind == "aten::gru_cell":
        attrs["linear_before_reset"] = 1
    n_out = 3 if kind == "aten::lstm_cell" else 2
    results = lx.emit(kind[len("aten::") : -len("_cell")].upper(), [seq, *consts, None, *states],
                      outputs=n_out, rank=None, **attrs)  # fmt: skip
    outs = [lx.emit("Squeeze", [s, axis0], dtype=x.type.dtype, rank=2) for s in results[1:]]
    return outs if kind == "aten::lstm_cell" else outs[0]
