"""ONNX backend: ``Graph`` -> ``ModelProto``, and saving to a file (atomically, the model and
its external data as a pair; see :mod:`neffkit.files`).

Names are hints: the exporter keeps a value's name when it is free in the whole model and
makes a fresh one otherwise, so the output is always SSA across all scopes. Attribute and
tensor protos that came from a file are reused instead of being rebuilt.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto

from neffkit import files
from neffkit._gc import paused_gc
from neffkit.errors import BackendError, NeffkitError
from neffkit.ir.core import Attr, Graph, Node, Value
from neffkit.ir.tensor import Tensor
from neffkit.ir.types import TensorType, type_to_proto

PathLike = str | os.PathLike
#: Writes a tensor's bytes somewhere and fills the proto's external-data fields.
ExternalWriter = Callable[[Tensor, TensorProto], None]

_MAX_PROTO = 2**31 - 1 - 64 * 1024 * 1024


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


def _restore_sparse(gp: GraphProto, sparse: list) -> None:
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
        elif not hint and v.producer is not None and not v._uses and not v._outputs_of:
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
            if v not in outputs:
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
        np_.input.extend(["" if v is None else name_of(v) for v in node._inputs])
        np_.output.extend([name_of(v) for v in node.outputs])
        for v in node.outputs:
            if v.type is not None and self.names[v]:
                typed.append(v)
        for a in node.attributes.values():
            self.attribute(a, np_.attribute.add())

    def attribute(self, a: Attr, ap: AttributeProto) -> None:
        if a.type == AttributeProto.GRAPH:
            ap.name = a.name
            ap.type = a.type
            self.graph(a.value, ap.g)
            return
        if a.type == AttributeProto.GRAPHS:
            ap.name = a.name
            ap.type = a.type
            for sub in a.value:
                self.graph(sub, ap.graphs.add())
            return
        if a._proto is not None:
            ap.CopyFrom(a._proto)
            return
        encode_attribute(a, ap)


def encode_attribute(a: Attr, ap: AttributeProto) -> None:
    """Writes a (non-graph) attribute built from a Python value into ``ap``."""
    ap.name = a.name
    ap.type = a.type
    if a.ref:
        ap.ref_attr_name = a.ref
        if a._value is None:
            return
    v = a.value
    t = a.type
    if t == AttributeProto.FLOAT:
        ap.f = float(v)
    elif t == AttributeProto.INT:
        ap.i = int(v)
    elif t == AttributeProto.STRING:
        ap.s = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
    elif t == AttributeProto.FLOATS:
        ap.floats.extend(float(x) for x in v)
    elif t == AttributeProto.INTS:
        ap.ints.extend(int(x) for x in v)
    elif t == AttributeProto.STRINGS:
        ap.strings.extend(
            x.encode("utf-8", "surrogateescape") if isinstance(x, str) else bytes(x) for x in v
        )
    elif t == AttributeProto.TENSOR:
        ap.t.CopyFrom(v.to_proto())
    elif t == AttributeProto.TENSORS:
        for x in v:
            ap.tensors.add().CopyFrom(x.to_proto())
    elif t == AttributeProto.SPARSE_TENSOR:
        ap.sparse_tensor.CopyFrom(v)
    elif t == AttributeProto.SPARSE_TENSORS:
        ap.sparse_tensors.extend(v)
    elif t == AttributeProto.TYPE_PROTO:
        ap.tp.CopyFrom(v)
    elif t == AttributeProto.TYPE_PROTOS:
        ap.type_protos.extend(v)
    else:
        raise BackendError(f"attribute '{a.name}' has unsupported type {t}")


# -- saving -----------------------------------------------------------------------------------


def save(
    graph: Graph,
    path: PathLike,
    *,
    external_data: bool | None = None,
    overwrite: bool = True,
) -> None:
    """Writes ``graph`` to ``path`` so that a kill at any moment leaves the old or the new file.

    With external data the model and its data file are replaced as a pair: the data goes to a
    name no file has (``<file>.data``, or ``<file>.<16 hex>.data`` when that exists), then the
    model is renamed over ``path``, and only then is the old data file removed (see
    :func:`neffkit.files.replace_model_pair`). Temporary files live beside ``path`` and are
    removed on errors, SIGINT and SIGTERM; the files get the umask's mode.

    Args:
        graph: the top-level graph.
        path: destination ``.onnx`` file.
        external_data: put initializers of 1 KiB and more into a data file beside the model.
            ``None`` (default) does so when the input model had external data or when the
            weights would not fit a 2 GiB protobuf.
        overwrite: refuse an existing destination when False.

    Raises:
        BackendError: ``path`` exists and ``overwrite`` is False, or the model cannot be
            serialized.
        FileCollisionError: ``path`` is one of the files the graph reads its weights from.
    """
    if not isinstance(graph, Graph):
        raise BackendError(f"save takes a neffkit Graph, got {type(graph).__name__}")
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise BackendError(f"save takes a file path, got {path!r}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise BackendError(f"{path}: is a directory, expected a file name")
    if not overwrite and os.path.lexists(path):
        raise BackendError(f"{path}: exists; refusing to overwrite it")
    reads = external_files(graph)
    files.check_writes(
        [files.Write(path, "the output model")],
        {p: "external data the graph reads" for p in reads},
        folders_exist=False,
    )
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    if external_data is None:
        external_data = _wants_external(graph)
    with files.TempFiles(folder) as temps:
        tmp_data = data_name = None
        writer = None
        if external_data:
            data_name = files.new_data_name(path)
            fd, tmp_data = temps.new()
            data_file = os.fdopen(fd, "wb")
            writer = _DataWriter(data_file, data_name)
        try:
            try:
                mp = to_onnx(graph, external=writer)
            finally:
                if writer is not None:
                    data_file.close()
            blob = mp.SerializeToString()
        except ValueError as e:
            raise BackendError(f"{path}: could not serialize the model: {e}") from e
        fd, tmp_model = temps.new()
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        del blob
        files.replace_model_pair(
            temps,
            path,
            tmp_model,
            tmp_data,
            data_name,
            old_references=lambda: referenced_files(path),
            keep=reads,
        )


def external_files(graph: Graph) -> list[str]:
    """The external data files a graph reads its tensors from (initializers and tensor
    attributes, in every subgraph), as absolute paths, each once."""
    seen: dict[str, None] = {}
    for g in graph.all_graphs():
        for v in g.initializers.values():
            if v.const is not None and v.const.external_path:
                seen[v.const.external_path] = None
        for node in g:
            for a in node.attributes.values():
                if a.type not in (AttributeProto.TENSOR, AttributeProto.TENSORS):
                    continue
                try:
                    value = a.value
                except NeffkitError:
                    continue
                for t in value if isinstance(value, list) else [value]:
                    p = getattr(t, "external_path", None)
                    if p:
                        seen[p] = None
    return list(seen)


def referenced_files(path: PathLike) -> list[str]:
    """The external data files the ONNX model at ``path`` references (absolute paths).

    Reads only the model file; an unreadable one references nothing (nothing is removed).
    """
    path = os.fspath(path)
    try:
        mp = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - not a readable model: claim nothing
        return []
    folder = os.path.dirname(os.path.abspath(path))
    out: dict[str, None] = {}
    stack: list[GraphProto] = [mp.graph]
    for f in mp.functions:
        for n in f.node:
            _attr_tensors(n, out, folder)
            stack.extend(_subgraphs(n))
    while stack:
        g = stack.pop()
        for t in g.initializer:
            _external_location(t, out, folder)
        for n in g.node:
            _attr_tensors(n, out, folder)
            stack.extend(_subgraphs(n))
    return list(out)


def _subgraphs(n: onnx.NodeProto) -> list[GraphProto]:
    subs = []
    for a in n.attribute:
        if a.type == AttributeProto.GRAPH:
            subs.append(a.g)
        elif a.type == AttributeProto.GRAPHS:
            subs.extend(a.graphs)
    return subs


def _attr_tensors(n: onnx.NodeProto, out: dict[str, None], folder: str) -> None:
    for a in n.attribute:
        if a.type == AttributeProto.TENSOR:
            _external_location(a.t, out, folder)
        elif a.type == AttributeProto.TENSORS:
            for t in a.tensors:
                _external_location(t, out, folder)


def _external_location(t: TensorProto, out: dict[str, None], folder: str) -> None:
    if t.data_location != TensorProto.EXTERNAL:
        return
    for e in t.external_data:
        if e.key == "location" and e.value:
            out[os.path.abspath(os.path.join(folder, e.value))] = None


def _wants_external(graph: Graph) -> bool:
    """Whether ``save`` writes external data by default.

    Yes when the source model kept its weights in external data (recorded at load, so that
    passes that read or replace tensors do not turn a big model into one inline protobuf),
    when some tensor still lives in a file, or when the weights would not fit a protobuf.
    """
    if graph.meta.external_data:
        return True
    total = 0
    for g in graph.all_graphs():
        for v in g.initializers.values():
            t = v.const
            if t is not None:
                if t.is_external:
                    return True
                total += t.nbytes
    return total > _MAX_PROTO


class _DataWriter:
    """Appends tensor bytes to one data file, 64-byte aligned, and records where."""

    def __init__(self, f, location: str) -> None:  # noqa: ANN001 - a binary file object
        self.f = f
        self.location = location
        self.offset = 0

    def __call__(self, t: Tensor, tp: TensorProto) -> None:
        pad = (-self.offset) % 64
        if pad:
            self.f.write(b"\0" * pad)
            self.offset += pad
        # Streamed: an external weight goes from its file to the new one in chunks, unread.
        length = 0
        for piece in t.byte_chunks():
            self.f.write(piece)
            length += len(piece)
        tp.data_location = TensorProto.EXTERNAL
        for k, val in (("location", self.location), ("offset", self.offset), ("length", length)):
            e = tp.external_data.add()
            e.key = k
            e.value = str(val)
        self.offset += length
