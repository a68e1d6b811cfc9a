"""Lifting rules for vision ops the zoo found unlifted: nearest and (bi)linear upsampling,
pixel shuffle, group and instance normalization (ONNX opset 18 forms)."""

from __future__ import annotations

from typing import Any

import numpy as np

from neffkit.frontends.torchscript._base import (
    I64,
    Decline,
    F,
    binary,
    dtype,
    rank,
    rule,
    static,
)
from neffkit.ir import Value

_UPSAMPLE = {
    "aten::upsample_nearest1d": "nearest", "aten::upsample_nearest2d": "nearest",
    "aten::upsample_nearest3d": "nearest", "aten::upsample_linear1d": "linear",
    "aten::upsample_bilinear2d": "linear", "aten::upsample_trilinear3d": "linear",
}  # fmt: skip


@rule(*_UPSAMPLE)
def _upsample(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # upsample(x, size | scales) -> Resize(x, scales=[1, 1, s..] | sizes=shape[:2] ++ size)
    x = lx.tensor(a.get("self", a.get("input")))
    r = rank(x)
    mode = _UPSAMPLE[node.kind()]
    align = bool(static(lx, a.get("align_corners", False)))
    size = a.get("output_size")
    scales = a.get("scale_factors")
    if scales is None:  # the non-.vec form: scales_h/scales_w.. beside a size
        given = [a.get(k) for k in ("scales_d", "scales_h", "scales_w") if k in a]
        if size is None and given and all(s is not None for s in given):
            scales = given
    attrs: dict[str, Any] = {"mode": mode}
    if mode == "nearest":
        # torch's legacy nearest: source = floor(dst * in / out)
        attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        # torch: source = max((dst + 0.5) * in / out - 0.5, 0), half_pixel's form (an output
        # size of 1 included, where pytorch_half_pixel would read pixel 0 instead)
        attrs["coordinate_transformation_mode"] = "align_corners" if align else "half_pixel"
    if size is not None:
        lead = lx.emit("Slice", [lx.emit("Shape", [x], dtype=I64, rank=1),
                                 lx.constant(np.array([0])), lx.constant(np.array([2]))],
                       rank=1)  # fmt: skip
        sizes = lx.emit("Concat", [lead, lx.ints(size)], axis=0, rank=1)
        return lx.emit("Resize", [x, None, None, sizes], **attrs)
    if scales is None:
        raise Decline("upsampling with neither a size nor scales")
    scales = [float(s) for s in static(lx, scales, "scale factors")]
    if len(scales) != r - 2:
        raise Decline("scale factors do not match the rank")
    values = lx.constant(np.array([1.0, 1.0, *scales], np.float32))
    return lx.emit("Resize", [x, None, values], **attrs)


@rule("aten::pixel_shuffle")
def _pixel_shuffle(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # pixel_shuffle(x, r) -> DepthToSpace(x, r, CRD) for [N, C r^2, H, W]
    x = lx.tensor(a["self"])
    if rank(x) != 4:
        raise Decline("pixel_shuffle on a tensor that is not 4-D")
    return lx.emit("DepthToSpace", [x], blocksize=int(static(lx, a["upscale_factor"])),
                   mode="CRD")  # fmt: skip


def _normalize_groups(lx: Any, x: Value, groups: int, eps: float) -> Value:
    """``x`` [N, C, *] normalized over each of ``groups`` channel groups (0: one per channel)
    and the spatial dims: mean 0, variance 1 (biased), as group and instance norm do."""
    grouped = lx.emit("Reshape", [x, lx.constant(np.array([0, groups, -1], np.int64))], rank=3)
    axes = lx.constant(np.array([2], np.int64))
    centred = lx.emit("Sub", [grouped, lx.emit("ReduceMean", [grouped, axes], keepdims=1)])
    var = lx.emit("ReduceMean", [lx.emit("Mul", [centred, centred]), axes], keepdims=1)
    std = lx.emit("Sqrt", [binary(lx, "Add", var, float(eps))])
    y = lx.emit("Div", [centred, std])
    return lx.emit("Reshape", [y, lx.emit("Shape", [x], dtype=I64, rank=1)], rank=rank(x))


def _affine(lx: Any, y: Value, weight: Any, bias: Any) -> Value:
    """``y * w + b`` with per-channel ``w`` and ``b`` [C] broadcast over [N, C, *]."""
    r = rank(y)
    to = lx.constant(np.array([-1] + [1] * (r - 2), np.int64))
    if weight is not None:
        y = lx.emit("Mul", [y, lx.emit("Reshape", [lx.tensor(weight), to], rank=r - 1)], rank=r)
    if bias is not None:
        y = lx.emit("Add", [y, lx.emit("Reshape", [lx.tensor(bias), to], rank=r - 1)], rank=r)
    return y


@rule("aten::group_norm")
def _group_norm(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # group_norm(x, g, w, b) -> Reshape(x, [N, g, -1]), normalize on axis 2, reshape back, w, b
    x = lx.tensor(a["input"])
    if dtype(x) not in (F, None):
        raise Decline("group_norm of a non-float32 tensor")
    groups = int(static(lx, a["num_groups"]))
    y = _normalize_groups(lx, x, groups, float(static(lx, a["eps"])))
    return _affine(lx, y, a.get("weight"), a.get("bias"))


@rule("aten::instance_norm")
def _instance_norm(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # instance_norm(x, w, b) -> per-channel group norm (input statistics)
    if not static(lx, a["use_input_stats"]):
        raise Decline("instance_norm on running statistics")
    x = lx.tensor(a["input"])
    if dtype(x) not in (F, None):
        raise Decline("instance_norm of a non-float32 tensor")
    y = _normalize_groups(lx, x, 0, float(static(lx, a["eps"])))
    return _affine(lx, y, a.get("weight"), a.get("bias"))
