"""Lowerings of resizing and grid sampling: Resize, Upsample, GridSample and AffineGrid.

Resize follows the ONNX reference exactly, one axis at a time (the op is separable): each
output index is mapped to a source coordinate by ``coordinate_transformation_mode``, then
nearest picks one neighbour (an ``index_select``, exact for any dtype) while linear / cubic
(antialiased or not) weigh ``n`` neighbours. Cases where ``F.interpolate`` computes the same
thing (integer nearest upsampling, half_pixel / align_corners (bi/tri)linear) use it instead.
GridSample and AffineGrid map to ``F.grid_sample`` and ``F.affine_grid``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.nn import FLOAT_TYPES, list_input, static_shape, str_attr
from neffkit.backends.torch.helpers.shapes import rank_of
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node

NEAREST = "nearest"
LINEAR = "linear"
CUBIC = "cubic"


def _source_coords(
    out_size: int,
    in_size: int,
    scale: float,
    coord: str,
    roi_start: float,
    roi_end: float,
    device: torch.device,
) -> torch.Tensor:
    """Source coordinate (float64) of each output index along one axis."""
    y = torch.arange(out_size, dtype=torch.float64, device=device)
    out_w = scale * in_size
    if coord == "align_corners":
        if out_w == 1:
            return torch.zeros_like(y)
        return y * (in_size - 1) / (out_w - 1)
    if coord == "asymmetric":
        return y / scale
    if coord == "tf_crop_and_resize":
        if out_w == 1:
            x = torch.full_like(y, (roi_end - roi_start) * (in_size - 1) / 2)
        else:
            x = y * (roi_end - roi_start) * (in_size - 1) / (out_w - 1)
        return x + roi_start * (in_size - 1)
    if coord == "pytorch_half_pixel":
        if out_w == 1:
            return torch.full_like(y, -0.5)
        return (y + 0.5) / scale - 0.5
    if coord == "half_pixel_symmetric":
        offset = in_size / 2 * (1 - out_size / out_w)
        return offset + (y + 0.5) / scale - 0.5
    return (y + 0.5) / scale - 0.5  # half_pixel


def _coeffs(
    ratio: torch.Tensor, scale: float, mode: str, cubic_a: float, antialias: bool
) -> torch.Tensor:
    """``[out, n]`` interpolation weights from each output's fractional position in (0, 1]."""
    r = ratio.unsqueeze(1)
    if mode == "linear" and not antialias:
        return torch.cat([1 - r, r], 1)
    a = cubic_a
    if mode == "cubic" and not antialias:
        return torch.cat(
            [
                ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                ((a + 2) * r - (a + 3)) * r * r + 1,
                ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
                ((a * (2 - r) - 5 * a) * (2 - r) + 8 * a) * (2 - r) - 4 * a,
            ],
            1,
        )
    s = min(scale, 1.0)
    if mode == "linear":
        start = int(math.floor(-1 / s) + 1)
        n = 2 - 2 * start
        pos = torch.arange(start, start + n, dtype=torch.float64, device=ratio.device)
        c = (1 - ((pos.unsqueeze(0) - r) * s).abs()).clamp(0, 1)
    else:
        start = int(math.floor(-2 / s) + 1)
        n = 2 - 2 * start
        pos = torch.arange(start, start + n, dtype=torch.float64, device=ratio.device)
        t = ((pos.unsqueeze(0) - r) * s).abs()
        near = ((a + 2) * t - (a + 3)) * t * t + 1
        far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        c = torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))
    return c / c.sum(1, keepdim=True)


def _neighbours(x_ori: torch.Tensor, n: int) -> torch.Tensor:
    """``[out, n]`` indices of the ``n`` inputs nearest each source coordinate (ties to the
    smaller index), possibly outside the input (clamped by the caller: edge padding)."""
    pad = (n + 1) // 2
    xp = x_ori + pad
    p = torch.floor(xp)
    frac = xp - p
    if n % 2 == 0:
        off = torch.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        base = -((n - 1) // 2)
        off = torch.where(frac <= 0.5, base, base + 1)
    start = p.long() + off - pad
    return start.unsqueeze(1) + torch.arange(n, device=x_ori.device).unsqueeze(0)


def _int_range(dtype: torch.dtype) -> tuple[float, float]:
    """The value range of an integer dtype (``torch.iinfo`` is not scriptable)."""
    if dtype == torch.uint8:
        return 0.0, 255.0
    if dtype == torch.int8:
        return -128.0, 127.0
    if dtype == torch.int16:
        return -32768.0, 32767.0
    if dtype == torch.int32:
        return -2147483648.0, 2147483647.0
    return -9.223372036854775808e18, 9.223372036854775807e18


def resize_axis(
    x: torch.Tensor,
    axis: int,
    scale: float,
    out_size: int,
    roi_start: float,
    roi_end: float,
    mode: str,
    coord: str,
    nearest_mode: str,
    cubic_a: float,
    exclude_outside: bool,
    extrapolation: float,
    antialias: bool,
) -> torch.Tensor:
    """Resizes ``x`` along one axis as the ONNX reference does."""
    in_size = x.shape[axis]
    x_ori = _source_coords(out_size, in_size, scale, coord, roi_start, roi_end, x.device)
    x_int = torch.floor(x_ori)
    ratio = torch.where(x_ori == x_int, torch.ones_like(x_ori), x_ori - x_int)
    if mode == "nearest":
        nb = _neighbours(x_ori, 2)
        if nearest_mode == "round_prefer_ceil":
            second = ratio >= 0.5
        elif nearest_mode == "floor":
            second = ratio == 1
        elif nearest_mode == "ceil":
            second = ratio > 0
        else:
            second = ratio > 0.5
        idx = torch.where(second, nb[:, 1], nb[:, 0]).clamp(0, in_size - 1)
        y = x.index_select(axis, idx)
    else:
        c = _coeffs(ratio, scale, mode, cubic_a, antialias)
        n = c.shape[1]
        nb = _neighbours(x_ori, n)
        if exclude_outside:
            c = torch.where((nb < 0) | (nb >= in_size), torch.zeros_like(c), c)
            total = c.sum(1, keepdim=True)
            c = c / torch.where(total == 0, torch.ones_like(total), total)
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        g = x.to(work).index_select(axis, nb.clamp(0, in_size - 1).reshape(-1))
        shape: list[int] = list(x.shape)
        shape[axis] = out_size
        shape.insert(axis + 1, n)
        cshape = [1] * len(shape)
        cshape[axis] = out_size
        cshape[axis + 1] = n
        y = (g.reshape(shape) * c.to(work).reshape(cshape)).sum(axis + 1)
        if x.is_floating_point():
            y = y.to(x.dtype)
        else:
            lo, hi = _int_range(x.dtype)
            y = y.round().clamp(lo, hi).to(x.dtype)
    if coord == "tf_crop_and_resize":
        outside = (x_ori < 0) | (x_ori > in_size - 1)
        mshape = [1] * x.dim()
        mshape[axis] = out_size
        y = torch.where(outside.reshape(mshape), torch.full_like(y, extrapolation), y)
    return y


def resize(
    x: torch.Tensor,
    scales: list[float],
    sizes: list[int],
    roi: list[float],
    axes: list[int],
    mode: str,
    coord: str,
    nearest_mode: str,
    cubic_a: float,
    exclude_outside: bool,
    extrapolation: float,
    antialias: bool,
    policy: str,
) -> torch.Tensor:
    """ONNX Resize; ``scales`` / ``sizes`` / ``roi`` are empty when not given."""
    r = x.dim()
    if len(axes) == 0:
        axes = list(range(r))
    axes = [a + r if a < 0 else a for a in axes]
    k = len(axes)
    in_sizes = [int(x.shape[a]) for a in axes]
    if len(sizes) > 0:
        sc = [sizes[i] / in_sizes[i] for i in range(k)]
        out = sizes
        if policy != "stretch":
            s = min(sc) if policy == "not_larger" else max(sc)
            sc = [s for _ in range(k)]
            out = [int(s * in_sizes[i] + 0.5) for i in range(k)]
    else:
        sc = scales
        out = [int(math.floor(sc[i] * in_sizes[i])) for i in range(k)]
    for i in range(k):
        lo = roi[i] if len(roi) > 0 else 0.0
        hi = roi[k + i] if len(roi) > 0 else 1.0
        if abs(sc[i] - 1.0) < 1e-9 and out[i] == in_sizes[i] and lo == 0.0 and hi == 1.0:
            continue
        x = resize_axis(
            x,
            axes[i],
            sc[i],
            out[i],
            lo,
            hi,
            mode,
            coord,
            nearest_mode,
            cubic_a,
            exclude_outside,
            extrapolation,
            antialias,
        )
    return x


def _interpolate_fast_path(
    ctx: LoweringContext,
    node: Node,
    x: Arg,
    scales: Arg,
    sizes: Arg,
    axes: list[int],
    mode: str,
    coord: str,
    nearest_mode: str,
    antialias: bool,
    policy: str,
) -> Arg | None:
    """``F.interpolate`` when it computes exactly the ONNX result, else None."""
    rank = rank_of(node.inputs[0])
    if rank is None or not 3 <= rank <= 5 or antialias or policy != "stretch":
        return None
    if not isinstance(scales, list) or not isinstance(sizes, list):
        return None
    full = list(range(rank))
    norm_axes = [a + rank if a < 0 else a for a in axes] or full
    spatial = full[2:]
    if scales:
        per = dict(zip(norm_axes, scales))
        if any(per.get(a, 1.0) != 1.0 for a in (0, 1)):
            return None
        factors = [float(per.get(a, 1.0)) for a in spatial]
        kw: dict = {"scale_factor": factors}
    elif sizes:
        shape = static_shape(node.inputs[0])
        per = dict(zip(norm_axes, sizes))
        if shape is None or any(per.get(a, shape[a]) != shape[a] for a in (0, 1)):
            return None
        out = [int(per.get(a, shape[a])) for a in spatial]
        factors = [o / shape[a] for o, a in zip(out, spatial)]
        kw = {"size": out}
    else:
        return None
    if mode == "nearest":
        if "size" in kw or not all(f.is_integer() and f >= 1 for f in factors):
            return None
        if coord == "tf_crop_and_resize":
            return None
        for f in set(factors):  # check the index pattern ONNX gives equals floor(y / f)
            for n_in in (1, 2, 3, 5):
                idx = resize_axis(
                    torch.arange(n_in, dtype=torch.float64),
                    0,
                    f,
                    int(n_in * f),
                    0.0,
                    1.0,
                    NEAREST,
                    coord,
                    nearest_mode,
                    -0.75,
                    False,
                    0.0,
                    False,
                )
                if not torch.equal(idx, torch.arange(int(n_in * f)).double() // f):
                    return None
        return ctx.call(F.interpolate, x, mode="nearest", **kw)
    if mode != "linear" or node.inputs[0].dtype not in FLOAT_TYPES:
        return None
    if coord == "align_corners":
        align = True
    elif coord == "half_pixel" or (coord == "pytorch_half_pixel" and "size" in kw):
        align = False
        if coord == "pytorch_half_pixel" and any(o == 1 for o in kw["size"]):
            return None
    else:
        return None
    if "scale_factor" in kw and align:
        return None  # ONNX align_corners uses scale * in, not the integer size
    tmode = {3: "linear", 4: "bilinear", 5: "trilinear"}[rank]
    return ctx.call(F.interpolate, x, mode=tmode, align_corners=align, **kw)


@lowers("Resize")
def resize_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Resize -> F.interpolate where it matches ONNX exactly, else the exact resize() helper
    x = args[0]
    mode = str_attr(node, "mode", "nearest")
    if ctx.opset < 11:
        scales = list_input(ctx, args, 1, float)
        sizes: Arg = []
        roi: Arg = []
        coord, nearest_mode = "asymmetric", "floor"
    else:
        roi = list_input(ctx, args, 1, float)
        scales = list_input(ctx, args, 2, float)
        sizes = list_input(ctx, args, 3, int)
        coord = str_attr(node, "coordinate_transformation_mode", "half_pixel")
        nearest_mode = str_attr(node, "nearest_mode", "round_prefer_floor")
    if isinstance(scales, list) and isinstance(sizes, list) and not scales and not sizes:
        raise Unsupported("Resize needs scales or sizes")
    axes = list(node.attr("axes", None) or [])
    antialias = bool(node.attr("antialias", 0))
    policy = str_attr(node, "keep_aspect_ratio_policy", "stretch")
    codes = {"nearest": NEAREST, "linear": LINEAR, "bilinear": LINEAR, "cubic": CUBIC}
    if mode not in codes:
        raise Unsupported(f"Resize mode {mode!r}")
    mode = "linear" if mode == "bilinear" else mode
    if coord != "tf_crop_and_resize":
        roi = []
    if isinstance(sizes, list) and sizes:
        scales = []
    fast = _interpolate_fast_path(
        ctx, node, x, scales, sizes, axes, mode, coord, nearest_mode, antialias, policy
    )
    if fast is not None:
        return fast
    return ctx.call(
        resize,
        x,
        scales,
        sizes,
        roi,
        axes,
        codes[mode],
        coord,
        nearest_mode,
        float(node.attr("cubic_coeff_a", -0.75)),
        bool(node.attr("exclude_outside", 0)),
        float(node.attr("extrapolation_value", 0.0)),
        antialias,
        policy,
    )


@lowers("Upsample")
def upsample(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Upsample (asymmetric coordinates, nearest rounds down) -> Resize's lowering
    mode = str_attr(node, "mode", "nearest")
    if ctx.opset < 9:
        scales: Arg = [float(s) for s in node.attr("scales")]
    else:
        scales = list_input(ctx, args, 1, float)
    x = args[0]
    code = LINEAR if mode in ("linear", "bilinear") else NEAREST
    fast = _interpolate_fast_path(
        ctx,
        node,
        x,
        scales,
        [],
        [],
        code,
        "asymmetric",
        "floor",
        False,
        "stretch",
    )
    if fast is not None:
        return fast
    return ctx.call(
        resize,
        x,
        scales,
        [],
        [],
        [],
        code,
        "asymmetric",
        "floor",
        -0.75,
        False,
        0.0,
        False,
        "stretch",
    )


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
