"""Mutations of ONNX models for ``fuzz_loaders.py``: each takes a parsed model and a seeded
``random.Random``, changes the model in place and says what it did."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import onnx
from onnx import AttributeProto, ModelProto, TensorProto

# Values that break assumptions: signs, zero, sizes past memory and past int64.
_INTS = (-(2**63), -(2**31), -2, -1, 0, 1, 2, 3, 7, 2**31 - 1, 2**40, 2**62, 2**63 - 1)


def _tensors(m: ModelProto) -> list[TensorProto]:
    out = []
    for g in _graphs(m):
        out.extend(g.initializer)
        for n in g.node:
            out.extend(a.t for a in n.attribute if a.type == AttributeProto.TENSOR)
    return out


def _graphs(m: ModelProto) -> list[onnx.GraphProto]:
    out, stack = [], [m.graph]
    while stack:
        g = stack.pop()
        out.append(g)
        for n in g.node:
            for a in n.attribute:
                if a.type == AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return out


def _nodes(m: ModelProto) -> list[onnx.NodeProto]:
    return [n for g in _graphs(m) for n in g.node]


def _value_infos(m: ModelProto) -> list[onnx.ValueInfoProto]:
    return [v for g in _graphs(m) for v in list(g.input) + list(g.output) + list(g.value_info)]


def _names(m: ModelProto) -> list[str]:
    names = {v.name for v in _value_infos(m)}
    for n in _nodes(m):
        names.update(n.input)
        names.update(n.output)
    return sorted(names)


def mut_dims(m: ModelProto, rng: random.Random) -> str:
    items: list[Any] = [t for t in _tensors(m) if t.dims]
    items += [v for v in _value_infos(m) if v.type.tensor_type.shape.dim]
    if not items:
        return "dims: none"
    x = rng.choice(items)
    value = rng.choice(_INTS)
    if isinstance(x, TensorProto):
        x.dims[rng.randrange(len(x.dims))] = value
        return f"dims: tensor {x.name} -> {value}"
    dims = x.type.tensor_type.shape.dim
    dims[rng.randrange(len(dims))].dim_value = value
    return f"dims: value {x.name} -> {value}"


def mut_data_type(m: ModelProto, rng: random.Random) -> str:
    choices = [*TensorProto.DataType.values(), 999, -5, 2**31 - 1]
    tensors = _tensors(m)
    vis = [v for v in _value_infos(m) if v.type.HasField("tensor_type")]
    if tensors and (not vis or rng.random() < 0.5):
        t = rng.choice(tensors)
        t.data_type = rng.choice(choices)
        return f"data_type: tensor {t.name} -> {t.data_type}"
    if not vis:
        return "data_type: none"
    v = rng.choice(vis)
    v.type.tensor_type.elem_type = rng.choice(choices)
    return f"data_type: value {v.name} -> {v.type.tensor_type.elem_type}"


def mut_attribute(m: ModelProto, rng: random.Random) -> str:
    attrs = [a for n in _nodes(m) for a in n.attribute]
    if not attrs:
        return "attribute: none"
    a = rng.choice(attrs)
    what = rng.randrange(4)
    if what == 0:
        a.type = rng.choice(AttributeProto.AttributeType.values())
        return f"attribute: {a.name} type -> {a.type}"
    if what == 1:
        a.i = rng.choice(_INTS)
        a.ClearField("ints")
        a.ints.extend([rng.choice(_INTS) for _ in range(rng.randrange(4))])
        return f"attribute: {a.name} ints -> {list(a.ints)} i {a.i}"
    if what == 2:
        a.f = rng.choice([float("nan"), float("inf"), -1e30, 0.0])
        return f"attribute: {a.name} f -> {a.f}"
    a.name = rng.choice(["", "axis", "to", "perm", a.name + "_x"])
    return f"attribute: renamed -> {a.name!r}"


def mut_names(m: ModelProto, rng: random.Random) -> str:
    names = _names(m)
    vis = _value_infos(m)
    if not vis or not names:
        return "names: none"
    v = rng.choice(vis)
    new = rng.choice(["", rng.choice(names), "x" * 300, "a\x00b", "é"])
    old, v.name = v.name, new
    return f"names: value {old!r} -> {new!r}"


def mut_node_io(m: ModelProto, rng: random.Random) -> str:
    nodes = _nodes(m)
    if not nodes:
        return "node io: none"
    n = rng.choice(nodes)
    names = _names(m) or ["x"]
    what = rng.randrange(5)
    if what == 0 and n.input:
        del n.input[rng.randrange(len(n.input))]
        return f"node io: {n.op_type} dropped an input"
    if what == 1:
        n.input.append(rng.choice(names + [""]))
        return f"node io: {n.op_type} extra input"
    if what == 2 and n.output:
        n.output[rng.randrange(len(n.output))] = rng.choice(names + [""])
        return f"node io: {n.op_type} output renamed"
    if what == 3 and n.input:
        n.input[rng.randrange(len(n.input))] = rng.choice(names)
        return f"node io: {n.op_type} input rewired"
    n.op_type = rng.choice(["", "Foo", "If", "Loop", "Constant", n.op_type.lower()])
    return f"node io: op -> {n.op_type!r}"


def mut_opset(m: ModelProto, rng: random.Random) -> str:
    what = rng.randrange(3)
    if what == 0:
        m.ir_version = rng.choice([0, 1, 2, 3, 7, 99, -1])
        return f"ir_version -> {m.ir_version}"
    if what == 1 and m.opset_import:
        o = rng.choice(list(m.opset_import))
        o.version = rng.choice([-1, 0, 1, 5, 7, 13, 99, 2**62])
        return f"opset -> {o.version}"
    if m.opset_import:
        o = rng.choice(list(m.opset_import))
        o.domain = rng.choice(["ai.onnx.ml", "com.microsoft", "bogus", ""])
        return f"opset domain -> {o.domain!r}"
    return "opset: none"


def mut_external(m: ModelProto, rng: random.Random) -> str:
    ext = [t for t in m.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if not ext:
        t = rng.choice(list(m.graph.initializer)) if m.graph.initializer else None
        if t is None:
            return "external: none"
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", rng.choice(["weights.bin", "../weights.bin", "/etc/passwd"])
        return f"external: {t.name} now external at {e.value}"
    t = rng.choice(ext)
    key = rng.choice(["location", "offset", "length", "checksum", "bogus"])
    value = rng.choice(
        ["../../etc/passwd", "/etc/passwd", "missing.bin", ".", "", "-1", "1e3", "abc"]
        + [str(rng.choice(_INTS))]
    )
    e = t.external_data.add()
    e.key, e.value = key, value
    return f"external: {t.name} {key}={value!r}"


def mut_tensor_bytes(m: ModelProto, rng: random.Random) -> str:
    tensors = [t for t in _tensors(m) if t.raw_data]
    if not tensors:
        tensors = [t for t in _tensors(m) if t.float_data or t.int64_data or t.int32_data]
        if not tensors:
            return "tensor bytes: none"
        t = rng.choice(tensors)
        for field in ("float_data", "int64_data", "int32_data"):
            data = getattr(t, field)
            if data:
                del data[rng.randrange(len(data)) :]
        return f"tensor bytes: {t.name} typed data cut"
    t = rng.choice(tensors)
    raw = bytearray(t.raw_data)
    if rng.random() < 0.5:
        raw = raw[: rng.randrange(len(raw))]
        how = "truncated"
    else:
        for _ in range(rng.randrange(1, 8)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        how = "bits flipped"
    t.raw_data = bytes(raw)
    return f"tensor bytes: {t.name} {how}"


PROTO_MUTATORS: dict[str, Callable[[ModelProto, random.Random], str]] = {
    "dims": mut_dims,
    "data_type": mut_data_type,
    "attribute": mut_attribute,
    "names": mut_names,
    "node_io": mut_node_io,
    "opset": mut_opset,
    "external": mut_external,
    "tensor_bytes": mut_tensor_bytes,
}


def mutate_file_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Flips bits in or truncates the serialized model."""
    raw = bytearray(data)
    if rng.random() < 0.4:
        cut = rng.randrange(len(raw))
        return bytes(raw[:cut]), f"file truncated at {cut}/{len(raw)}"
    for _ in range(rng.randrange(1, 6)):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    return bytes(raw), "file bytes changed"
