"""What ``dwconv`` knows about a depthwise ``Conv`` (its geometry), and the three forms it
rewrites one into: ``shift-mac``, ``dense`` and ``unfold-matmul``.

A depthwise convolution has ``group == C`` (the input's channels) and a weight
``[C*M, 1, *kernel]`` (M: the channel multiplier): output channel ``c*M + m`` reads input
channel ``c`` only. The forms are built through an :class:`Emit`, so the same code makes the
rewrite inside a graph (through the rewriter) and the standalone graphs ``auto`` times.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import Tensor, onnx_dtype
from neffkit.ir.types import TensorType
from neffkit.passes.rewrite.patterns import FOLD_DTYPES
from neffkit.passes.rewrite.rewriter import Rewriter

#: the rewritten forms, by their strategy names
FORMS = ("shift-mac", "dense", "unfold-matmul")
#: Pad, Slice, ReduceSum and Unsqueeze take their operands as inputs from this opset on
MIN_OPSET = 13


@dataclass(frozen=True)
class Depthwise:
    """A depthwise Conv's geometry and constants; pads are explicit (``auto_pad`` resolved).

    Attributes:
        batch: the batch dim (static: a Conv with a symbolic dim is left alone).
        channels: C, the input channels (and the group count).
        multiplier: M, output channels per input channel.
        spatial: the input's spatial dims.
        out: the output's spatial dims.
        weight: ``[C*M, 1, *kernel]``; ``bias``: ``[C*M]`` or None.
        auto_pad: the node's ``auto_pad`` attribute (part of the cache key).
    """

    batch: int
    channels: int
    multiplier: int
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    out: tuple[int, ...]
    weight: np.ndarray
    bias: np.ndarray | None
    auto_pad: str

    @property
    def padded(self) -> tuple[int, ...]:
        """The spatial dims after padding."""
        return tuple(s + b + e for s, b, e in zip(self.spatial, self.pads_begin, self.pads_end))

    @property
    def dtype(self) -> str:
        """The element type's numpy name (``float32``)."""
        return str(self.weight.dtype)

    def out_type(self) -> TensorType:
        """The output's type: ``[batch, C*M, *out]``."""
        dims = [self.batch, self.channels * self.multiplier, *self.out]
        return TensorType(onnx_dtype(self.weight.dtype), dims)

    def key(self) -> dict[str, Any]:
        """What the timings of this conv depend on (shapes, attributes, dtype), as JSON data."""
        return {
            "batch": self.batch,
            "channels": self.channels,
            "multiplier": self.multiplier,
            "spatial": list(self.spatial),
            "kernel": list(self.kernel),
            "strides": list(self.strides),
            "dilations": list(self.dilations),
            "pads": [*self.pads_begin, *self.pads_end],
            "auto_pad": self.auto_pad,
            "bias": self.bias is not None,
            "dtype": self.dtype,
        }


class NotDepthwise(Exception):
    """A depthwise Conv the pass leaves alone; the message says why, ``stat`` counts it."""

    def __init__(self, reason: str, stat: str = "left_unsupported") -> None:
        super().__init__(reason)
        self.stat = stat


def analyze(node: Node, rw: Rewriter) -> Depthwise | None:
    """The geometry of ``node`` when it is a depthwise Conv the forms can express; None when
    it is not depthwise at all.

    Raises:
        NotDepthwise: it is depthwise but cannot be rewritten (non-static shape, weights that
            are not constants ...); the message says why.
    """
    if node.op_type != "Conv" or node.domain != "" or len(node.inputs) < 2:
        return None
    x, w = node.inputs[0], node.inputs[1]
    group = node.attr("group", 1)
    xs = rw.shape(x)
    if xs is not None and len(xs) >= 2 and isinstance(xs[1], int) and xs[1] != group:
        return None
    if not isinstance(group, int) or group < 2 or x is None:
        return None
    layout = rw.const_layout(w)
    if layout is None:
        raise NotDepthwise("its weight is not a constant")
    if len(layout[1]) < 3 or layout[1][1] != 1:
        return None
    if xs is None or any(not isinstance(d, int) for d in xs):
        reason = f"its input's shape is not static ({_shape_text(xs)})"
        raise NotDepthwise(reason, "left_dynamic_shape")
    ys = node.outputs[0].shape if node.outputs else None
    if ys is not None and any(isinstance(d, str) for d in ys):
        # an unknown dim ('?') follows from the static input; a named one says it varies
        reason = f"its output's shape is not static ({_shape_text(ys)})"
        raise NotDepthwise(reason, "left_dynamic_shape")
    if len(xs) not in (3, 4):
        raise NotDepthwise(f"{len(xs) - 2}-D: only 1-D and 2-D convolutions are rewritten")
    if rw.opset < MIN_OPSET:
        raise NotDepthwise(f"opset {rw.opset} < {MIN_OPSET}")
    weight = rw.const(w, rw.ctx.max_constant_bytes)
    if weight is None or weight.dtype.type not in FOLD_DTYPES:
        raise NotDepthwise("its weight is not a float constant within max_constant_bytes")
    bias = None
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        bias = rw.const(node.inputs[2])
        if bias is None:
            raise NotDepthwise("its bias is not a constant")
    return _geometry(node, list(xs), weight, bias)


def _shape_text(xs: Any) -> str:
    return "unknown" if xs is None else "[" + ",".join(str(d) for d in xs) + "]"


def _geometry(node: Node, xs: list[Any], weight: np.ndarray, bias: np.ndarray | None) -> Depthwise:
    c = int(xs[1] or 0)
    spatial = tuple(int(d or 0) for d in xs[2:])
    n = len(spatial)
    if weight.ndim != n + 2 or weight.shape[0] % c:
        raise NotDepthwise(f"weight shape {list(weight.shape)} does not fit {c} channels")
    kernel = tuple(int(k) for k in weight.shape[2:])
    given = node.attr("kernel_shape")
    if given is not None and tuple(given) != kernel:
        raise NotDepthwise(f"kernel_shape {list(given)} is not the weight's {list(kernel)}")
    strides = tuple(int(s) for s in node.attr("strides", [1] * n))
    dilations = tuple(int(d) for d in node.attr("dilations", [1] * n))
    auto_pad = node.attr("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    pads = [int(p) for p in node.attr("pads", [0] * 2 * n)]
    if len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        raise NotDepthwise("strides, dilations or pads do not match the kernel's rank")
    if min(strides + dilations) < 1 or min(pads) < 0:
        raise NotDepthwise("non-positive strides or dilations, or negative pads")
    begin, end = _resolve_pads(auto_pad, spatial, kernel, strides, dilations, pads)
    out = tuple(
        (s + b + e - d * (k - 1) - 1) // st + 1
        for s, b, e, k, st, d in zip(spatial, begin, end, kernel, strides, dilations)
    )
    if min(out) < 1:
        raise NotDepthwise(f"empty output {list(out)}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise NotDepthwise(f"bias shape {list(bias.shape)} is not [{weight.shape[0]}]")
    return Depthwise(
        int(xs[0]), c, weight.shape[0] // c, spatial, kernel, strides, dilations, begin, end, out,
        weight, None if bias is None else bias.astype(weight.dtype), auto_pad,
    )  # fmt: skip


def _resolve_pads(
    auto_pad: str,
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    pads: list[int],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Explicit (begin, end) pads for ``auto_pad`` as ONNX defines it."""
    n = len(spatial)
    if auto_pad in ("NOTSET", ""):
        return tuple(pads[:n]), tuple(pads[n:])
    if auto_pad == "VALID":
        return (0,) * n, (0,) * n
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise NotDepthwise(f"unknown auto_pad {auto_pad!r}")
    begin, end = [], []
    for s, k, st, d in zip(spatial, kernel, strides, dilations):
        total = max(0, (math.ceil(s / st) - 1) * st + d * (k - 1) + 1 - s)
        small = total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return tuple(begin), tuple(end)


class Emit(Protocol):
    """Where a form's nodes and constants go."""

    def const(self, hint: str, array: np.ndarray) -> Value:
        """A new constant."""
        ...

    def op(self, op_type: str, inputs: list[Value], hint: str, **attrs: Any) -> Value:
        """A new node's (only) output."""
        ...


class RewriteEmit:
    """Emits before ``anchor`` through the rewriter (the driver sees every new node)."""

    def __init__(self, rw: Rewriter, anchor: Node) -> None:
        assert anchor.graph is not None
        self.rw, self.anchor, self.graph = rw, anchor, anchor.graph
        self.prefix = anchor.name or "dwconv"

    def const(self, hint: str, array: np.ndarray) -> Value:
        return self.rw.add_constant(self.graph, f"{self.prefix}_{hint}", array)

    def op(self, op_type: str, inputs: list[Value], hint: str, **attrs: Any) -> Value:
        node = _node(op_type, inputs, f"{self.prefix}_{hint}", attrs)
        self.rw.insert_before(self.anchor, node)
        return node.outputs[0]


class GraphEmit:
    """Emits at the end of a standalone graph (the graphs ``auto`` times)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def const(self, hint: str, array: np.ndarray) -> Value:
        return self.graph.add_initializer(Value(hint, const=Tensor(array)))

    def op(self, op_type: str, inputs: list[Value], hint: str, **attrs: Any) -> Value:
        return self.graph.append(_node(op_type, inputs, hint, attrs)).outputs[0]


def _node(op_type: str, inputs: list[Value], hint: str, attrs: dict[str, Any]) -> Node:
    node = Node(op_type, inputs, outputs=[Value(hint)])
    for name, value in attrs.items():
        node.set_attr(name, value)
    return node


def _ints(values: Any) -> np.ndarray:
    return np.array(list(values), dtype=np.int64)


def _pad(dw: Depthwise, x: Value, e: Emit) -> Value:
    """``x`` padded with zeros (``x`` itself when no pad is needed)."""
    if not any(dw.pads_begin) and not any(dw.pads_end):
        return x
    pads = _ints([0, 0, *dw.pads_begin, 0, 0, *dw.pads_end])
    return e.op("Pad", [x, e.const("pads", pads)], "pad")


def _out_shape(dw: Depthwise, e: Emit) -> Value:
    """``[0, C*M, *out]`` for a Reshape (0 keeps the batch dim, static or not)."""
    return e.const("shape", _ints([0, dw.channels * dw.multiplier, *dw.out]))


def shift_mac(dw: Depthwise, x: Value, e: Emit) -> Value:
    """``Sum_k Slice_k(Pad(x)) * w_k (+ b)``: one strided slice per tap, elementwise only.

    With a multiplier M > 1 the input gets an axis of 1 after the channels, the weights are
    ``[C, M, 1...]`` and the sum ``[N, C, M, *out]`` is reshaped to ``[N, C*M, *out]``.
    """
    c, m, n = dw.channels, dw.multiplier, len(dw.kernel)
    xp = _pad(dw, x, e)
    first = 2
    if m > 1:
        xp = e.op("Unsqueeze", [xp, e.const("axes", _ints([2]))], "unsqueeze")
        first = 3
    axes = e.const("axes", _ints(range(first, first + n)))
    steps = e.const("steps", _ints(dw.strides))
    lead = [c, m] if m > 1 else [c * m]
    w = dw.weight.reshape(c * m, -1)
    terms = []
    for t, taps in enumerate(itertools.product(*(range(k) for k in dw.kernel))):
        starts = [k * d for k, d in zip(taps, dw.dilations)]
        ends = [s + (o - 1) * st + 1 for s, o, st in zip(starts, dw.out, dw.strides)]
        if starts == [0] * n and ends == list(dw.padded) and dw.strides == (1,) * n:
            part = xp  # the whole padded input: no slice needed
        else:
            s, en = e.const(f"start{t}", _ints(starts)), e.const(f"end{t}", _ints(ends))
            part = e.op("Slice", [xp, s, en, axes, steps], f"tap{t}")
        wt = e.const(f"w{t}", w[:, t].reshape(*lead, *([1] * n)).copy())
        terms.append(e.op("Mul", [part, wt], f"mac{t}"))
    if dw.bias is not None:
        terms.append(e.const("bias", dw.bias.reshape(*lead, *([1] * n))))
    y = terms[0] if len(terms) == 1 else e.op("Sum", terms, "sum")
    if m > 1:
        y = e.op("Reshape", [y, _out_shape(dw, e)], "out")
    return y


def dense(dw: Depthwise, x: Value, e: Emit) -> Value:
    """One group-1 Conv whose weight ``[C*M, C, *kernel]`` is zero off the block diagonal."""
    c, m = dw.channels, dw.multiplier
    w = np.zeros((c * m, c, *dw.kernel), dtype=dw.weight.dtype)
    for o in range(c * m):
        w[o, o // m] = dw.weight[o, 0]
    inputs = [x, e.const("dense_w", w)]
    if dw.bias is not None:
        inputs.append(e.const("bias", dw.bias))
    return e.op(
        "Conv", inputs, "dense", group=1, kernel_shape=list(dw.kernel),
        strides=list(dw.strides), dilations=list(dw.dilations),
        pads=[*dw.pads_begin, *dw.pads_end],
    )  # fmt: skip


def dense_bytes(dw: Depthwise) -> int:
    """The size of the dense form's weight."""
    return dw.weight.nbytes * dw.channels


def tap_count(dw: Depthwise) -> int:
    """K, the kernel's taps: ``shift-mac`` emits a Slice and a Mul per tap."""
    return math.prod(dw.kernel)


def patch_index_bytes(dw: Depthwise) -> int:
    """The size of ``unfold-matmul``'s index table (int64, one per output position x tap)."""
    return math.prod(dw.out) * tap_count(dw) * 8


def patch_index(dw: Depthwise) -> np.ndarray:
    """``[out, taps]``: the flat index into the padded input of output position o, tap k,
    ``sum_i (o_i*s_i + k_i*d_i) * row_i``, both in row-major order (built by broadcasting)."""
    padded = dw.padded
    rows = [math.prod(padded[i + 1 :]) for i in range(len(padded))]
    at_out = np.zeros(dw.out, dtype=np.int64)
    at_tap = np.zeros(dw.kernel, dtype=np.int64)
    for i, (o, k, s, d, r) in enumerate(zip(dw.out, dw.kernel, dw.strides, dw.dilations, rows)):
        along = [1] * len(dw.out)
        along[i] = -1
        at_out = at_out + (np.arange(o, dtype=np.int64) * (s * r)).reshape(along)
        at_tap = at_tap + (np.arange(k, dtype=np.int64) * (d * r)).reshape(along)
    return at_out.reshape(-1, 1) + at_tap.reshape(1, -1)


def unfold_matmul(dw: Depthwise, x: Value, e: Emit) -> Value:
    """``Gather`` every patch of ``Pad(x)`` once (``[N, C, out * taps]``, reshaped to
    ``[N, C, out, taps]``), then one batched per-channel ``MatMul`` with the weights
    ``[C, taps, M]``."""
    c, m = dw.channels, dw.multiplier
    xp = _pad(dw, x, e)
    padded = dw.padded
    if len(padded) > 1:
        xp = e.op("Reshape", [xp, e.const("flat", _ints([0, c, math.prod(padded)]))], "flat")
    idx = patch_index(dw)
    # a flat index list (then a Reshape): the common fast path of runtimes (index_select)
    flat = e.op("Gather", [xp, e.const("patch_index", idx.reshape(-1))], "unfold", axis=2)
    shape = _ints([0, c, *idx.shape])
    patches = e.op("Reshape", [flat, e.const("patch_shape", shape)], "patch_rows")
    w = dw.weight.reshape(c, m, -1).transpose(0, 2, 1).copy()  # [C, taps, M]
    y = e.op("MatMul", [patches, e.const("w", w)], "matmul")  # [N, C, out, M]
    if m > 1:
        y = e.op("Transpose", [y], "channels", perm=[0, 1, 3, 2])
    y = e.op("Reshape", [y, _out_shape(dw, e)], "out")
    if dw.bias is not None:
        b = dw.bias.reshape(c * m, *([1] * len(dw.out)))
        y = e.op("Add", [y, e.const("bias", b)], "bias")
    return y


BUILDERS = {"shift-mac": shift_mac, "dense": dense, "unfold-matmul": unfold_matmul}


def standalone(dw: Depthwise, form: str, batch: int, opset: int) -> Graph:
    """A graph of one input ``x`` and the conv in ``form`` (``original``: the Conv itself)."""
    g = Graph(f"dwconv_{form}", opset_imports={"": max(opset, MIN_OPSET)})
    onnx_type = onnx_dtype(dw.weight.dtype)
    x = g.add_input(Value("x", TensorType(onnx_type, [batch, dw.channels, *dw.spatial])))
    e = GraphEmit(g)
    if form == "original":
        inputs = [x, e.const("w", dw.weight)]
        if dw.bias is not None:
            inputs.append(e.const("b", dw.bias))
        y = e.op(
            "Conv", inputs, "conv", group=dw.channels, kernel_shape=list(dw.kernel),
            strides=list(dw.strides), dilations=list(dw.dilations),
            pads=[*dw.pads_begin, *dw.pads_end],
        )  # fmt: skip
    else:
        y = BUILDERS[form](dw, x, e)
    out = [batch, dw.channels * dw.multiplier, *dw.out]
    y.type = TensorType(onnx_type, out)
    g.set_outputs([y])
    return g
