"""ONNX codec, decoding: ``ModelProto`` -> ``Graph``.

Names are resolved through lexical scopes, so a subgraph's reference to an outer value becomes
a real use of that ``Value``. Attributes stay as their protos until read; external tensors are
located (and checked to stay inside ``base_dir``, the model's folder) but not read until
needed. The cheap checks nothing downstream copes without (unknown element types, negative
dimensions, text that is not UTF-8, names read before they are defined) are made here; the
frontend (``neffkit.frontends.onnx``) reads files and runs the ONNX checker.
"""

from __future__ import annotations

import heapq
from typing import Any

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto

from neffkit._gc import paused_gc
from neffkit.errors import FrontendError
from neffkit.ir.core import Attr, Graph, Node, Value
from neffkit.ir.serde.attributes import GRAPH_TYPES, LazyAttr
from neffkit.ir.serde.tensors import (
    KNOWN_DTYPES,
    check_input_type,
    negative_dims,
    sparse_to_dense,
)
from neffkit.ir.tensor import Tensor
from neffkit.ir.types import type_from_proto


def decode_model(
    proto: ModelProto, *, base_dir: str | None = None, source: str = "<ModelProto>"
) -> Graph:
    """The graph of a ModelProto.

    Args:
        proto: the model.
        base_dir: the folder external data is read from (and must stay inside); None refuses
            external data.
        source: how error messages name the model (a file name, ``<bytes>`` ...).

    Raises:
        FrontendError: the model refers to something invalid (undefined names, cycles, bad
            tensors, external data outside ``base_dir`` ...) or is malformed.
    """
    try:
        with paused_gc():
            return _Decoder(base_dir, source).model(proto)
    except RecursionError as e:
        raise FrontendError(f"{source}: subgraphs nested too deeply to read") from e
    except (ValueError, KeyError, TypeError, IndexError, OverflowError) as e:
        raise FrontendError(f"{source}: malformed model: {e}") from e


class _OutOfOrder(Exception):
    """Raised inside loading when a node reads a name that a later node defines."""


#: Attribute types that may hold external data: decoded at load, against the model's folder.
_CHECKED_ATTRS = frozenset(
    (AttributeProto.TENSORS, AttributeProto.SPARSE_TENSOR, AttributeProto.SPARSE_TENSORS)
)


class _Scope:
    """Name -> Value for one graph, chained to the enclosing graph's scope."""

    __slots__ = ("names", "outer")

    def __init__(self, outer: _Scope | None) -> None:
        self.names: dict[str, Value] = {}
        self.outer = outer

    def lookup(self, name: str) -> Value | None:
        s: _Scope | None = self
        while s is not None:
            v = s.names.get(name)
            if v is not None:
                return v
            s = s.outer
        return None


class _Decoder:
    def __init__(self, base_dir: str | None, source: str) -> None:
        self.base_dir = base_dir
        self.source = source
        self.external = False  # some tensor's bytes live in an external file

    def model(self, mp: ModelProto) -> Graph:
        texts = [mp.producer_name, mp.producer_version, mp.domain, mp.doc_string]
        texts += [o.domain for o in mp.opset_import]
        texts += [x for p in mp.metadata_props for x in (p.key, p.value)]
        if any(t.__class__ is not str for t in texts):
            self._not_utf8("a model field (producer, domain, doc_string, opset or metadata)")
        opsets = {}
        for o in mp.opset_import:
            opsets["" if o.domain == "ai.onnx" else o.domain] = o.version
        if mp.ir_version >= 3 and "" not in opsets and not mp.opset_import:
            opsets[""] = 1
        g = self.graph(mp.graph, None)
        g.opset_imports = opsets
        m = g.meta
        m.ir_version = mp.ir_version
        m.producer_name = mp.producer_name
        m.producer_version = mp.producer_version
        m.domain = mp.domain
        m.model_version = mp.model_version
        m.doc_string = mp.doc_string
        m.metadata_props = {p.key: p.value for p in mp.metadata_props}
        for f in mp.functions:
            _refuse_external_in_function(f, self.source)
        m.functions = list(mp.functions)
        m.external_data = self.external
        return g

    def graph(self, gp: GraphProto, outer: _Scope | None) -> Graph:
        if gp.name.__class__ is not str or gp.doc_string.__class__ is not str:
            self._not_utf8("a graph's name or doc_string")
        g = Graph(gp.name)
        g.doc_string = gp.doc_string
        scope = _Scope(outer)
        names = scope.names
        types = {vi.name: vi.type for vi in gp.value_info}
        known_dtypes = KNOWN_DTYPES
        negative = negative_dims
        for tp in gp.initializer:
            if tp.data_type not in known_dtypes or tp.name.__class__ is not str or negative(tp):
                self._bad_tensor(tp, "initializer")
            t = Tensor.from_proto(tp, self.base_dir)
            if t.is_external:
                self.external = True
            v = Value(tp.name, const=t)
            g.add_initializer(v)
            names[tp.name] = v
        for vi in gp.input:
            if vi.name.__class__ is not str:
                self._not_utf8("a graph input's name")
            check_input_type(vi, self.source)
            inp = names.get(vi.name)
            if inp is None:
                inp = Value(vi.name, type_from_proto(vi.type))
                names[vi.name] = inp
            else:
                inp.type = type_from_proto(vi.type)
            g.add_input(inp)
        if gp.sparse_initializer:
            # Values and indices are read through the checked path and kept inline, so the
            # sparse form written back on export never refers to a file.
            sparse = [self.sparse(sp) for sp in gp.sparse_initializer]
            if outer is None:
                g.meta.sparse_initializers = sparse
            for sp in sparse:
                arr = sparse_to_dense(sp, self.source)
                v = Value(sp.values.name, const=Tensor(arr, sp.values.name))
                g.add_initializer(v)
                names[sp.values.name] = v
        node_protos = list(gp.node)
        try:
            self._nodes(node_protos, g, scope, types)
        except _OutOfOrder:
            # The file's nodes are not topologically sorted: drop the partial node list (and
            # with it its uses of outer values), sort, and build again.
            for node in reversed(g):
                g.remove(node, safe=False)
            scope.names = {k: v for k, v in scope.names.items() if v.producer is None}
            node_protos = self._toposort(node_protos, scope, gp.name)
            try:
                self._nodes(node_protos, g, scope, types)
            except _OutOfOrder:
                raise FrontendError(
                    f"{self.source}: graph '{gp.name}' reads a name before any node defines "
                    "it, even in topological order"
                ) from None
        outs = []
        for vi in gp.output:
            if vi.name.__class__ is not str:
                self._not_utf8("a graph output's name")
            out = scope.lookup(vi.name)
            if out is None:
                raise FrontendError(
                    f"{self.source}: graph '{gp.name}' output '{vi.name}' is produced by no node, "
                    "input or initializer"
                )
            declared = type_from_proto(vi.type)
            if declared is not None and (out.type is None or out.producer is not None):
                out.type = declared
            outs.append(out)
        g.set_outputs(outs)
        return g

    def _nodes(
        self, protos: list[NodeProto], g: Graph, scope: _Scope, types: dict[str, Any]
    ) -> None:
        """Builds the nodes of one graph; the hot loop of loading, kept free of extra calls."""
        names = scope.names
        lookup = names.get if scope.outer is None else scope.lookup
        base_dir = self.base_dir
        graph_types = GRAPH_TYPES
        tensor_type = AttributeProto.TENSOR
        known_dtypes = KNOWN_DTYPES
        restore = Node.restore
        append = g.append
        for np_ in protos:
            inputs: list[Value | None] = []
            for name in np_.input:
                if not name:
                    inputs.append(None)
                    continue
                v = lookup(name)
                if v is None:
                    self._undefined(np_, name, protos)
                inputs.append(v)
            attrs: dict[str, Attr] = {}
            for ap in np_.attribute:
                t = ap.type
                if ap.name.__class__ is not str:
                    self._not_utf8(f"an attribute name of node '{np_.name}'")
                if t in graph_types:
                    attrs[ap.name] = self._graph_attr(ap, scope)
                elif t == tensor_type:
                    tp = ap.t
                    if tp.data_type not in known_dtypes or negative_dims(tp):
                        self._bad_tensor(tp, f"attribute '{ap.name}' of node '{np_.name}'")
                    value = Tensor.from_proto(tp, base_dir)
                    if value.is_external:
                        self.external = True  # the exporter writes the bytes inline
                        attrs[ap.name] = Attr(ap.name, t, value)
                    else:
                        attrs[ap.name] = Attr(ap.name, t, value, proto=ap)
                elif t in _CHECKED_ATTRS:
                    attrs[ap.name] = self._checked_attr(ap)
                else:
                    attrs[ap.name] = LazyAttr(ap)
            domain = np_.domain
            op_type = np_.op_type
            node_name = np_.name
            doc = np_.doc_string
            # protobuf hands back bytes for a string field that is not UTF-8
            if (
                op_type.__class__ is not str
                or node_name.__class__ is not str
                or domain.__class__ is not str
                or doc.__class__ is not str
            ):
                self._not_utf8(f"node '{node_name}' ({op_type})")
            outputs = []
            for name in np_.output:
                if name.__class__ is not str:
                    self._not_utf8(f"an output name of node '{node_name}' ({op_type})")
                tp = types.get(name) if types else None
                outputs.append((name, type_from_proto(tp) if tp is not None else None))
            node = restore(op_type, domain, node_name, inputs, attrs, outputs, np_.overload, doc)
            for v in node.outputs:
                vname = v.name
                if vname:
                    names[vname] = v
            append(node)

    def _not_utf8(self, what: str) -> None:
        raise FrontendError(f"{self.source}: {what} is not valid UTF-8 text")

    def _graph_attr(self, ap: AttributeProto, scope: _Scope) -> Attr:
        """A GRAPH / GRAPHS attribute (the node becomes the graphs' parent when it is linked)."""
        if ap.type == AttributeProto.GRAPH:
            return Attr(ap.name, ap.type, self.graph(ap.g, scope))
        return Attr(ap.name, ap.type, [self.graph(x, scope) for x in ap.graphs])

    def sparse(self, sp: onnx.SparseTensorProto) -> onnx.SparseTensorProto:
        """``sp`` with external values / indices read (through the checked path) inline."""
        if TensorProto.EXTERNAL not in (sp.values.data_location, sp.indices.data_location):
            return sp
        self.external = True
        out = onnx.SparseTensorProto()
        out.CopyFrom(sp)
        for field in (out.values, out.indices):
            if field.data_location == TensorProto.EXTERNAL:
                arr = Tensor.from_proto(field, self.base_dir).numpy()
                field.CopyFrom(onnx.numpy_helper.from_array(arr, field.name))
        return out

    def _checked_attr(self, ap: AttributeProto) -> Attr:
        """A TENSORS or sparse attribute, its external data resolved against the folder."""
        t = ap.type
        value: Any
        if t == AttributeProto.TENSORS:
            value = [Tensor.from_proto(x, self.base_dir) for x in ap.tensors]
            external = any(x.is_external for x in value)
            self.external |= external
        else:
            protos = [ap.sparse_tensor] if t == AttributeProto.SPARSE_TENSOR else ap.sparse_tensors
            inline = [self.sparse(x) for x in protos]
            for sp in inline:
                sparse_to_dense(sp, self.source, check_only=True)
            external = any(x is not y for x, y in zip(inline, protos))
            value = inline[0] if t == AttributeProto.SPARSE_TENSOR else inline
        # the proto is reused as is on export; with external data the exporter writes the bytes
        return Attr(ap.name, t, value, proto=None if external else ap)

    def _undefined(self, np_: NodeProto, name: str, protos: list[NodeProto]) -> None:
        if any(name in p.output for p in protos):
            raise _OutOfOrder()
        raise FrontendError(
            f"{self.source}: node '{np_.name or '<unnamed>'}' ({np_.op_type}) reads "
            f"'{name}', which no earlier node, graph input or initializer defines"
        )

    def _toposort(self, protos: list[NodeProto], scope: _Scope, gname: str) -> list[NodeProto]:
        """Kahn's algorithm over names, for files whose nodes are not in topological order."""
        producer = {}
        for i, np_ in enumerate(protos):
            for o in np_.output:
                if o:
                    producer[o] = i
        deps: list[set[int]] = []
        for np_ in protos:
            d = set()
            for name in _all_reads(np_):
                j = producer.get(name)
                if j is not None:
                    d.add(j)  # j == i: the node reads its own output, a cycle
            deps.append(d)
        order = _stable_topo(len(protos), deps)
        if len(order) != len(protos):
            placed = set(order)
            stuck = next(protos[i] for i in range(len(protos)) if i not in placed)
            raise FrontendError(
                f"{self.source}: graph '{gname}' has a cycle or undefined input around node "
                f"'{stuck.name or '<unnamed>'}' ({stuck.op_type})"
            )
        return [protos[i] for i in order]

    def _bad_tensor(self, tp: onnx.TensorProto, what: str) -> None:
        """Raises for a tensor with a non-UTF-8 name, an unknown data_type or a negative dim
        (found before anything decodes it)."""
        if tp.name.__class__ is not str:
            self._not_utf8(f"the name of an {what}")
        if what == "initializer":
            what = f"initializer '{tp.name}'"
        if tp.data_type not in KNOWN_DTYPES:
            raise FrontendError(f"{self.source}: {what} has the unknown data_type {tp.data_type}")
        raise FrontendError(f"{self.source}: {what} has a negative dimension in {list(tp.dims)}")


def _refuse_external_in_function(f: onnx.FunctionProto, source: str) -> None:
    """Refuses a model-local function whose tensors (Constant values, in subgraphs too) live in
    external data: functions are kept as protos, so no checked read would ever reach them."""
    stack = [a for n in f.node for a in n.attribute]
    while stack:
        a = stack.pop()
        tensors = [a.t] if a.HasField("t") else []
        tensors.extend(a.tensors)
        for sp in [a.sparse_tensor] if a.HasField("sparse_tensor") else []:
            tensors.extend((sp.values, sp.indices))
        for sp in a.sparse_tensors:
            tensors.extend((sp.values, sp.indices))
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
            raise FrontendError(
                f"{source}: function '{f.domain}.{f.name}' holds a tensor stored as external "
                "data; neffkit reads external data only for the main graph and its subgraphs"
            )
        for sub in [a.g] if a.HasField("g") else []:
            stack.extend(x for n in sub.node for x in n.attribute)
        for sub in a.graphs:
            stack.extend(x for n in sub.node for x in n.attribute)


def _all_reads(np_: NodeProto) -> list[str]:
    """Names a node reads, including those its subgraphs take from the outer scope."""
    names = [n for n in np_.input if n]
    stack = [a for a in np_.attribute]
    while stack:
        ap = stack.pop()
        for sub in [ap.g] if ap.type == AttributeProto.GRAPH else list(ap.graphs):
            for sn in sub.node:
                names.extend(n for n in sn.input if n)
                stack.extend(sn.attribute)
    return names


def _stable_topo(n: int, deps: list[set[int]]) -> list[int]:
    """Topological order that keeps the file's order wherever dependencies allow."""
    users: list[list[int]] = [[] for _ in range(n)]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    remaining = [len(d) for d in deps]
    heap = [i for i, r in enumerate(remaining) if r == 0]
    heapq.heapify(heap)
    out = []
    while heap:
        i = heapq.heappop(heap)
        out.append(i)
        for u in users[i]:
            remaining[u] -= 1
            if remaining[u] == 0:
                heapq.heappush(heap, u)
    return out
