"""``shape-infer``: static and symbolic shapes and dtypes on every value, subgraphs included.

Before / after (the types the values carry)::

    h = MatMul(x, w)    x: float[N, 4], w: float[4, 8]      h: float[N, 8]
    r = Reshape(h, s)   s = [0, 2, 4]                 ->    r: float[N, 2, 4]
    q = Reshape(r, t)   t = [-1, 8]                         q: float[?, 8]

The graph is exported (large weights as external references, so no bytes are copied), run
through ``onnx.shape_inference.infer_shapes`` with data propagation, and the inferred types are
copied back onto the values only where they say more than what is known: a known dim is never
replaced by an unknown one, symbols stay symbols (``N`` is not turned into onnx's ``unk__3``),
and the top-level inputs keep their declared types. Models onnx cannot infer are left as they
are (stat ``failed=1``). Other passes read the shapes to fold (``fold`` folds ``Shape`` of a
value whose shape became static).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import onnx
from onnx import AttributeProto, GraphProto, TensorProto, TypeProto

from neffkit._gc import paused_gc
from neffkit.ir.core import Graph, Value
from neffkit.ir.serde import to_onnx, type_from_proto
from neffkit.ir.tensor import Tensor
from neffkit.ir.types import Dim, TensorType, ValueType
from neffkit.passes._shape_pieces import MAX_DEPTH, infer_in_pieces
from neffkit.passes.base import Pass, PassContext, PassResult, option
from neffkit.passes.registry import register
from neffkit.passes.shape_rules import Facts, Static, infer_node

log = logging.getLogger("neffkit.passes")

#: onnx names the dims it cannot relate to anything ``unk__<n>``; they carry no information.
_GENERATED_SYMBOL = "unk__"


@register
@dataclass(frozen=True)
class InferShapes(Pass):
    """Fills value types from ONNX shape inference, never making a known type less precise."""

    name: ClassVar[str] = "shape-infer"
    description: ClassVar[str] = (
        "propagate static and symbolic shapes and dtypes onto every value (onnx shape inference)"
    )
    data_prop: bool = option(True, "propagate shape values through Shape/Gather/Concat ...")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        # the rules' walk also tells whether anything is still incomplete: when nothing is
        # (every type static from the start, or typed by the rules), onnx is not called
        with paused_gc():
            native, remaining = _apply_rules(graph, ctx.keep_overridable_inputs)
        stats = {"values_typed_by_rules": native} if native else {}
        if not remaining:
            return PassResult(native > 0, stats)
        names: dict[Value, str] = {}
        deep = _depth(graph) > MAX_DEPTH
        try:
            model = to_onnx(graph, external=_reference_only, names_out=names)
            if deep:  # too deep for onnx's parser in one piece
                found = infer_in_pieces(model, data_prop=self.data_prop)
            else:
                inferred = onnx.shape_inference.infer_shapes(
                    model, check_type=False, strict_mode=False, data_prop=self.data_prop
                )
        except Exception as e:  # noqa: BLE001 - onnx raises many types; the graph stays as is
            log.info("shape-infer: onnx shape inference failed: %s", e)
            return PassResult(native > 0, {**stats, "failed": 1})
        if deep:
            stats["pieces"] = 1
        top_inputs = set(graph.inputs)
        wanted = {
            name: v
            for v, name in names.items()
            if name and v.const is None and v not in top_inputs and not _complete(v.type)
        }
        refined = 0
        types = (
            ((n, found[n]) for n in wanted if n in found)
            if deep
            else _inferred_types(graph, inferred.graph, wanted)
        )
        with paused_gc():
            for name, tp in types:
                v = wanted[name]
                new = refine(v.type, type_from_proto(tp))
                if new is not None:
                    v.type = new
                    refined += 1
        if refined:
            stats["values_refined"] = refined
        return PassResult(refined + native > 0, stats)


def _apply_rules(root: Graph, keep_overridable_inputs: bool = False) -> tuple[int, bool]:
    """Types node outputs with ``shape_rules`` where every input type is static.

    Returns (values typed, whether some value is still incomplete and needs onnx's inference).
    One walk over the nodes in order, so a rule sees the types its producers just got.
    """
    opset = root.opset("") or 0
    typed = 0
    remaining = False
    interned: dict[Static, TensorType] = {}
    # IR v3 inputs with a default value are typed by their declaration, not by the default;
    # their values are constants only when the caller does not keep them overridable (the
    # same policy as fold and simplify)
    inputs_with_default = {v for g in root.all_graphs() for v in g.inputs if v.const is not None}
    facts = Facts(opset, inputs_with_default if keep_overridable_inputs else frozenset())
    for g in root.all_graphs():
        if g is not root and not all(_complete(v.type) for v in g.inputs):
            remaining = True
        for node in g:  # only types change during the walk
            outs = node.outputs
            for v in outs:
                if not _complete(v.type):
                    break
            else:
                continue  # every output already complete
            ins: list[Static | None] = []
            for inp in node.inputs:
                if inp is None:
                    ins.append(None)
                    continue
                t = inp.type
                if _complete(t):
                    # _complete: a TensorType with a dtype and a shape of ints
                    ins.append((t.dtype, t.shape))  # type: ignore[union-attr,arg-type]
                elif inp.const is not None and inp not in inputs_with_default:
                    ins.append((inp.const.dtype, inp.const.shape))
                else:
                    break  # unknown, or an input a caller may feed with another shape
            else:
                result = infer_node(node, ins, facts) if opset else None
                if result is not None:
                    for v, st in zip(outs, result):
                        vt = v.type
                        if _complete(vt):
                            continue
                        new = interned.get(st)
                        if new is None:
                            new = interned[st] = TensorType(st[0], st[1])
                        merged = new if vt is None else refine(vt, new)
                        if merged is not None:
                            v.type = merged
                            typed += 1
            if not remaining:
                for v in outs:
                    if not _complete(v.type) and (v.name or v.is_used):
                        remaining = True
                        break
        if not remaining and not all(v.const is not None or _complete(v.type) for v in g.outputs):
            remaining = True
    return typed, remaining


def _depth(root: Graph) -> int:
    """How many levels of subgraphs ``root`` holds (O(graphs))."""
    deepest = 0
    stack = [(root, 0)]
    while stack:
        g, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((sub, d + 1) for n in g.holders for sub in n.subgraphs)
    return deepest


def _reference_only(t: Tensor, tp: TensorProto) -> None:
    """Exports a large weight as an external reference nobody reads (inference needs no bytes).

    Only tensors of 1 KiB and more come here, so shape tensors stay inline where inference
    reads their values.
    """
    tp.data_location = TensorProto.EXTERNAL
    for key, val in (("location", "neffkit-shape-infer.bin"), ("length", str(t.nbytes))):
        e = tp.external_data.add()
        e.key = key
        e.value = val


def _complete(t: ValueType | None) -> bool:
    """True when nothing can be added to ``t`` (a dtype and a static shape)."""
    return t.__class__ is TensorType and bool(t.dtype) and t.is_static


def _inferred_types(
    graph: Graph, gp: GraphProto, wanted: dict[str, Value]
) -> Iterator[tuple[str, TypeProto]]:
    """``(name, inferred type)`` of the ``wanted`` names, over every graph of the model.

    The exporter writes one NodeProto per node, in order, so the IR tells which protos hold
    subgraphs: reading every node's attributes from protobuf would cost more than inference.
    """
    stack: list[tuple[Graph, GraphProto]] = [(graph, gp)]
    while stack:
        g, p = stack.pop()
        for infos in (p.input, p.value_info, p.output):
            for vi in infos:
                name = vi.name
                if name in wanted:
                    yield name, vi.type
        for i, node in enumerate(g):
            if not node.subgraphs:
                continue
            protos = {a.name: a for a in p.node[i].attribute}
            for name, a in node.attributes.items():
                ap = protos.get(name)
                if ap is None:
                    continue
                if a.type == AttributeProto.GRAPH:
                    stack.append((a.value, ap.g))
                elif a.type == AttributeProto.GRAPHS:
                    stack.extend(zip(a.value, ap.graphs))


def refine(old: ValueType | None, new: ValueType | None) -> ValueType | None:
    """The type that combines ``old`` and ``new`` when it says strictly more than ``old``.

    Returns None when ``old`` should stay: ``new`` adds nothing or contradicts it (a different
    dtype or rank). A dim is taken from ``new`` only where ``old`` has none, or where ``old``
    has a symbol and ``new`` a static size; onnx's generated ``unk__`` symbols are ignored.
    """
    if new is None or (isinstance(new, TensorType) and not new.dtype and new.shape is None):
        return None
    if old is None:
        if isinstance(new, TensorType):
            return _clean(new)
        return new
    if not isinstance(old, TensorType) or not isinstance(new, TensorType):
        return None
    dtype = old.dtype
    if not dtype and new.dtype:
        dtype = new.dtype
    elif new.dtype and new.dtype != dtype:
        return None
    shape = old.shape
    if new.shape is not None:
        if shape is None:
            shape = _clean(new).shape
        elif len(shape) != len(new.shape):
            return None
        else:
            shape = tuple(_better_dim(a, b) for a, b in zip(shape, new.shape))
    if dtype == old.dtype and shape == old.shape:
        return None
    return TensorType(dtype, shape)


def _better_dim(old: Dim, new: Dim) -> Dim:
    # ? + 4 -> 4;  ? + N -> N;  N + 4 -> 4;  4 + anything -> 4;  N + M -> N
    if isinstance(old, int):
        return old
    if isinstance(new, int):
        return new
    if old is None and isinstance(new, str) and not new.startswith(_GENERATED_SYMBOL):
        return new
    return old


def _clean(t: TensorType) -> TensorType:
    """``t`` with onnx's generated symbols turned back into unknown dims."""
    if t.shape is None or not any(isinstance(d, str) for d in t.shape):
        return t
    dims = [None if isinstance(d, str) and d.startswith(_GENERATED_SYMBOL) else d for d in t.shape]
    return TensorType(t.dtype, dims)
