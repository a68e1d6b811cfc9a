"""Lowerings of object detection ops: NonMaxSuppression and RoiAlign.

Both follow the ONNX reference implementation step by step (greedy suppression in score order;
bilinear samples on a per-ROI grid) so ties and boundaries come out the same. The helpers are
written in the TorchScript subset.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node


def _first(t: Tensor | None) -> Tensor | None:
    """The first element of an optional scalar-like input, None when absent or empty."""
    if t is None or t.numel() == 0:
        return None
    return t.reshape(-1)[0]


def _suppression(boxes: Tensor, center_point_box: int, iou_threshold: Tensor) -> Tensor:
    """[n, n] bool: box i suppresses box j (IoU above the threshold), as the reference judges."""
    if center_point_box == 0:
        y1 = torch.minimum(boxes[:, 0], boxes[:, 2])
        y2 = torch.maximum(boxes[:, 0], boxes[:, 2])
        x1 = torch.minimum(boxes[:, 1], boxes[:, 3])
        x2 = torch.maximum(boxes[:, 1], boxes[:, 3])
    else:
        hw = boxes[:, 2] / 2
        hh = boxes[:, 3] / 2
        x1 = boxes[:, 0] - hw
        x2 = boxes[:, 0] + hw
        y1 = boxes[:, 1] - hh
        y2 = boxes[:, 1] + hh
    ix1 = torch.maximum(x1.unsqueeze(1), x1.unsqueeze(0))
    ix2 = torch.minimum(x2.unsqueeze(1), x2.unsqueeze(0))
    iy1 = torch.maximum(y1.unsqueeze(1), y1.unsqueeze(0))
    iy2 = torch.minimum(y2.unsqueeze(1), y2.unsqueeze(0))
    inter = (ix2 - ix1) * (iy2 - iy1)
    area = (x2 - x1) * (y2 - y1)
    a1 = area.unsqueeze(1)
    a2 = area.unsqueeze(0)
    union = a1 + a2 - inter
    ok = (ix2 > ix1) & (iy2 > iy1) & (inter > 0) & (a1 > 0) & (a2 > 0) & (union > 0)
    return ok & (inter / torch.where(ok, union, torch.ones_like(union)) > iou_threshold)


def non_max_suppression(
    boxes: Tensor,
    scores: Tensor,
    max_output: Tensor | None,
    iou_threshold: Tensor | None,
    score_threshold: Tensor | None,
    center_point_box: int,
) -> Tensor:
    """ONNX NonMaxSuppression: [selected, 3] int64 rows (batch, class, box)."""
    m = _first(max_output)
    limit = 0 if m is None else max(int(m.item()), 0)
    iou = _first(iou_threshold)
    iou_t = torch.zeros([], dtype=boxes.dtype) if iou is None else iou.to(boxes.dtype).cpu()
    st = _first(score_threshold)
    rows: list[int] = []
    for b in range(boxes.size(0)):
        sup = torch.jit.annotate(
            list[list[bool]], _suppression(boxes[b].cpu(), center_point_box, iou_t).tolist()
        )
        for c in range(scores.size(1)):
            s = scores[b, c].cpu()
            keep = torch.ones(s.shape, dtype=torch.bool)
            if st is not None:
                keep = s > st.to(s.dtype).cpu()
            order = torch.jit.annotate(
                list[int], torch.sort(s, descending=True, stable=True)[1].tolist()
            )
            kept = torch.jit.annotate(list[bool], keep.tolist())
            chosen: list[int] = []
            for i in order:
                if len(chosen) >= limit:
                    break
                if not kept[i]:
                    continue
                ok = True
                for j in chosen:
                    if sup[i][j]:
                        ok = False
                        break
                if ok:
                    chosen.append(i)
                    rows.extend([b, c, i])
    return torch.tensor(rows, dtype=torch.int64, device=boxes.device).reshape([-1, 3])


def _bilinear_axis(
    start: float, bin_size: float, grid: int, pooled: int, size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Sample positions along one axis: (low, high, low weight, high weight, in-range)."""
    i = torch.arange(pooled * grid, dtype=torch.float64)
    p = torch.div(i, grid, rounding_mode="floor")
    g = i - p * grid
    pos = start + p * bin_size + (g + 0.5) * bin_size / grid
    valid = (pos >= -1.0) & (pos <= float(size))
    pos = pos.clamp(min=0.0)
    low = pos.floor().to(torch.int64)
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    pos = torch.where(edge, low.to(torch.float64), pos)
    frac = pos - low.to(torch.float64)
    zero = torch.zeros_like(frac)
    return low, high, torch.where(valid, 1.0 - frac, zero), torch.where(valid, frac, zero), valid


def roi_align(
    x: Tensor,
    rois: Tensor,
    batch_indices: Tensor,
    mode: str,
    out_h: int,
    out_w: int,
    sampling_ratio: int,
    spatial_scale: float,
    half_pixel: bool,
) -> Tensor:
    """ONNX RoiAlign (avg or max) over NCHW ``x``; one bilinear sample grid per ROI."""
    n_rois = rois.size(0)
    c = x.size(1)
    h = x.size(2)
    w = x.size(3)
    out = torch.zeros([n_rois, c, out_h, out_w], dtype=x.dtype, device=x.device)
    boxes = torch.jit.annotate(list[list[float]], rois.to(torch.float64).cpu().tolist())
    bidx = torch.jit.annotate(list[int], batch_indices.to(torch.int64).cpu().tolist())
    offset = 0.5 if half_pixel else 0.0
    for r in range(n_rois):
        x0 = boxes[r][0] * spatial_scale - offset
        y0 = boxes[r][1] * spatial_scale - offset
        rw = boxes[r][2] * spatial_scale - offset - x0
        rh = boxes[r][3] * spatial_scale - offset - y0
        if not half_pixel:
            rw = max(rw, 1.0)
            rh = max(rh, 1.0)
        gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rh / out_h))
        gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rw / out_w))
        if gh <= 0 or gw <= 0:
            continue
        ylo, yhi, wyl, wyh, _ = _bilinear_axis(y0, rh / out_h, gh, out_h, h)
        xlo, xhi, wxl, wxh, _ = _bilinear_axis(x0, rw / out_w, gw, out_w, w)
        dev = x.device
        ylo, yhi, xlo, xhi = ylo.to(dev), yhi.to(dev), xlo.to(dev), xhi.to(dev)
        feat = x[bidx[r]].to(torch.float64)  # [C, H, W]
        rows_lo = feat.index_select(1, ylo)
        rows_hi = feat.index_select(1, yhi)
        w1 = (wyl.unsqueeze(1) * wxl.unsqueeze(0)).to(dev)
        w2 = (wyl.unsqueeze(1) * wxh.unsqueeze(0)).to(dev)
        w3 = (wyh.unsqueeze(1) * wxl.unsqueeze(0)).to(dev)
        w4 = (wyh.unsqueeze(1) * wxh.unsqueeze(0)).to(dev)
        t1 = w1 * rows_lo.index_select(2, xlo)
        t2 = w2 * rows_lo.index_select(2, xhi)
        t3 = w3 * rows_hi.index_select(2, xlo)
        t4 = w4 * rows_hi.index_select(2, xhi)
        if mode == "avg":
            v = (t1 + t2 + t3 + t4).reshape([c, out_h, gh, out_w, gw]).sum([2, 4]) / (gh * gw)
        else:
            v = torch.maximum(torch.maximum(t1, t2), torch.maximum(t3, t4))
            v = v.reshape([c, out_h, gh, out_w, gw]).amax([2, 4])
        out[r] = v.to(x.dtype)
    return out


@lowers("NonMaxSuppression")
def nms(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # NonMaxSuppression(boxes, scores, max, iou, score) -> greedy selection, per batch and class
    opt = [args[i] if i < len(args) else None for i in (2, 3, 4)]
    center = int(node.attr("center_point_box", 0))
    return ctx.call(non_max_suppression, args[0], args[1], *opt, center)


@lowers("RoiAlign")
def roi_align_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # RoiAlign(x, rois, batch_indices) -> bilinear sampling on a grid per ROI, avg or max
    mode = node.attr("mode", "avg")
    if mode not in ("avg", "max"):
        raise Unsupported(f"RoiAlign mode {mode!r}")
    ctm = node.attr("coordinate_transformation_mode", None)
    if ctm is None:
        ctm = "half_pixel" if ctx.opset >= 16 else "output_half_pixel"
    return ctx.call(
        roi_align,
        args[0],
        args[1],
        args[2],
        mode,
        int(node.attr("output_height", 1)),
        int(node.attr("output_width", 1)),
        int(node.attr("sampling_ratio", 0)),
        float(node.attr("spatial_scale", 1.0)),
        ctm == "half_pixel",
    )
