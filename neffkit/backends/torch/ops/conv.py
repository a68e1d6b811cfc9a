"""Lowerings of convolutions: Conv, ConvTranspose, DeformConv and Col2Im.

Common cases lower to one torch call with static Python arguments (see ``helpers.nn``); when
a value that decides the arguments is only known at run time, a TorchScript helper computes it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import (
    arg,
    emit_conv,
    in_value,
    kernel_of,
    list_input,
    spatial_rank,
    static_shape,
    torch_pad,
)
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node

_CONV_T = {1: torch.conv_transpose1d, 2: torch.conv_transpose2d, 3: torch.conv_transpose3d}


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


def deform_conv2d(
    x: torch.Tensor,
    w: torch.Tensor,
    offset: torch.Tensor,
    b: torch.Tensor | None,
    mask: torch.Tensor | None,
    strides: list[int],
    pads: list[int],
    dilations: list[int],
    group: int,
    offset_group: int,
) -> torch.Tensor:
    """ONNX DeformConv (2-D): bilinear samples (zero outside the image) at the offset kernel
    taps, weighted by ``mask``, then a grouped matmul with the weights."""
    n, c, ih, iw = x.shape
    oc, cpg, kh, kw = w.shape
    oh, ow = offset.shape[2], offset.shape[3]
    k = kh * kw
    og = offset_group
    off = offset.reshape([n, og, k, 2, oh, ow]).to(x.dtype)
    ky = (torch.arange(kh, device=x.device) * dilations[0]).repeat_interleave(kw).to(x.dtype)
    kx = (torch.arange(kw, device=x.device) * dilations[1]).repeat(kh).to(x.dtype)
    by = (torch.arange(oh, device=x.device) * strides[0] - pads[0]).to(x.dtype)
    bx = (torch.arange(ow, device=x.device) * strides[1] - pads[1]).to(x.dtype)
    py = by.reshape(1, 1, 1, oh, 1) + ky.reshape(1, 1, k, 1, 1) + off[:, :, :, 0]
    px = bx.reshape(1, 1, 1, 1, ow) + kx.reshape(1, 1, k, 1, 1) + off[:, :, :, 1]
    y0 = torch.floor(py)
    x0 = torch.floor(px)
    xg = x.reshape([n, og, c // og, ih * iw])
    sampled = torch.zeros([n, og, c // og, k * oh * ow], dtype=x.dtype, device=x.device)
    for dy in range(2):
        for dx in range(2):
            yy = y0 + dy
            xx = x0 + dx
            wt = (1 - (py - yy).abs()) * (1 - (px - xx).abs())
            ok = (yy >= 0) & (yy <= ih - 1) & (xx >= 0) & (xx <= iw - 1)
            wt = torch.where(ok, wt, torch.zeros_like(wt)).reshape([n, og, 1, -1])
            idx = (yy.clamp(0, ih - 1) * iw + xx.clamp(0, iw - 1)).long().reshape([n, og, 1, -1])
            vals = xg.gather(3, idx.expand([n, og, c // og, idx.shape[3]]))
            sampled = sampled + vals * wt
    sampled = sampled.reshape([n, og, c // og, k, oh * ow])
    if mask is not None:
        sampled = sampled * mask.reshape([n, og, 1, k, oh * ow]).to(x.dtype)
    cols = sampled.reshape([n, group, cpg * k, oh * ow])
    wg = w.reshape([group, oc // group, cpg * k])
    y = torch.matmul(wg.unsqueeze(0), cols).reshape([n, oc, oh, ow])
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


@lowers("DeformConv")
def deform_conv(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # DeformConv(x, w, offset, b, mask) -> deform_conv2d(...)
    ws = static_shape(in_value(node, 1))
    nd = len(ws) - 2 if ws is not None else len(node.attr("kernel_shape", []) or [])
    if nd != 2:
        raise Unsupported("DeformConv with other than 2 spatial dimensions")
    strides = list(node.attr("strides", None) or [1, 1])
    pads = list(node.attr("pads", None) or [0, 0, 0, 0])
    dil = list(node.attr("dilations", None) or [1, 1])
    return ctx.call(
        deform_conv2d,
        args[0],
        args[1],
        args[2],
        arg(args, 3),
        arg(args, 4),
        strides,
        pads,
        dil,
        int(node.attr("group", 1)),
        int(node.attr("offset_group", 1)),
    )


def col2im(
    x: torch.Tensor,
    image: list[int],
    block: list[int],
    dilations: list[int],
    pads: list[int],
    strides: list[int],
) -> torch.Tensor:
    """ONNX Col2Im for any number of spatial dims: sums every column back into its place."""
    nd = len(image)
    padded = [image[i] + pads[i] + pads[nd + i] for i in range(nd)]
    counts = [(padded[i] - (block[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(nd)]
    # flat index in the padded image of (kernel offset, block position), built axis by axis
    idx = torch.zeros([1, 1], dtype=torch.int64, device=x.device)
    for i in range(nd):
        k = torch.arange(block[i], device=x.device) * dilations[i]
        p = torch.arange(counts[i], device=x.device) * strides[i]
        pos = k.unsqueeze(1) + p.unsqueeze(0)
        idx = (idx * padded[i]).reshape([idx.shape[0], 1, idx.shape[1], 1]) + pos.reshape(
            [1, block[i], 1, counts[i]]
        )
        idx = idx.reshape([idx.shape[0] * block[i], -1])
    n = x.shape[0]
    total_block = idx.shape[0]
    c = x.shape[1] // total_block
    n_pad = 1
    for s in padded:
        n_pad *= s
    out = torch.zeros([n, c, n_pad], dtype=x.dtype, device=x.device)
    out = out.index_add(2, idx.reshape(-1), x.reshape([n, c, -1]))
    out = out.reshape([n, c] + padded)
    for i in range(nd):
        out = out.narrow(2 + i, pads[i], image[i])
    return out


@lowers("Col2Im")
def col2im_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Col2Im(x, image_shape, block_shape) -> F.fold for 2-D symmetric pads, else col2im()
    image = list_input(ctx, args, 1, int)
    block = list_input(ctx, args, 2, int)
    if isinstance(block, list):
        nd = len(block)
    else:
        known = static_shape(node.inputs[2]) or static_shape(node.inputs[1])
        if known is None:
            raise Unsupported("Col2Im with run-time image and block shapes of unknown length")
        nd = known[0]
    dil = list(node.attr("dilations", None) or [1] * nd)
    pads = list(node.attr("pads", None) or [0] * (2 * nd))
    strides = list(node.attr("strides", None) or [1] * nd)
    if nd == 2 and isinstance(image, list) and pads[:2] == pads[2:]:
        return ctx.call(F.fold, args[0], image, block, dil, pads[:2], strides)
    return ctx.call(col2im, args[0], image, block, dil, pads, strides)
