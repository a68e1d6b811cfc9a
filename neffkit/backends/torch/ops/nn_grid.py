"""Lowerings of spatial rearrangement and sampling ops: DepthToSpace, SpaceToDepth,
GridSample, AffineGrid and Col2Im."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neffkit.backends.torch.lowering import LoweringContext
from neffkit.backends.torch.ops.nn import static_shape
from neffkit.backends.torch.ops.nn_resize import list_input, str_attr
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node

# -- DepthToSpace / SpaceToDepth -------------------------------------------------------------


def depth_to_space_dcr(x: torch.Tensor, b: int) -> torch.Tensor:
    """DepthToSpace in DCR order: channels hold (block row, block column, depth)."""
    n, c, h, w = x.shape
    y = x.reshape([n, b, b, c // (b * b), h, w]).permute([0, 3, 4, 1, 5, 2])
    return y.reshape([n, c // (b * b), h * b, w * b])


def space_to_depth_dcr(x: torch.Tensor, b: int) -> torch.Tensor:
    """SpaceToDepth in DCR order (the inverse of ``depth_to_space_dcr``)."""
    n, c, h, w = x.shape
    y = x.reshape([n, c, h // b, b, w // b, b]).permute([0, 3, 5, 1, 2, 4])
    return y.reshape([n, c * b * b, h // b, w // b])


@lowers("DepthToSpace")
def depth_to_space(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # DepthToSpace: CRD -> F.pixel_shuffle(x, b); DCR -> depth_to_space_dcr(x, b)
    b = int(node.attr("blocksize"))
    if str_attr(node, "mode", "DCR") == "CRD":
        return ctx.call(F.pixel_shuffle, args[0], b)
    return ctx.call(depth_to_space_dcr, args[0], b)


@lowers("SpaceToDepth")
def space_to_depth(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # SpaceToDepth: CRD -> F.pixel_unshuffle(x, b); DCR (default) -> space_to_depth_dcr(x, b)
    b = int(node.attr("blocksize"))
    if str_attr(node, "mode", "DCR") == "CRD":
        return ctx.call(F.pixel_unshuffle, args[0], b)
    return ctx.call(space_to_depth_dcr, args[0], b)


# -- GridSample / AffineGrid / Col2Im --------------------------------------------------------


@lowers("GridSample")
def grid_sample(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # GridSample(x, grid) -> F.grid_sample(x, grid, mode, padding_mode, align_corners)
    mode = str_attr(node, "mode", "linear" if ctx.opset >= 20 else "bilinear")
    tmode = {
        "linear": "bilinear",
        "bilinear": "bilinear",
        "nearest": "nearest",
        "cubic": "bicubic",
        "bicubic": "bicubic",
    }.get(mode)
    if tmode is None:
        raise Unsupported(f"GridSample mode {mode!r}")
    pad = str_attr(node, "padding_mode", "zeros")
    align = bool(node.attr("align_corners", 0))
    return ctx.call(F.grid_sample, args[0], args[1], tmode, pad, align)


@lowers("AffineGrid")
def affine_grid(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # AffineGrid(theta, size) -> F.affine_grid(theta, size, align_corners)
    size = list_input(ctx, args, 1, int)
    align = bool(node.attr("align_corners", 0))
    return ctx.call(F.affine_grid, args[0], size, align)


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
