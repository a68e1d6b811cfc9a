"""Evaluation for ``fold``: a constant sub-DAG becomes one small model, run once.

The nodes to evaluate are copied into a standalone model whose inputs are the constants they
read (fed as numpy arrays, so weights are never serialized), with onnxruntime's own graph
optimizations off. When onnxruntime cannot load or run it (an op or type it lacks), the
nodes are split in halves until the part it cannot run is a single node, which onnx's
``ReferenceEvaluator`` evaluates; a node that fails there too is simply not folded. Output
sizes are estimated beforehand with onnx shape inference on the same sub-DAG (small constants
inline, so shape values propagate). ``Constant`` node values and static ``Shape`` / ``Size``
results are read here too, without evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper, numpy_helper

from neffkit.ir.casts import OWN_CAST_TYPES
from neffkit.ir.casts import cast as own_cast
from neffkit.ir.core import Node, Value
from neffkit.ir.serde import encode_attribute, type_from_proto, type_to_proto
from neffkit.ir.tensor import Tensor, np_dtype, onnx_dtype
from neffkit.ir.types import TensorType

log = logging.getLogger("neffkit.passes")

_CONSTANT_ATTRS = {
    "value_float": np.float32,
    "value_floats": np.float32,
    "value_int": np.int64,
    "value_ints": np.int64,
    "value_string": object,
    "value_strings": object,
}

#: After this many single nodes onnxruntime could not run, and none it could, stop trying it.
_MAX_SINGLE_FAILURES = 16
#: Constants up to this size are inlined in the shape-inference model (onnx reads their values).
INLINE_BYTES = 32 * 1024


def nbytes_of(dtype: int | None, shape: Sequence[Any] | None) -> int | None:
    """Bytes of a tensor of the given type when the shape is static, else None."""
    if not dtype or shape is None or not all(isinstance(d, int) for d in shape):
        return None
    n = 1
    for d in shape:
        n *= d
    if dtype == TensorProto.STRING:
        return n * 8
    try:
        item = np_dtype(dtype).itemsize
    except Exception:  # noqa: BLE001 - exotic element types have no numpy twin
        item = 1
    return n * item


def array_type(arr: np.ndarray) -> int:
    """The ONNX element type of an array (strings included)."""
    return onnx_dtype(arr.dtype)


class SubModel:
    """A standalone model of some nodes, with fresh names ``v0, v1 ...`` for their values."""

    def __init__(
        self,
        nodes: Sequence[Node],
        known: Mapping[Value, np.ndarray | TensorType],
        outputs: Iterable[Value],
        opset: int,
        *,
        inline_bytes: int = 0,
    ) -> None:
        self.names: dict[Value, str] = {}
        self.feeds: dict[str, np.ndarray] = {}
        gp = onnx.GraphProto(name="fold")
        name_of = self._name
        for i, n in enumerate(nodes):
            for v in n.inputs:
                if v is None or v in self.names or v not in known:
                    continue
                arr = known[v]
                name = name_of(v)
                if isinstance(arr, TensorType):
                    vi = gp.input.add()  # a type without values (shape inference only)
                    vi.name = name
                    type_to_proto(arr, vi.type)
                elif arr.nbytes <= inline_bytes:
                    gp.initializer.append(numpy_helper.from_array(arr, name))
                else:
                    vi = gp.input.add()
                    vi.name = name
                    type_to_proto(TensorType(array_type(arr), arr.shape), vi.type)
                    self.feeds[name] = arr
            np_ = gp.node.add()
            np_.op_type = n.op_type
            np_.name = f"n{i}"
            np_.input.extend("" if v is None else name_of(v) for v in n.inputs)
            # an omitted optional output stays omitted (some ops act differently otherwise)
            np_.output.extend(name_of(v) if (v.name or v.is_used) else "" for v in n.outputs)
            for a in n.attributes.values():
                encode_attribute(a, np_.attribute.add())  # reuses the file's proto if any
        self.outputs = [v for v in outputs if v in self.names]
        for v in self.outputs:
            gp.output.add().name = self.names[v]
        opsets = [helper.make_opsetid("", opset)]
        self.model: ModelProto = helper.make_model(gp, opset_imports=opsets)
        self.model.ir_version = helper.find_min_ir_version_for(opsets, ignore_unknown=True)

    def _name(self, v: Value) -> str:
        n = self.names.get(v)
        if n is None:
            n = self.names[v] = f"v{len(self.names)}"
        return n


def infer_sizes(
    nodes: Sequence[Node], known: Mapping[Value, np.ndarray | TensorType], opset: int
) -> dict[Value, int]:
    """Estimated bytes of the nodes' outputs, from onnx shape inference (unknown ones left out).

    ``known`` gives the inputs' values, or only their types where the values are large.
    """
    outs = [v for n in nodes for v in n.outputs]
    sub = SubModel(nodes, known, outs, opset, inline_bytes=INLINE_BYTES)
    try:
        inferred = onnx.shape_inference.infer_shapes(
            sub.model, check_type=False, strict_mode=False, data_prop=True
        )
    except Exception as e:  # noqa: BLE001 - sizes stay unknown
        log.debug("fold: shape inference of the constant sub-DAG failed: %s", e)
        return {}
    types = {vi.name: vi.type for vi in inferred.graph.value_info}
    types.update({vi.name: vi.type for vi in inferred.graph.output})
    out: dict[Value, int] = {}
    for v in outs:
        tp = types.get(sub.names.get(v, ""))
        t = type_from_proto(tp) if tp is not None else None
        if isinstance(t, TensorType):
            size = nbytes_of(t.dtype, t.shape)
            if size is not None:
                out[v] = size
    return out


def evaluate(
    nodes: Sequence[Node],
    known: Mapping[Value, np.ndarray],
    wanted: Sequence[Value],
    opset: int,
) -> dict[Value, np.ndarray]:
    """Values of ``wanted`` computed from ``known``, in as few onnxruntime runs as possible.

    All nodes go into one run. Where onnxruntime cannot load or run them (an op or type it
    lacks), the list is split in halves, each run on its own (the first half's results feed
    the second), down to single nodes, which fall back to onnx's reference evaluator: k bad
    nodes among n cost O(k log n) runs. Returns only the values computed as numpy arrays (a
    sequence output, or a node neither runtime runs, is left out).
    """
    want = set(wanted)
    values: dict[Value, np.ndarray] = dict(known)
    chunks = _segments(nodes)[::-1]  # a stack: the next chunk to run is last
    ort_worked = False
    single_failures = 0
    while chunks:
        chunk = _runnable(chunks.pop(), values)
        if not chunk:
            continue
        if len(chunk) == 1 and _own_cast_target(chunk[0], values) is not None:
            values.update(_run_own_cast(chunk[0], values))
            continue
        members = set(chunk)
        outs = [
            v
            for n in chunk
            for v in n.outputs
            if v in want or any(u not in members for u, _ in v.iter_uses())
        ]
        # onnxruntime failing on node after node (an opset newer than it knows ...): stop asking
        if ort_worked or single_failures < _MAX_SINGLE_FAILURES:
            try:
                values.update(_run_ort(chunk, values, outs, opset))
                ort_worked = True
                continue
            except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
                log.debug("fold: onnxruntime could not evaluate %d nodes: %s", len(chunk), e)
        if len(chunk) == 1:
            single_failures += 1
            values.update(_run_reference(chunk[0], values, outs, opset))
            continue
        half = len(chunk) // 2
        chunks.append(chunk[half:])
        chunks.append(chunk[:half])
    return {v: values[v] for v in wanted if v in values}


def _segments(nodes: Sequence[Node]) -> list[list[Node]]:
    """The nodes in order, cut around casts neffkit computes itself (each its own segment)."""
    out: list[list[Node]] = [[]]
    for n in nodes:
        if _may_be_own_cast(n):
            out.extend(([n], []))
        else:
            out[-1].append(n)
    return [s for s in out if s]


def _may_be_own_cast(node: Node) -> bool:
    """True for a Cast to an own-cast type, or a CastLike whose target type may be one."""
    if node.domain != "":
        return False
    if node.op_type == "Cast":
        return node.attr("to") in OWN_CAST_TYPES
    if node.op_type == "CastLike":
        t = node.inputs[1].type if len(node.inputs) > 1 and node.inputs[1] is not None else None
        dtype = getattr(t, "dtype", None)
        return dtype is None or dtype in OWN_CAST_TYPES
    return False


def _own_cast_target(node: Node, values: Mapping[Value, np.ndarray]) -> int | None:
    """The target type of a Cast / CastLike to a type whose cast neffkit computes itself
    (int4, float4e2m1 ...: onnxruntime and ml_dtypes disagree with each other there)."""
    if node.op_type == "Cast" and node.domain == "":
        to = node.attr("to")
    elif node.op_type == "CastLike" and node.domain == "" and (like := node.inputs[1]) in values:
        to = array_type(values[like])  # type: ignore[index]  # in values: not None
    else:
        return None
    return to if to in OWN_CAST_TYPES else None


def _run_own_cast(node: Node, values: Mapping[Value, np.ndarray]) -> dict[Value, np.ndarray]:
    to = _own_cast_target(node, values)
    src = node.inputs[0]
    if src is None:
        return {}
    x = values[src]
    if to is None or x.dtype == object:
        return {}
    round_mode = node.attr("round_mode", "up")
    if isinstance(round_mode, bytes):
        round_mode = round_mode.decode()
    try:
        y = own_cast(x, to, saturate=bool(node.attr("saturate", 1)), round_mode=str(round_mode))
    except ValueError as e:  # an unknown round_mode: the node is just not folded
        log.debug("fold: %s not folded: %s", node.op_type, e)
        return {}
    return {node.outputs[0]: y}


def _runnable(chunk: list[Node], values: Mapping[Value, np.ndarray]) -> list[Node]:
    """The nodes of ``chunk`` whose inputs are known or computed earlier in the chunk."""
    kept = []
    made: set[Value] = set()
    for n in chunk:
        if all(v is None or v in values or v in made for v in n.inputs):
            kept.append(n)
            made.update(n.outputs)
    return kept


def _run_ort(
    nodes: Sequence[Node],
    known: Mapping[Value, np.ndarray],
    wanted: Sequence[Value],
    opset: int,
) -> dict[Value, np.ndarray]:
    import onnxruntime as ort

    sub = SubModel(nodes, known, wanted, opset)
    if not sub.outputs:
        return {}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4  # failures are expected here and handled: keep stderr quiet
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        sub.model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    got = sess.run([sub.names[v] for v in sub.outputs], sub.feeds)
    return {v: a for v, a in zip(sub.outputs, got) if isinstance(a, np.ndarray)}


def _run_reference(
    node: Node,
    known: Mapping[Value, np.ndarray],
    wanted: Sequence[Value],
    opset: int,
) -> dict[Value, np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    sub = SubModel([node], known, wanted, opset)
    if not sub.outputs:
        return {}
    try:
        got = ReferenceEvaluator(sub.model).run(None, sub.feeds)
    except Exception as e:  # noqa: BLE001 - the node is just not folded
        log.debug("fold: reference evaluation of %s failed: %s", node.op_type, e)
        return {}
    return {v: a for v, a in zip(sub.outputs, got) if isinstance(a, np.ndarray)}


# -- values known without evaluation ----------------------------------------------------------


def constant_tensor(n: Node) -> Tensor | None:
    """The value of a ``Constant`` node, whichever attribute holds it (None: sparse, ref)."""
    if len(n.attributes) != 1:
        return None
    (a,) = n.attributes.values()
    if a.ref:
        return None
    if a.name == "value":
        return a.value if isinstance(a.value, Tensor) else None
    kind = _CONSTANT_ATTRS.get(a.name)
    if kind is None:
        return None
    return Tensor(np.array(a.value, dtype=kind))


def shape_fact(n: Node) -> np.ndarray | None:
    """``Shape(x)`` / ``Size(x)`` when the dims it reports are static, else None."""
    x = n.inputs[0] if n.inputs else None
    shape = x.shape if x is not None else None
    if shape is None:
        return None
    if n.op_type == "Size":
        if not all(isinstance(d, int) for d in shape):
            return None
        return np.array(int(np.prod(cast(tuple[int, ...], shape), dtype=np.int64)), dtype=np.int64)
    rank = len(shape)
    start = _clamp(n.attr("start", 0), rank)
    end = _clamp(n.attr("end", rank), rank)
    dims = shape[start:end]
    if not all(isinstance(d, int) for d in dims):
        return None
    return np.array(dims, dtype=np.int64)


def _clamp(i: int, rank: int) -> int:
    if i < 0:
        i += rank
    return min(max(i, 0), rank)
