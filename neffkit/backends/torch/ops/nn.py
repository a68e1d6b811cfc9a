"""Lowerings of convolutions, matrix products and Dropout, plus helpers shared by the other
``nn_*`` modules (static shapes, ONNX pads and auto_pad, dtype mapping).

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

from neffkit.backends.torch.lowering import LoweringContext
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node, Value

# -- shared helpers --------------------------------------------------------------------------

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


def rank_of(v: Value | None) -> int | None:
    """The rank of ``v`` when known."""
    if v is None or v.shape is None:
        return None
    return len(v.shape)


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


# -- Conv ------------------------------------------------------------------------------------

_CONV = {1: torch.conv1d, 2: torch.conv2d, 3: torch.conv3d}
_CONV_T = {1: torch.conv_transpose1d, 2: torch.conv_transpose2d, 3: torch.conv_transpose3d}


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


@lowers("Conv")
def conv(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Conv(x, w, b) -> torch.convNd(x, w, b, strides, pads, dilations, group); asymmetric or
    # run-time SAME pads are applied with F.pad first.
    return emit_conv(ctx, node, args[0], args[1], arg(args, 2))


def convtranspose_pads(
    in_sizes: list[int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    output_padding: list[int],
    output_shape: list[int],
    pads: list[int],
    auto_pad: str,
) -> list[int]:
    """ConvTranspose output window ``[b1.., e1..]`` inside the unpadded full output.

    The result is ``full[b : full + output_padding - e]`` per axis, where ``full`` is the
    output with no padding; a negative ``e`` extends with zeros (then the bias).
    """
    nd = len(in_sizes)
    begin: list[int] = []
    end: list[int] = []
    for i in range(nd):
        full = (in_sizes[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
        if len(pads) > 0 and (len(output_shape) == 0 or auto_pad == "NOTSET"):
            b = pads[i]
            if len(output_shape) > 0:
                e = full + output_padding[i] - b - output_shape[i]
            else:
                e = pads[nd + i]
        else:
            out = output_shape[i] if len(output_shape) > 0 else in_sizes[i] * strides[i]
            total = full + output_padding[i] - out
            if auto_pad == "SAME_UPPER":
                b = total // 2
            else:
                b = total - total // 2
            e = total - b
        begin.append(b)
        end.append(e)
    return begin + end


def convtranspose_fit(
    y: torch.Tensor,
    x: torch.Tensor,
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    output_padding: list[int],
    output_shape: list[int],
    pads: list[int],
    auto_pad: str,
) -> torch.Tensor:
    """Crops / extends the unpadded ConvTranspose output ``y`` to the ONNX output window."""
    nd = len(kernel)
    p = convtranspose_pads(
        x.shape[2:], kernel, strides, dilations, output_padding, output_shape, pads, auto_pad
    )
    pad: list[int] = []
    for i in range(nd - 1, -1, -1):
        pad += [-p[i], output_padding[i] - p[nd + i]]
    return F.pad(y, pad)


@lowers("ConvTranspose")
def conv_transpose(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ConvTranspose -> torch.conv_transposeNd(x, w, b, strides, pads, output_padding, group,
    # dilations) when pads are symmetric; else the unpadded result is cropped with F.pad
    # (negative pads) and the bias added after.
    x, w, b = args[0], args[1], arg(args, 2)
    nd = spatial_rank(node, 1, 0)
    fn = _CONV_T.get(nd)
    if fn is None:
        raise Unsupported(f"ConvTranspose with {nd} spatial dimensions")
    kernel = kernel_of(node, 1)
    strides = list(node.attr("strides", None) or [1] * nd)
    dilations = list(node.attr("dilations", None) or [1] * nd)
    group = int(node.attr("group", 1))
    out_pad = list(node.attr("output_padding", None) or [0] * nd)
    out_shape = list(node.attr("output_shape", None) or [])
    if len(out_shape) > nd:
        out_shape = out_shape[-nd:]  # some exporters give the full N, C, ... shape
    auto_pad = node.attr("auto_pad", "NOTSET")
    pads = list(node.attr("pads", None) or [])
    if not pads and auto_pad not in ("SAME_UPPER", "SAME_LOWER") and not out_shape:
        pads = [0] * (2 * nd)
    if auto_pad == "VALID":
        pads = [0] * (2 * nd)
    in_shape = static_shape(node.inputs[0])
    if kernel is None:
        raise Unsupported("ConvTranspose needs kernel_shape or a weight of known shape")
    if in_shape is not None or (pads and not out_shape):
        sizes = in_shape[2:] if in_shape is not None else [1] * nd
        p = convtranspose_pads(
            sizes, kernel, strides, dilations, out_pad, out_shape, pads, auto_pad
        )
        begin, end = p[:nd], p[nd:]
        if (
            begin == end
            and all(v >= 0 for v in begin)
            and all(o < max(s, d) for o, s, d in zip(out_pad, strides, dilations))
        ):
            return ctx.call(fn, x, w, b, strides, begin, out_pad, group, dilations)
        y = ctx.call(fn, x, w, None, strides, [0] * nd, [0] * nd, group, dilations)
        y = ctx.call(
            F.pad, y, torch_pad([-v for v in begin], [o - e for o, e in zip(out_pad, end)])
        )
    else:
        y = ctx.call(fn, x, w, None, strides, [0] * nd, [0] * nd, group, dilations)
        y = ctx.call(
            convtranspose_fit,
            y,
            x,
            kernel,
            strides,
            dilations,
            out_pad,
            out_shape,
            pads,
            auto_pad,
        )
    if b is None:
        return y
    return ctx.call(torch.add, y, ctx.method("reshape", b, [1, -1] + [1] * nd))


# -- matrix products -------------------------------------------------------------------------


@lowers("MatMul")
def matmul(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # MatMul(a, b) -> torch.matmul(a, b) (numpy broadcasting and 1-D rules match)
    return ctx.call(torch.matmul, args[0], args[1])


@lowers("Gemm")
def gemm(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Gemm(a, b, c) -> alpha * a' @ b' + beta * c, as torch.addmm when c is given
    a, b, c = args[0], args[1], arg(args, 2)
    if node.attr("transA", 0):
        a = ctx.method("t", a)
    if node.attr("transB", 0):
        b = ctx.method("t", b)
    alpha = float(node.attr("alpha", 1.0))
    beta = float(node.attr("beta", 1.0))
    dt = node.inputs[0].dtype
    is_float = dt in FLOAT_TYPES or dt is None
    if c is not None and beta != 0.0:
        if is_float:
            kw = {}
            if beta != 1.0:
                kw["beta"] = beta
            if alpha != 1.0:
                kw["alpha"] = alpha
            return ctx.call(torch.addmm, c, a, b, **kw)
        y = _scaled(ctx, ctx.call(torch.matmul, a, b), alpha)
        return ctx.call(torch.add, y, _scaled(ctx, c, beta))
    return _scaled(ctx, ctx.call(torch.matmul, a, b), alpha)


def _scaled(ctx: LoweringContext, x: Arg, k: float) -> Arg:
    if k == 1.0:
        return x
    if float(k).is_integer():
        return ctx.call(torch.mul, x, int(k))
    return ctx.call(torch.mul, x, k)


@lowers("Einsum")
def einsum(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Einsum(equation, *xs) -> torch.einsum(equation, *xs)
    eq = node.attr("equation")
    if isinstance(eq, bytes):
        eq = eq.decode()
    return ctx.call(torch.einsum, eq.replace(" ", ""), *args)


def int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int32 matmul (CUDA has no integer matmul: float64 is exact for these sizes)."""
    if a.device.type == "cpu":
        return torch.matmul(a, b)
    return torch.matmul(a.double(), b.double()).round().to(torch.int32)


def _zero_point(ctx: LoweringContext, zp: Arg, idx: int, as_row: bool) -> Arg:
    """A MatMulInteger zero point as int32, a per-row vector reshaped to ``[-1, 1]``."""
    v = in_value(ctx.node, idx)
    z = ctx.method("to", zp, torch.int32)
    r = rank_of(v)
    if as_row and r == 1:
        shape = static_shape(v)
        if shape is None or shape[0] != 1:
            z = ctx.method("reshape", z, [-1, 1])
    return z


@lowers("MatMulInteger")
def matmul_integer(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # MatMulInteger(a, b, a_zp, b_zp) -> (a - a_zp) @ (b - b_zp) in int32
    a = ctx.method("to", args[0], torch.int32)
    b = ctx.method("to", args[1], torch.int32)
    if arg(args, 2) is not None:
        a = ctx.call(torch.sub, a, _zero_point(ctx, args[2], 2, as_row=True))
    if arg(args, 3) is not None:
        b = ctx.call(torch.sub, b, _zero_point(ctx, args[3], 3, as_row=False))
    return ctx.call(int_matmul, a, b)


# -- Dropout ---------------------------------------------------------------------------------


def _const_scalar(ctx: LoweringContext, i: int) -> float | None:
    c = ctx.input_constant(i)
    return None if c is None else float(np.asarray(c).reshape(-1)[0])


def dropout_checked(
    x: torch.Tensor, ratio: torch.Tensor | None, training: torch.Tensor | None
) -> torch.Tensor:
    """Dropout whose training_mode is only known at run time: identity unless it is really
    training (random, which the backend refuses)."""
    if training is not None and bool(training.reshape(-1)[0]):
        r = 0.5 if ratio is None else float(ratio.reshape(-1)[0])
        if r != 0.0:
            raise RuntimeError("Dropout in training mode (random) is not supported")
    return x


@lowers("Dropout")
def dropout(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Dropout in inference -> identity (mask all True); training with ratio > 0 is random
    x = args[0]
    if ctx.opset >= 12 and arg(args, 2) is not None:
        t = _const_scalar(ctx, 2)
        r = _const_scalar(ctx, 1) if arg(args, 1) is not None else 0.5
        if t is None or (t and r is None):
            x = ctx.call(dropout_checked, x, arg(args, 1), args[2])
        elif t and r != 0.0:
            raise Unsupported("Dropout in training mode (random) is not supported")
    elif ctx.opset < 7 and not node.attr("is_test", 0) and node.attr("ratio", 0.5) != 0.0:
        raise Unsupported("Dropout in training mode (random) is not supported")
    if len(node.outputs) < 2 or not (node.outputs[1].num_uses or node.outputs[1].is_graph_output):
        return x
    mask_dt = torch.bool if ctx.opset >= 10 else torch_dtype(node.inputs[0].dtype or 1)
    return [x, ctx.call(torch.ones_like, x, dtype=mask_dt)]
