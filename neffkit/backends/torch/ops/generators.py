"""Lowerings of ops that make tensors: Constant, ConstantOfShape, Range and EyeLike.

Constant values become buffers of the module; constant shape-like inputs become static Python
arguments; the runtime helpers are written in the TorchScript subset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from onnx import TensorProto as TP
from torch import Tensor

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.convert import constant_attr_value
from neffkit.backends.torch.helpers.shapes import device_of, ints_arg, torch_dtype
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node
from neffkit.ir.tensor import onnx_dtype


@lowers("Constant")
def constant(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Constant(value) -> a buffer of the module
    return ctx.tensor(constant_attr_value(node), node.outputs[0].name or "const")


def range_dynamic(start: Tensor, limit: Tensor, delta: Tensor) -> Tensor:
    """ONNX Range: max(ceil((limit - start) / delta), 0) values, computed like numpy.arange."""
    if start.is_floating_point():
        s = float(start.item())
        e = float(limit.item())
        d = float(delta.item())
        if (e - s) * d <= 0:
            return torch.zeros([0], dtype=start.dtype, device=start.device)
        r = torch.arange(s, e, d, dtype=torch.float64, device=start.device)
    else:
        si = int(start.item())
        ei = int(limit.item())
        di = int(delta.item())
        if (ei - si) * di <= 0:
            return torch.zeros([0], dtype=start.dtype, device=start.device)
        r = torch.arange(si, ei, di, dtype=torch.int64, device=start.device)
    return r.to(start.dtype)


def eye_like(x: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """ONNX EyeLike: ones on the k-th diagonal of a tensor shaped like 2-D ``x``."""
    n = x.size(0)
    m = x.size(1) if x.dim() > 1 else n
    rows = torch.arange(n, device=x.device).unsqueeze(1)
    cols = torch.arange(m, device=x.device).unsqueeze(0)
    return (cols - rows == k).to(dtype)


@lowers("ConstantOfShape")
def constant_of_shape(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # ConstantOfShape(shape, value) -> torch.full(shape, value, dtype=value's dtype)
    t = node.attr("value", None)
    arr = np.zeros(1, np.float32) if t is None else np.asarray(t.numpy()).reshape(-1)
    dtype = torch_dtype(onnx_dtype(arr.dtype))
    v: Any = arr[0]
    if dtype == torch.bool:
        v = bool(v)
    elif dtype.is_floating_point:
        v = float(v)
    elif dtype.is_complex:
        raise Unsupported("complex ConstantOfShape")
    else:
        v = int(v)
    dims = ints_arg(ctx, 0, args, symbolic=True)
    return ctx.call(torch.full, dims, v, dtype=dtype, device=device_of(ctx, args[0]))


@lowers("Range")
def range_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Range(start, limit, delta) -> torch.arange(start, limit, delta) in the inputs' dtype
    consts = [ctx.input_constant(i) for i in range(3)]
    dt = node.inputs[0].dtype or node.outputs[0].dtype
    if dt is None:
        dt = next((onnx_dtype(c.dtype) for c in consts if c is not None), None)
    if any(c is None for c in consts) and dt in (TP.INT64, TP.INT32):
        # Range(0, x.size(1), 1) -> torch.arange(0, x.size(1), 1): a size, not a tensor read
        known = [ctx.known_ints(node.inputs[i]) for i in range(3)]
        if all(k is not None and k[1] for k in known):
            s, e, d = (k[0][0] for k in known if k is not None)
            if isinstance(d, int) and d != 0:
                dtype = torch_dtype(dt)
                dev = device_of(ctx, args[0])
                y = ctx.call(torch.arange, s, e, d, dtype=torch.int64, device=dev)
                return y if dtype == torch.int64 else ctx.method("to", y, dtype)
    if any(c is None for c in consts) or dt is None:
        return ctx.call(range_dynamic, *args[:3])
    dtype = torch_dtype(dt)
    s, e, d = (np.asarray(c).reshape(-1)[0].item() for c in consts)
    if d == 0:
        raise Unsupported("Range with a zero delta")
    dev = device_of(ctx, args[0])
    count = max(int(np.ceil((float(e) - float(s)) / float(d))), 0)
    if count == 0:
        return ctx.call(torch.zeros, [0], dtype=dtype, device=dev)
    wide = torch.float64 if dtype.is_floating_point else torch.int64
    y = ctx.call(torch.arange, s, e, d, dtype=wide, device=dev)
    return y if wide == dtype else ctx.method("to", y, dtype)


@lowers("EyeLike")
def eyelike(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # EyeLike(x, k, dtype) -> ones where col - row == k
    dt = node.attr("dtype", None) or node.inputs[0].dtype
    if dt is None:
        raise Unsupported("EyeLike of an input of unknown dtype")
    return ctx.call(eye_like, args[0], int(node.attr("k", 0)), torch_dtype(dt))
