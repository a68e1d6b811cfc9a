"""ONNX codec, encoding: ``Graph`` -> ``ModelProto``.

Names are hints: the encoder keeps a value's name when it is free in the whole model and makes
a fresh one otherwise, so the output is always SSA across all scopes. Attribute and tensor
protos that came from a file are reused instead of being rebuilt. Writing files and external
data is the ONNX backend's part (``neffkit.backends.onnx``); it passes an ``ExternalWriter``.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto

from neffkit._gc import paused_gc
from neffkit.errors import BackendError
from neffkit.ir.core import Attr, Graph, Node, Value
from neffkit.ir.serde.attributes import encode_attribute
from neffkit.ir.tensor import Tensor
from neffkit.ir.types import TensorType, type_to_proto

#: Writes a tensor's bytes somewhere and fills the proto's external-data fields.
ExternalWriter = Callable[[Tensor, TensorProto], None]


def to_onnx(
    graph: Graph,
    *,
    external: ExternalWriter | None = None,
    names_out: dict[Value, str] | None = None,
) -> ModelProto:
    """Builds a ModelProto from a top-level graph.

    Args:
        graph: the top-level graph.
        external: when given, called for each initializer whose bytes should live outside the
            proto; it must fill ``data_location`` and ``external_data``. Without it, external
            tensors are read into the proto.
        names_out: when given, filled with the name each exported ``Value`` got (passes that
            map ONNX tool results back onto the IR use it).
    """
    if not isinstance(graph, Graph):
        raise BackendError(f"to_onnx takes a neffkit Graph, got {type(graph).__name__}")
    if graph.parent is not None:
        raise BackendError("to_onnx needs a top-level graph, got a subgraph")
    mp = ModelProto()
    meta = graph.meta
    opsets = dict(graph.opset_imports)
    if "" not in opsets:
        opsets[""] = onnx.defs.onnx_opset_version()
    for domain, version in opsets.items():
        o = mp.opset_import.add()
        o.domain = domain
        o.version = version
    mp.ir_version = meta.ir_version or _ir_version_for(opsets)
    mp.producer_name = meta.producer_name or "neffkit"
    if meta.producer_version:
        mp.producer_version = meta.producer_version
    if meta.domain:
        mp.domain = meta.domain
    if meta.model_version:
        mp.model_version = meta.model_version
    if meta.doc_string:
        mp.doc_string = meta.doc_string
    for k, v in meta.metadata_props.items():
        p = mp.metadata_props.add()
        p.key = k
        p.value = v
    mp.functions.extend(meta.functions)
    exporter = _Exporter(external)
    with paused_gc():
        exporter.graph(graph, mp.graph, top=True)
    if names_out is not None:
        names_out.update(exporter.names)
    if meta.sparse_initializers:
        _restore_sparse(mp.graph, meta.sparse_initializers)
    _fill_output_types(mp)
    if mp.ir_version < 4:
        # IR v3 requires every initializer to be a graph input; a pass that created
        # constants (fold, simplify) needs IR v4, which only drops that rule.
        inputs = {i.name for i in mp.graph.input}
        if any(t.name not in inputs for t in mp.graph.initializer):
            mp.ir_version = 4
    return mp


def _fill_output_types(mp: ModelProto) -> None:
    """ONNX requires typed graph outputs: infer the ones the IR does not know (rare)."""
    missing = [o for o in mp.graph.output if o.type.WhichOneof("value") is None]
    if not missing:
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(mp, strict_mode=False)
    except Exception:  # noqa: BLE001 - leave them untyped; the checker will say so
        return
    known = {vi.name: vi.type for vi in inferred.graph.value_info}
    known.update({vi.name: vi.type for vi in inferred.graph.output})
    for o in missing:
        t = known.get(o.name)
        if t is not None and t.WhichOneof("value") is not None:
            o.type.CopyFrom(t)


def _ir_version_for(opsets: dict[str, int]) -> int:
    v = opsets.get("", 1)
    for table_ir, table_opset in ((10, 21), (9, 19), (8, 17), (7, 13), (6, 11), (5, 10)):
        if v >= table_opset:
            return table_ir
    return 3


def _restore_sparse(gp: GraphProto, sparse: list[onnx.SparseTensorProto]) -> None:
    """Puts sparse initializers back in sparse form when their dense twin is still there."""
    names = {s.values.name for s in sparse}
    kept = [t for t in gp.initializer if t.name not in names]
    present = {t.name for t in gp.initializer}
    del gp.initializer[:]
    gp.initializer.extend(kept)
    gp.sparse_initializer.extend(s for s in sparse if s.values.name in present)


class _Exporter:
    def __init__(self, external: ExternalWriter | None) -> None:
        self.external = external
        self.used: set[str] = set()
        self.names: dict[Value, str] = {}
        self.counter = 0

    def name_of(self, v: Value) -> str:
        n = self.names.get(v)
        if n is not None:
            return n
        hint = v.name
        if hint and hint not in self.used:
            n = hint
        elif not hint and v.producer is not None and not v.is_used:
            self.names[v] = ""  # an omitted optional output stays omitted
            return ""
        else:
            base = hint or "v"
            while True:
                self.counter += 1
                n = f"{base}__{self.counter}"
                if n not in self.used:
                    break
        self.used.add(n)
        self.names[v] = n
        return n

    def graph(self, g: Graph, gp: GraphProto, *, top: bool = False) -> None:
        gp.name = g.name or "main"
        if g.doc_string:
            gp.doc_string = g.doc_string
        name_of = self.name_of
        slot_names: list[str] = []
        if top:
            # The interface keeps its names: claim them before anything else. An output slot
            # keeps the name it had when it was set, even if a pass made it hold another value
            # (then an Identity carries the value to that name).
            for v in g.inputs:
                name_of(v)
            slot_names = list(g.output_names)
            for v, n in zip(g.outputs, slot_names):
                if not n or n in self.used:
                    continue
                if v not in self.names:  # inputs are named already; they keep their names
                    self.names[v] = n
                self.used.add(n)
        for v in g.inputs:
            vi = gp.input.add()
            vi.name = name_of(v)
            t = v.type
            if t is None and v.const is not None:
                t = TensorType(v.const.dtype, v.const.shape)
            if t is not None:
                type_to_proto(t, vi.type)
        for v in g.initializers.values():
            self.initializer(v, gp)
        typed: list[Value] = []
        for node in g:
            self.node(node, gp, typed)
        outs_seen: set[Value] = set()
        for i, v in enumerate(g.outputs):
            want = slot_names[i] if i < len(slot_names) else ""
            if top and want and name_of(v) != want:
                v = self._copy_for_output(v, gp, want)
            elif v in outs_seen or (not top and v.graph is not g):
                # A repeated output needs a name of its own, and onnxruntime refuses a
                # subgraph output that is an outer-scope value returned directly.
                v = self._copy_for_output(v, gp)
            outs_seen.add(v)
            vi = gp.output.add()
            vi.name = name_of(v)
            if v.type is not None:
                type_to_proto(v.type, vi.type)
            elif v.const is not None:
                type_to_proto(TensorType(v.const.dtype, v.const.shape), vi.type)
        outputs = set(g.outputs)
        for v in typed:
            if v not in outputs and v.type is not None:
                vi = gp.value_info.add()
                vi.name = self.names[v]
                type_to_proto(v.type, vi.type)

    def _copy_for_output(self, v: Value, gp: GraphProto, name: str = "") -> Value:
        """An Identity so an output slot gets a name of its own (``name``: a reserved one)."""
        out = Value(name or (v.name or "out") + "_out", v.type)
        if out.type is None and v.const is not None:
            out.type = TensorType(v.const.dtype, v.const.shape)
        np_ = gp.node.add()
        np_.op_type = "Identity"
        np_.input.append(self.name_of(v))
        if name:
            self.names[out] = name
        np_.output.append(self.name_of(out))
        return out

    def initializer(self, v: Value, gp: GraphProto) -> None:
        t = v.const
        assert t is not None
        name = self.name_of(v)
        if self.external is not None and t.nbytes >= 1024 and t.dtype != TensorProto.STRING:
            tp = gp.initializer.add()
            tp.name = name
            tp.data_type = t.dtype
            tp.dims.extend(t.shape)
            self.external(t, tp)
            return
        src = t.to_proto()
        tp = gp.initializer.add()
        tp.CopyFrom(src)
        tp.name = name

    def node(self, node: Node, gp: GraphProto, typed: list[Value]) -> None:
        np_ = gp.node.add()
        np_.op_type = node.op_type
        if node.domain:
            np_.domain = node.domain
        if node.name:
            np_.name = node.name
        if node.overload:
            np_.overload = node.overload
        if node.doc_string:
            np_.doc_string = node.doc_string
        name_of = self.name_of
        np_.input.extend(["" if v is None else name_of(v) for v in node.inputs])
        np_.output.extend([name_of(v) for v in node.outputs])
        for v in node.outputs:
            if v.type is not None and self.names[v]:
                typed.append(v)
        for a in node.attributes.values():
            self.attribute(a, np_.attribute.add())

    def attribute(self, a: Attr, ap: AttributeProto) -> None:
        if a.type == AttributeProto.GRAPH:
            ap.name = a.name
            ap.type = a.type  # type: ignore[assignment]  # an int of AttributeType
            self.graph(a.value, ap.g)
            return
        if a.type == AttributeProto.GRAPHS:
            ap.name = a.name
            ap.type = a.type  # type: ignore[assignment]  # an int of AttributeType
            for sub in a.value:
                self.graph(sub, ap.graphs.add())
            return
        encode_attribute(a, ap)
