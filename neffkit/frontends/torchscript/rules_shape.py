"""Lifting rules for shape and layout ops: size, reshape/view/flatten/unflatten, permute and
transpose, (un)squeeze, select/slice, cat/stack/chunk, expand, tensor factories."""

from __future__ import annotations

from typing import Any

import numpy as np

from neffkit.frontends.torchscript._base import (
    I64,
    INT64_MAX,
    B,
    Decline,
    F,
    dtype,
    dtype_from_torch,
    norm_dim,
    rank,
    rule,
    static,
)
from neffkit.ir import Value


def _shape(lx: Any, x: Value) -> Value:
    return lx.emit("Shape", [x], dtype=I64, rank=1)


def _shape_slice(lx: Any, x: Value, start: int, end: int) -> Value:
    """``x.shape[start:end]`` as a 1-D int64 tensor."""
    c = lx.constant
    return lx.emit("Slice", [_shape(lx, x), c(np.array([start])), c(np.array([end]))], rank=1)


def _static_dim(x: Value, node: Any, dim: int) -> int | None:
    """Size ``dim`` of ``x`` if known: from the IR type, else from the TorchScript type of the
    node's first input (a trace records the example's sizes)."""
    shape = x.type.shape if x.type is not None else None
    if shape is None or shape[dim] is None:
        shape = node.inputsAt(0).type().varyingSizes()
    size = shape[dim] if shape is not None else None
    return size if isinstance(size, int) else None


@rule("aten::size")
def _size(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    if a.get("dim") is None:
        return _shape(lx, x)
    dim = static(lx, a["dim"])
    return lx.emit("Gather", [_shape(lx, x), lx.constant(np.array(dim))], axis=0, rank=0)


@rule("aten::reshape", "aten::view")
def _reshape(lx: Any, a: dict[str, Any], node: Any) -> Any:
    shape = a.get("shape", a.get("size"))
    n = len(shape) if isinstance(shape, list | tuple) else None
    return lx.emit("Reshape", [lx.tensor(a["self"]), lx.ints(shape)], rank=n)


@rule("aten::flatten")
def _flatten(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # flatten(x, s, e) -> Reshape(x, shape[:s] ++ [-1] ++ shape[e+1:])
    x = lx.tensor(a["self"])
    s, e = int(static(lx, a["start_dim"])), int(static(lx, a["end_dim"]))
    r = rank(x)
    s, e = norm_dim(s, r), norm_dim(e, r)
    if r == 0:
        return lx.emit("Reshape", [x, lx.constant(np.array([1]))], rank=1)
    parts = [_shape_slice(lx, x, 0, s), lx.constant(np.array([-1])),
             _shape_slice(lx, x, e + 1, INT64_MAX)]  # fmt: skip
    shape = lx.emit("Concat", parts, axis=0, rank=1)
    return lx.emit("Reshape", [x, shape], rank=r - (e - s))


@rule("aten::unflatten")
def _unflatten(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    r = rank(x)
    d = norm_dim(int(static(lx, a["dim"])), r)
    sizes = a["sizes"]
    parts = [_shape_slice(lx, x, 0, d), lx.ints(sizes), _shape_slice(lx, x, d + 1, INT64_MAX)]
    shape = lx.emit("Concat", parts, axis=0, rank=1)
    return lx.emit("Reshape", [x, shape], rank=r - 1 + len(sizes))


@rule("aten::permute")
def _permute(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    dims = [int(d) for d in static(lx, a["dims"])]
    return lx.emit("Transpose", [x], perm=[norm_dim(d, len(dims)) for d in dims])


@rule("aten::transpose", "aten::t")
def _transpose(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    r = rank(x)
    if node.kind() == "aten::t":
        if r < 2:
            return x
        d0, d1 = 0, 1
    else:
        d0, d1 = (norm_dim(int(static(lx, a[k])), r) for k in ("dim0", "dim1"))
    perm = list(range(r))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return lx.emit("Transpose", [x], perm=perm)


@rule("aten::unsqueeze")
def _unsqueeze(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    r = x.type.rank if x.type is not None else None
    dim = lx.ints([a["dim"]])
    return lx.emit("Unsqueeze", [x, dim], rank=None if r is None else r + 1)


@rule("aten::squeeze")
def _squeeze(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    dims = a.get("dim")
    if dims is None:
        return lx.emit("Squeeze", [x], rank=None)
    dims = dims if isinstance(dims, list | tuple) else [dims]
    # torch drops a listed dim only when it is 1 (ONNX Squeeze refuses other sizes)
    shape = x.type.shape if x.type is not None else None
    r = rank(x)
    dims = [norm_dim(int(static(lx, d)), r) for d in dims]
    if shape is not None and all(shape[d] == 1 for d in dims):
        return lx.emit("Squeeze", [x, lx.ints(dims)], rank=r - len(dims))
    # sizes unknown: Reshape(x, Compress(shape, keep)), keep = not listed, or size != 1
    sizes = _shape(lx, x)
    listed = lx.constant(np.isin(np.arange(r), dims))
    ones = lx.emit("Equal", [sizes, lx.constant(np.array(1))], dtype=B, rank=1)
    drop = lx.emit("And", [listed, ones], dtype=B, rank=1)
    kept = lx.emit("Compress", [sizes, lx.emit("Not", [drop])], axis=0, dtype=I64, rank=1)
    return lx.emit("Reshape", [x, kept], rank=None)


@rule("aten::select")
def _select(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    r = x.type.rank if x.type is not None else None
    return lx.emit("Gather", [x, lx.int64(a["index"])], axis=int(static(lx, a["dim"])),
                   rank=None if r is None else r - 1)  # fmt: skip


@rule("aten::slice")
def _slice(lx: Any, a: dict[str, Any], node: Any) -> Any:
    if "l" in a:  # slice.t: a list (a shape, say) -> Python slicing, or Slice on the 1-D tensor
        return _slice_list(lx, a)
    x = lx.tensor(a["self"])
    start = 0 if a.get("start") is None else a["start"]
    end = INT64_MAX if a.get("end") is None else a["end"]
    step = static(lx, a.get("step", 1))
    if isinstance(start, int) and isinstance(end, int) and start == 0 and end >= INT64_MAX:
        if step == 1:
            return x
    ins = [x, lx.ints([start]), lx.ints([end]), lx.ints([a["dim"]]), lx.ints([step])]
    return lx.emit("Slice", ins)


def _slice_list(lx: Any, a: dict[str, Any]) -> Any:
    items, start, end = a["l"], a.get("start"), a.get("end")
    step = static(lx, a.get("step", 1))
    if isinstance(items, list | tuple) and not isinstance(start, Value) \
            and not isinstance(end, Value):  # fmt: skip
        return list(items)[slice(start, end, step)]
    start = 0 if start is None else start
    end = INT64_MAX if end is None else end
    return lx.emit("Slice", [lx.ints(items), lx.ints([start]), lx.ints([end]),
                             lx.constant(np.array([0])), lx.ints([step])], rank=1)  # fmt: skip


@rule("aten::cat", "aten::concat", "aten::stack")
def _cat(lx: Any, a: dict[str, Any], node: Any) -> Any:
    items = a["tensors"]
    if isinstance(items, Value):
        raise Decline("a computed tensor list")
    dim = int(static(lx, a["dim"]))
    xs = [lx.tensor(t) for t in items]
    if node.kind() == "aten::stack":
        xs = [lx.emit("Unsqueeze", [x, lx.ints([dim])],
                      rank=None if x.type is None or x.type.rank is None else x.type.rank + 1)
              for x in xs]  # fmt: skip
    return lx.emit("Concat", xs, axis=dim)


@rule("aten::chunk", "aten::unsafe_chunk")
def _chunk(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    n, dim = int(static(lx, a["chunks"])), int(static(lx, a["dim"]))
    size = _static_dim(x, node, dim)
    # ONNX Split(num_outputs=n) and torch.chunk agree unless torch makes fewer than n chunks
    if isinstance(size, int) and -(-size // -(-size // n)) != n:
        raise Decline("chunk that makes fewer chunks than asked")
    outs = lx.emit("Split", [x], outputs=n, axis=dim, num_outputs=n)
    return [outs] if n == 1 else list(outs)


@rule("aten::expand")
def _expand(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # expand(x, [.., -1, ..]) -> Expand(x, [.., 1, ..]): a 1 broadcasts to the input's dim
    size = a["size"]
    if isinstance(size, Value):
        raise Decline("computed size")
    size = [1 if isinstance(s, int) and s == -1 else s for s in size]
    return lx.emit("Expand", [lx.tensor(a["self"]), lx.ints(size)], rank=len(size))


@rule("aten::expand_as")
def _expand_as(lx: Any, a: dict[str, Any], node: Any) -> Any:
    other = lx.tensor(a["other"])
    r = other.type.rank if other.type is not None else None
    return lx.emit("Expand", [lx.tensor(a["self"]), _shape(lx, other)], rank=r)


def _fill(lx: Any, shape: Value, value: Any, dt: int | None, n: int | None) -> Value:
    """A tensor of ``shape`` filled with ``value`` (Expand of a 0-d constant or value)."""
    if dt is None:
        if isinstance(value, Value):
            dt = dtype(value)
        else:
            dt = F if isinstance(value, float) else B if isinstance(value, bool) else I64
    return lx.emit("Expand", [lx.tensor(value, dt), shape], dtype=dt, rank=n)


@rule("aten::zeros", "aten::ones", "aten::full", "aten::new_zeros", "aten::new_ones",
      "aten::new_full")  # fmt: skip
def _factory(lx: Any, a: dict[str, Any], node: Any) -> Any:
    kind = node.kind()
    size = a["size"]
    value = a.get("fill_value", 0.0 if "zeros" in kind else 1.0)
    dt = dtype_from_torch(a.get("dtype"))
    if dt is None and kind.startswith("aten::new_"):
        dt = dtype(lx.tensor(a["self"]))
    if dt is None and kind != "aten::full":
        dt = F
    n = len(size) if isinstance(size, list | tuple) else None
    return _fill(lx, lx.ints(size), value, dt, n)


@rule("aten::zeros_like", "aten::ones_like", "aten::full_like")
def _factory_like(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    kind = node.kind()
    value = a.get("fill_value", 0 if "zeros" in kind else 1)
    dt = dtype_from_torch(a.get("dtype")) or dtype(x)
    return _fill(lx, _shape(lx, x), value, dt, x.type.rank if x.type is not None else None)


@rule("aten::arange")
def _arange(lx: Any, a: dict[str, Any], node: Any) -> Any:
    start = a.get("start", 0)
    end, step = a["end"], a.get("step", 1)
    dt = dtype_from_torch(a.get("dtype"))
    if dt is None:
        floats = [v for v in (start, end, step) if isinstance(v, float)]
        dt = F if floats else I64
    if dt not in (F, I64, 11, 6):
        raise Decline("arange of this dtype")
    ins = [lx.tensor(v, dt) for v in (start, end, step)]
    for i, v in enumerate(ins):
        if v.type is not None and v.type.rank:
            ins[i] = lx.emit("Reshape", [v, lx.constant(np.zeros(0, np.int64))], rank=0)
    return lx.emit("Range", ins, dtype=dt, rank=1)


@rule("aten::index_select")
def _index_select(lx: Any, a: dict[str, Any], node: Any) -> Any:
    return lx.emit("Gather", [lx.tensor(a["self"]), lx.tensor(a["index"])],
                   axis=int(static(lx, a["dim"])))  # fmt: skip


@rule("aten::gather")
def _gather(lx: Any, a: dict[str, Any], node: Any) -> Any:
    if static(lx, a.get("sparse_grad", False)):
        raise Decline("sparse gather")
    return lx.emit("GatherElements", [lx.tensor(a["self"]), lx.tensor(a["index"])],
                   axis=int(static(lx, a["dim"])))  # fmt: skip


@rule(
    "aten::split",
    "aten::split_with_sizes",
    "aten::unbind",
    "aten::unsafe_split",
    "aten::unsafe_split_with_sizes",
)
def _split(lx: Any, a: dict[str, Any], node: Any) -> Any:
    x = lx.tensor(a["self"])
    dim = int(static(lx, a.get("dim", 0)))
    n = len(list(node.outputs()))
    if n != 1 or node.output().type().kind() != "ListType":
        raise Decline("split with unpacked outputs")
    if node.kind() == "aten::unbind":
        size = _static_dim(x, node, dim)
        if size is None:  # a list unpacked at once says how long it is
            users = [u.user for u in node.output().uses()]
            if len(users) == 1 and users[0].kind() == "prim::ListUnpack":
                size = len(list(users[0].outputs()))
        if size is None:
            raise Decline("unbind of a dim of unknown size")
        parts = lx.emit("Split", [x], outputs=size, axis=dim, num_outputs=size)
        parts = [parts] if size == 1 else list(parts)
        return [lx.emit("Squeeze", [p, lx.ints([dim])], rank=rank(x) - 1) for p in parts]
    sizes = a.get("split_sizes", a.get("split_size"))
    if not isinstance(sizes, list | tuple):
        raise Decline("split into chunks of one size")
    sizes = [int(s) for s in static(lx, sizes)]
    parts = lx.emit("Split", [x, lx.ints(sizes)], outputs=len(sizes), axis=dim)
    return [parts] if len(sizes) == 1 else list(parts)


@rule("aten::repeat")
def _repeat(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # repeat(x, reps) -> Tile(x, reps), x first given leading 1s up to len(reps)
    x, reps = lx.tensor(a["self"]), a["repeats"]
    n = len(reps)
    extra = n - rank(x)
    if extra:
        x = lx.emit("Reshape", [x, lx.ints([1] * extra + [0] * rank(x))], rank=n)
    return lx.emit("Tile", [x, lx.ints(reps)], rank=n)


@rule("aten::constant_pad_nd", "aten::pad")
def _pad(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # torch pads last dim first, (begin, end) pairs; ONNX: all begins, then all ends, by axis
    if a.get("mode", "constant") != "constant":
        raise Decline("reflect/replicate/circular padding")
    x = lx.tensor(a["self"])
    pad = [int(p) for p in static(lx, a["pad"])]
    r, k = rank(x), len(pad) // 2
    begins, ends = [0] * r, [0] * r
    for i in range(k):
        begins[r - 1 - i], ends[r - 1 - i] = pad[2 * i], pad[2 * i + 1]
    value = lx.tensor(0.0 if a.get("value") is None else a["value"], dtype(x))
    return lx.emit("Pad", [x, lx.ints(begins + ends), value], mode="constant")


@rule("aten::view_as", "aten::reshape_as")
def _view_as(lx: Any, a: dict[str, Any], node: Any) -> Any:
    other = lx.tensor(a["other"])
    r = other.type.rank if other.type is not None else None
    return lx.emit("Reshape", [lx.tensor(a["self"]), _shape(lx, other)], rank=r)


@rule("aten::numel")
def _numel(lx: Any, a: dict[str, Any], node: Any) -> Any:
    return lx.emit("Size", [lx.tensor(a["self"])], dtype=I64, rank=0)


@rule("aten::flip")
def _flip(lx: Any, a: dict[str, Any], node: Any) -> Any:
    # flip(x, dims) -> Slice(x, -1, -INT64_MAX, dims, -1)
    x = lx.tensor(a["self"])
    dims = [int(d) for d in static(lx, a["dims"])]
    n = len(dims)
    ins = [x, lx.ints([-1] * n), lx.ints([-INT64_MAX] * n), lx.ints(dims), lx.ints([-1] * n)]
    return lx.emit("Slice", ins)
