"""Helpers of the neural-network lowerings (conv, pooling, normalization, resize, attention,
recurrent, quantization): optional inputs and attributes, static shapes, ONNX pads and
``auto_pad``, the geometry of a conv / pool node and the emitted conv call.

Common cases lower to one torch call with static Python arguments, e.g.
``torch.conv2d(x, self.w, self.b, [1, 1], [1, 1], [1, 1], 1)``; asymmetric pads become an
explicit ``F.pad`` first. When a value that decides the arguments (an input's spatial size
for ``auto_pad=SAME_*``) is only known at run time, a small TorchScript helper computes it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from onnx import TensorProto

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.shapes import const_ints, rank_of
from neffkit.backends.torch.registry import Arg, Unsupported
from neffkit.ir.core import Node, Value

TORCH_DTYPES: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT8: torch.int8,
    TensorProto.UINT8: torch.uint8,
    TensorProto.INT16: torch.int16,
    TensorProto.UINT16: torch.uint16,
    TensorProto.INT32: torch.int32,
    TensorProto.UINT32: torch.uint32,
    TensorProto.INT64: torch.int64,
    TensorProto.UINT64: torch.uint64,
    TensorProto.BOOL: torch.bool,
    TensorProto.FLOAT8E4M3FN: torch.float8_e4m3fn,
    TensorProto.FLOAT8E4M3FNUZ: torch.float8_e4m3fnuz,
    TensorProto.FLOAT8E5M2: torch.float8_e5m2,
    TensorProto.FLOAT8E5M2FNUZ: torch.float8_e5m2fnuz,
}

FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def torch_dtype(onnx_type: int) -> torch.dtype:
    """The torch dtype of an ONNX element type (Unsupported when torch has none)."""
    dt = TORCH_DTYPES.get(onnx_type)
    if dt is None:
        raise Unsupported(f"element type {onnx_type} has no torch dtype")
    return dt


def in_value(node: Node, i: int) -> Value | None:
    """Input ``i`` of ``node``, None when absent or omitted."""
    return node.inputs[i] if i < len(node.inputs) else None


def arg(args: list[Arg], i: int) -> Arg:
    """``args[i]``, None when the optional input is absent."""
    return args[i] if i < len(args) else None


def static_shape(v: Value | None) -> list[int] | None:
    """The shape of ``v`` when every dimension is a known int, else None."""
    if v is None or v.shape is None:
        return None
    if not all(isinstance(d, int) and d >= 0 for d in v.shape):
        return None
    return [int(d) for d in v.shape]


def spatial_rank(node: Node, *candidates: int, attr: str = "kernel_shape") -> int:
    """The number of spatial dims of a conv/pool node, from its inputs' ranks or an attribute."""
    for i in candidates:
        r = rank_of(in_value(node, i))
        if r is not None:
            return r - 2
    ks = node.attr(attr)
    if ks:
        return len(ks)
    raise Unsupported("the number of spatial dimensions is unknown (no input rank, no kernel)")


def torch_pad(begin: list[int], end: list[int]) -> list[int]:
    """ONNX per-axis (begin, end) pads of the trailing axes as an ``F.pad`` list (last first)."""
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):
        out += [int(b), int(e)]
    return out


def same_pads(
    in_sizes: list[int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    lower: bool,
) -> list[int]:
    """ONNX ``auto_pad=SAME_UPPER/SAME_LOWER`` pads ``[b1.., e1..]`` (output = ceil(in/stride))."""
    begin: list[int] = []
    end: list[int] = []
    for i in range(len(in_sizes)):
        out = (in_sizes[i] + strides[i] - 1) // strides[i]
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_sizes[i])
        small = total // 2
        if lower:
            begin.append(total - small)
            end.append(small)
        else:
            begin.append(small)
            end.append(total - small)
    return begin + end


def pad_same(
    x: torch.Tensor,
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    lower: bool,
    value: float,
) -> torch.Tensor:
    """Pads ``x`` for ``auto_pad=SAME_*`` when its spatial size is only known at run time."""
    nd = len(kernel)
    sizes = [int(s) for s in x.shape[x.dim() - nd :]]
    p = same_pads(sizes, kernel, strides, dilations, lower)
    pad: list[int] = []
    for i in range(nd - 1, -1, -1):
        pad += [p[i], p[nd + i]]
    return F.pad(x, pad, value=value)


def int_list(t: torch.Tensor) -> list[int]:
    """A 1-D int tensor's values as a list (for arguments only known at run time)."""
    flat = t.reshape(-1)
    out: list[int] = []
    for i in range(flat.shape[0]):
        out.append(int(flat[i]))
    return out


def float_list(t: torch.Tensor) -> list[float]:
    """A 1-D float tensor's values as a list (for arguments only known at run time)."""
    flat = t.reshape(-1)
    out: list[float] = []
    for i in range(flat.shape[0]):
        out.append(float(flat[i]))
    return out


def spatial_dims(w: torch.Tensor) -> list[int]:
    """``w.shape[2:]``: a kernel's spatial size read at run time."""
    return [int(s) for s in w.shape[2:]]


class ConvGeometry:
    """Kernel, strides, dilations and resolved pads of a Conv / pool node.

    ``pads`` is ``[b1.., e1..]``, or None when ``auto_pad=SAME_*`` needs the input size at run
    time (then ``same_lower`` says which way).
    """

    def __init__(self, node: Node, nd: int, kernel: list[int] | None, x_index: int = 0) -> None:
        self.nd = nd
        self.kernel = kernel
        self.strides = list(node.attr("strides", None) or [1] * nd)
        self.dilations = list(node.attr("dilations", None) or [1] * nd)
        auto_pad = node.attr("auto_pad", "NOTSET")
        if isinstance(auto_pad, bytes):
            auto_pad = auto_pad.decode()
        self.auto_pad = auto_pad
        self.same_lower = auto_pad == "SAME_LOWER"
        self.pads: list[int] | None
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            in_sizes = static_shape(node.inputs[x_index])
            if in_sizes is not None and kernel is not None:
                self.pads = same_pads(
                    in_sizes[2:], kernel, self.strides, self.dilations, self.same_lower
                )
            else:
                self.pads = None
        elif auto_pad == "VALID":
            self.pads = [0] * (2 * nd)
        else:
            self.pads = list(node.attr("pads", None) or [0] * (2 * nd))

    @property
    def symmetric(self) -> bool:
        """True when the pads are known and equal at both ends of every axis."""
        p = self.pads
        return p is not None and p[: self.nd] == p[self.nd :]

    def pad_input(self, ctx: LoweringContext, x: Arg, kernel: Arg, value: float = 0.0) -> Arg:
        """Applies the pads to ``x`` explicitly (static ``F.pad`` or the run-time SAME helper)."""
        if self.pads is None:
            return ctx.call(
                pad_same, x, kernel, self.strides, self.dilations, self.same_lower, value
            )
        if not any(self.pads):
            return x
        pad = torch_pad(self.pads[: self.nd], self.pads[self.nd :])
        if value == 0.0:
            return ctx.call(F.pad, x, pad)
        return ctx.call(F.pad, x, pad, value=value)


def kernel_of(node: Node, w_index: int) -> list[int] | None:
    """``kernel_shape``, or the weight's static spatial shape."""
    ks = node.attr("kernel_shape")
    if ks:
        return list(ks)
    ws = static_shape(in_value(node, w_index))
    return ws[2:] if ws is not None else None


_CONV = {1: torch.conv1d, 2: torch.conv2d, 3: torch.conv3d}


def emit_conv(
    ctx: LoweringContext, node: Node, x: Arg, w: Arg, b: Arg, x_index: int = 0, w_index: int = 1
) -> Arg:
    """Emits ONNX Conv geometry (pads, auto_pad, strides, dilations, group) on ``x`` and ``w``,
    which may be transformed versions of the node's inputs ``x_index`` and ``w_index``."""
    nd = spatial_rank(node, w_index, x_index)
    fn = _CONV.get(nd)
    if fn is None:
        raise Unsupported(f"{node.op_type} with {nd} spatial dimensions")
    kernel = kernel_of(node, w_index)
    geo = ConvGeometry(node, nd, kernel, x_index)
    group = int(node.attr("group", 1))
    if geo.symmetric:
        assert geo.pads is not None
        return ctx.call(fn, x, w, b, geo.strides, geo.pads[:nd], geo.dilations, group)
    k = kernel if kernel is not None else ctx.call(spatial_dims, w)
    xp = geo.pad_input(ctx, x, k)
    return ctx.call(fn, xp, w, b, geo.strides, [0] * nd, geo.dilations, group)


def int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int32 matmul (CUDA has no integer matmul: float64 is exact for these sizes)."""
    if a.device.type == "cpu":
        return torch.matmul(a, b)
    return torch.matmul(a.double(), b.double()).round().to(torch.int32)


def str_attr(node: Node, name: str, default: str) -> str:
    v = node.attr(name, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def list_input(ctx: LoweringContext, args: list[Arg], i: int, kind: type) -> Arg:
    """A static list for a constant input (empty when absent or empty), else a run-time list."""
    if arg(args, i) is None:
        return []
    c = ctx.input_constant(i)
    if c is not None:
        return [kind(v) for v in np.asarray(c).reshape(-1)]
    if kind is int:  # sizes computed from static shapes (Shape -> Slice -> Concat ...)
        known = const_ints(ctx, i)
        if known is not None:
            return known
    return ctx.call(float_list if kind is float else int_list, args[i])
