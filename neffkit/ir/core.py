"""The IR: ``Graph`` owns ``Node``s in topological order; ``Value``s carry ordered use-lists.

Every ``Value`` has one producer: a node output, a graph input, or an initializer (a graph
constant). Its uses are ``(node, input index)`` pairs in a dict, which keeps insertion order
and O(1) add/remove. Mutate only through the methods here so use-lists stay right; nodes
live in a doubly linked list, so insert/remove are O(1) and safe while iterating.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, KeysView, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
from onnx import AttributeProto

from neffkit.errors import VerificationError, describe_node
from neffkit.ir.tensor import Tensor
from neffkit.ir.types import Shape, TensorType, ValueType

Use = tuple["Node", int]

#: Every structural mutation stamps its graph with the next tick of this global clock, so the
#: largest stamp over a graph and its subgraphs changes whenever any of them changes.
_CLOCK = itertools.count(1)


class Value:
    """An SSA value: produced once, used by ``(node, index)`` pairs in first-use order.

    ``name``, ``type`` and ``const`` are properties: setting one stamps the value's graph.
    """

    __slots__ = ("_name", "_type", "producer", "index", "_const", "_graph", "_uses", "_outputs_of")

    def __init__(
        self,
        name: str = "",
        type: ValueType | None = None,  # noqa: A002 - mirrors ONNX's ValueInfo.type
        *,
        const: Tensor | None = None,
    ) -> None:
        self._name = name
        self._type = type
        self.producer: Node | None = None
        self.index = 0
        self._const = const
        self._graph: Graph | None = None
        self._uses: dict[Use, None] = {}
        self._outputs_of: dict[Graph, int] | None = None

    # -- annotations (setting one stamps the graph) --------------------------------------------

    @property
    def name(self) -> str:
        """The name hint (the exporter keeps it when it is free, else makes a fresh one)."""
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        self._name = name
        self._stamp()

    @property
    def type(self) -> ValueType | None:
        """The declared or inferred type, None when unknown."""
        return self._type

    @type.setter
    def type(self, t: ValueType | None) -> None:
        self._type = t
        self._stamp()

    @property
    def const(self) -> Tensor | None:
        """The tensor of a graph constant (initializer); None for computed values."""
        return self._const

    @const.setter
    def const(self, t: Tensor | None) -> None:
        self._const = t
        self._stamp()

    def _stamp(self) -> None:
        p = self.producer
        g = p.graph if p is not None else self._graph
        if g is not None:
            g.version = next(_CLOCK)

    # -- facts --------------------------------------------------------------------------------

    @property
    def graph(self) -> Graph | None:
        """The graph the value is defined in (its producer's graph, or its input's graph)."""
        return self.producer.graph if self.producer is not None else self._graph

    @property
    def uses(self) -> list[Use]:
        """``(node, input index)`` pairs, in the order the uses were added (a snapshot)."""
        return list(self._uses)

    def has_use(self, node: Node, index: int) -> bool:
        """True when input ``index`` of ``node`` is recorded as a use of this value (O(1))."""
        return (node, index) in self._uses

    def iter_uses(self) -> Iterator[Use]:
        """The uses without a copy; the value's uses must not change while iterating."""
        return iter(self._uses)

    @property
    def users(self) -> list[Node]:
        """Distinct nodes that use the value, in first-use order."""
        return list(dict.fromkeys(n for n, _ in self._uses))

    @property
    def num_uses(self) -> int:
        """Number of node inputs that read the value (graph outputs not counted)."""
        return len(self._uses)

    @property
    def is_used(self) -> bool:
        """True when a node reads the value or a graph returns it (O(1))."""
        return bool(self._uses) or bool(self._outputs_of)

    @property
    def is_graph_output(self) -> bool:
        """True when some graph lists this value among its outputs."""
        return bool(self._outputs_of)

    def is_output_of(self, graph: Graph) -> bool:
        """True when ``graph`` lists this value among its outputs."""
        d = self._outputs_of
        return d is not None and graph in d

    @property
    def is_initializer(self) -> bool:
        """True for a graph constant (ONNX initializer)."""
        return self.producer is None and self._const is not None

    @property
    def dtype(self) -> int | None:
        """The element type when the value is a tensor of known type."""
        if isinstance(self._type, TensorType):
            return self._type.dtype
        if self._const is not None:
            return self._const.dtype
        return None

    @property
    def shape(self) -> Shape:
        """The shape when known (constants always know theirs)."""
        if self._const is not None:
            return self._const.shape
        if isinstance(self._type, TensorType):
            return self._type.shape
        return None

    # -- mutation -----------------------------------------------------------------------------

    def replace_all_uses_with(self, other: Value) -> None:
        """Makes every user (node inputs and graph outputs) read ``other`` instead."""
        if other is self:
            return
        by_node: dict[Node, list[int]] = {}
        for node, i in self._uses:
            by_node.setdefault(node, []).append(i)
        for node, indices in by_node.items():
            node._replace_inputs(indices, self, other)
        if self._outputs_of:
            for g in list(self._outputs_of):
                g.replace_output(self, other)

    def __repr__(self) -> str:
        src = "input"
        if self.producer is not None:
            src = f"{self.producer.op_type}#{self.index}"
        elif self.const is not None:
            src = "const"
        return f"Value({self.name!r}, {self.type!r}, {src})"


class Attr:
    """A node attribute: name, ONNX attribute type and Python value.

    Attributes are immutable: change one with ``node.set_attr`` (from a Python value) or
    ``node.put_attr`` (a new ``Attr``). An attribute read from a file keeps its ``proto``, which the
    exporter reuses unchanged; the codec's lazy attributes (``neffkit.ir.serde``) decode their
    value on first read.
    """

    __slots__ = ("name", "type", "_value", "_proto", "ref")

    def __init__(
        self,
        name: str,
        type: int,  # noqa: A002 - mirrors AttributeProto.type
        value: Any,
        *,
        ref: str = "",
        proto: AttributeProto | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self._value = value
        self._proto = proto
        self.ref = ref

    @property
    def value(self) -> Any:
        """int, float, str, Tensor, Graph, or a list of those; TypeProtos stay protos."""
        return self._value

    @property
    def proto(self) -> AttributeProto | None:
        """The AttributeProto this attribute was read from (reused on export), if any."""
        return self._proto

    def __repr__(self) -> str:
        return f"Attr({self.name}={self.value!r})"


_GRAPH_TYPES = (AttributeProto.GRAPH, AttributeProto.GRAPHS)


def _plain_attribute_value(value: Any) -> Any:
    """numpy scalars as Python numbers, a numpy array as a Tensor (lists element-wise)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return Tensor(value)
    if isinstance(value, list | tuple) and any(isinstance(x, np.generic) for x in value):
        return [x.item() if isinstance(x, np.generic) else x for x in value]
    return value


class Node:
    """An operator application: op identity, ordered inputs (``None`` = omitted), attributes,
    output values, and the graph that owns it.

    ``op_type`` and ``domain`` are the node's identity, read on every visit of every pass and
    fixed at construction (to change an operator, build a new node and replace the old one).
    Every other change (``overload``, ``name``, ``doc_string``, attributes through
    ``set_attr`` / ``put_attr`` / ``remove_attr`` or by assigning ``attributes``, inputs)
    stamps the node's graph; ``attributes`` reads as a read-only mapping.
    """

    __slots__ = (
        "op_type",
        "domain",
        "_overload",
        "_name",
        "_attributes",
        "_inputs",
        "outputs",
        "graph",
        "_prev",
        "_next",
        "_doc_string",
    )

    def __init__(
        self,
        op_type: str,
        inputs: Sequence[Value | None] = (),
        *,
        domain: str = "",
        attributes: Mapping[str, Attr] | Iterable[Attr] | None = None,
        num_outputs: int = 1,
        outputs: Sequence[Value] | None = None,
        name: str = "",
        overload: str = "",
    ) -> None:
        self.op_type = op_type
        self.domain = "" if domain == "ai.onnx" else domain
        self._overload = overload
        self._name = name
        self._doc_string = ""
        if attributes is None:
            self._attributes: dict[str, Attr] = {}
        elif isinstance(attributes, Mapping):
            self._attributes = dict(attributes)
        else:
            self._attributes = {a.name: a for a in attributes}
        self._adopt_subgraphs()
        self.graph: Graph | None = None
        self._prev: Node | None = None
        self._next: Node | None = None
        # a tuple, so that ``inputs`` hands it out without a copy (a change builds a new one)
        self._inputs: tuple[Value | None, ...] = tuple(inputs)
        for i, v in enumerate(self._inputs):
            if v is not None:
                v._uses[(self, i)] = None
        outs = list(outputs) if outputs is not None else [Value() for _ in range(num_outputs)]
        for i, v in enumerate(outs):
            if v.producer is not None or v._graph is not None:
                raise VerificationError(f"value '{v.name}' already has a producer", self)
            v.producer = self
            v.index = i
        self.outputs: tuple[Value, ...] = tuple(outs)

    @classmethod
    def restore(
        cls,
        op_type: str,
        domain: str,
        name: str,
        inputs: list[Value | None],
        attributes: dict[str, Attr],
        outputs: Iterable[tuple[str, ValueType | None]],
        overload: str = "",
        doc_string: str = "",
    ) -> Node:
        """Builds a node as a decoder reads one: fast, with fresh output values, unchecked.

        The ONNX codec builds every node of a loaded model through this. Unlike ``Node()`` it
        makes each output ``Value`` from a ``(name, type)`` pair and checks nothing, so it is
        as cheap as setting the slots by hand, while the node's layout stays this module's
        business. Graphs held in ``attributes`` get the node as parent when it is added to a
        graph.
        """
        node = cls.__new__(cls)
        node.op_type = op_type
        node.domain = "" if domain == "ai.onnx" else domain
        node._overload = overload
        node._name = name
        node._doc_string = doc_string
        node._attributes = attributes  # owned; subgraphs are adopted when the node is linked
        node.graph = None
        node._prev = node._next = None
        node._inputs = tuple(inputs)
        for i, v in enumerate(inputs):
            if v is not None:
                v._uses[(node, i)] = None
        new_value = Value.__new__
        outs = []
        for i, (vname, vtype) in enumerate(outputs):
            v = new_value(Value)
            v._name = vname
            v._type = vtype
            v.producer = node
            v.index = i
            v._const = None
            v._graph = None
            v._uses = {}
            v._outputs_of = None
            outs.append(v)
        node.outputs = tuple(outs)
        return node

    # -- identity (setting one stamps the graph) -----------------------------------------------

    @property
    def overload(self) -> str:
        """The overload of a model-local function (usually empty)."""
        return self._overload

    @overload.setter
    def overload(self, overload: str) -> None:
        self._overload = overload
        self._stamp()

    @property
    def name(self) -> str:
        """The node's name (may be empty)."""
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        self._name = name
        self._stamp()

    @property
    def doc_string(self) -> str:
        """The node's documentation string."""
        return self._doc_string

    @doc_string.setter
    def doc_string(self, doc: str) -> None:
        self._doc_string = doc
        self._stamp()

    @property
    def attributes(self) -> Mapping[str, Attr]:
        """Attributes by name, read-only: change them with ``set_attr``, ``put_attr``,
        ``remove_attr``, or by assigning a new dict here (each stamps the graph)."""
        return MappingProxyType(self._attributes)

    @attributes.setter
    def attributes(self, attributes: Mapping[str, Attr]) -> None:
        self._attributes = dict(attributes)
        self._changed_attributes()

    def _stamp(self) -> None:
        if self.graph is not None:
            self.graph.version = next(_CLOCK)

    def _adopt_subgraphs(self) -> None:
        for a in self._attributes.values():
            if a.type == AttributeProto.GRAPH:
                a.value.parent = self
            elif a.type == AttributeProto.GRAPHS:
                for g in a.value:
                    g.parent = self

    def _changed_attributes(self) -> None:
        """Adopts subgraphs, keeps the graph's holder set right and stamps the graph."""
        self._adopt_subgraphs()
        g = self.graph
        if g is not None:
            if any(a.type in _GRAPH_TYPES for a in self._attributes.values()):
                g._holders[self] = None
            else:
                g._holders.pop(self, None)
            g.version = next(_CLOCK)

    # -- inputs -------------------------------------------------------------------------------

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        """The input values; ``None`` marks an omitted optional input."""
        return self._inputs

    def set_input(self, index: int, value: Value | None) -> None:
        """Replaces input ``index``, updating both values' use-lists."""
        old = self._inputs[index]
        if old is value:
            return
        if old is not None:
            old._uses.pop((self, index), None)
        ins = list(self._inputs)
        ins[index] = value
        self._inputs = tuple(ins)
        if value is not None:
            value._uses[(self, index)] = None
        if self.graph is not None:
            self.graph.version = next(_CLOCK)

    def append_input(self, value: Value | None) -> None:
        """Adds an input at the end."""
        self._inputs += (value,)
        if value is not None:
            value._uses[(self, len(self._inputs) - 1)] = None
        if self.graph is not None:
            self.graph.version = next(_CLOCK)

    def set_inputs(self, values: Sequence[Value | None]) -> None:
        """Replaces the whole input list."""
        self._drop_input_uses()
        self._inputs = tuple(values)
        for i, v in enumerate(self._inputs):
            if v is not None:
                v._uses[(self, i)] = None
        if self.graph is not None:
            self.graph.version = next(_CLOCK)

    def _replace_inputs(self, indices: list[int], old: Value, new: Value) -> None:
        """Makes inputs ``indices`` (which read ``old``) read ``new``: one rebuild, not one
        per input, so a node with thousands of inputs reading one value stays linear."""
        ins = list(self._inputs)
        uses_old, uses_new = old._uses, new._uses
        for i in indices:
            uses_old.pop((self, i), None)
            ins[i] = new
            uses_new[(self, i)] = None
        self._inputs = tuple(ins)
        if self.graph is not None:
            self.graph.version = next(_CLOCK)

    def _drop_input_uses(self) -> None:
        for i, v in enumerate(self._inputs):
            if v is not None:
                v._uses.pop((self, i), None)

    def drop_output(self, index: int) -> None:
        """Removes output ``index`` (it must be unused); later outputs shift down by one."""
        v = self.outputs[index]
        if v._uses or v._outputs_of:
            raise VerificationError(f"cannot drop output {index} '{v.name}': it is used", self)
        v.producer = None
        outs = list(self.outputs)
        del outs[index]
        for i, o in enumerate(outs):
            o.index = i
        self.outputs = tuple(outs)
        if self.graph is not None:
            self.graph.version = next(_CLOCK)

    # -- attributes and subgraphs ------------------------------------------------------------

    def attr(self, name: str, default: Any = None) -> Any:
        """The decoded value of attribute ``name``, or ``default`` when absent."""
        a = self._attributes.get(name)
        return default if a is None else a.value

    def set_attr(self, name: str, value: Any, type: int | None = None) -> None:  # noqa: A002
        """Sets an attribute from a Python value; the ONNX type is inferred unless given.

        numpy scalars count as Python numbers and a numpy array as a tensor.

        Raises:
            VerificationError: a value no ONNX attribute type holds.
        """
        value = _plain_attribute_value(value)
        try:
            t = type if type is not None else infer_attribute_type(value)
        except TypeError as e:
            raise VerificationError(f"attribute '{name}': {e}", self) from e
        self.put_attr(Attr(name, t, value))

    def put_attr(self, attr: Attr) -> None:
        """Adds ``attr``, or replaces the attribute of its name, as it is (its proto kept)."""
        self._attributes[attr.name] = attr
        self._changed_attributes()  # stamps, and adopts subgraphs

    def remove_attr(self, name: str) -> Attr | None:
        """Removes attribute ``name`` and returns it (None when the node has none of it)."""
        attr = self._attributes.pop(name, None)
        if attr is not None:
            self._changed_attributes()
        return attr

    @property
    def subgraphs(self) -> list[Graph]:
        """The graphs held in GRAPH / GRAPHS attributes (Loop body, If branches ...)."""
        out: list[Graph] = []
        for a in self._attributes.values():
            if a.type == AttributeProto.GRAPH:
                out.append(a.value)
            elif a.type == AttributeProto.GRAPHS:
                out.extend(a.value)
        return out

    @property
    def prev(self) -> Node | None:
        """The node before this one in its graph."""
        return self._prev

    @property
    def next(self) -> Node | None:
        """The node after this one in its graph."""
        return self._next

    def __repr__(self) -> str:
        return describe_node(self)


class Graph:
    """A graph: inputs, outputs, initializers and a topologically ordered node list.

    The top-level graph also records the model's opset imports and metadata; subgraphs
    (``Loop`` bodies, ``If`` branches) point to the node that holds them through ``parent``.
    """

    __slots__ = (
        "_name",
        "_inputs",
        "_outputs",
        "initializers",
        "_head",
        "_tail",
        "_len",
        "parent",
        "opset_imports",
        "meta",
        "version",
        "_doc_string",
        "_cache",
        "_holders",
        "_output_names",
        "_fresh",
        "__weakref__",
    )

    def __init__(self, name: str = "main", *, opset_imports: dict[str, int] | None = None):
        self._name = name
        self._inputs: list[Value] = []
        self._outputs: list[Value] = []
        self.initializers: dict[str, Value] = {}
        self._head: Node | None = None
        self._tail: Node | None = None
        self._len = 0
        self.parent: Node | None = None
        self.opset_imports: dict[str, int] = dict(opset_imports or {})
        self.meta: ModelMeta = ModelMeta()
        #: The stamp of the graph's latest change, from a clock shared by every graph: each
        #: mutation (structure, names, types, attributes, constants) sets it to the next tick.
        self.version = 0
        self._doc_string = ""
        self._cache: dict[str, tuple[int, Any]] = {}
        self._holders: dict[Node, None] = {}
        self._output_names: list[str] = []
        self._fresh: dict[str, int] = {}  # name hint -> next suffix to try (add_initializer)

    @property
    def name(self) -> str:
        """The graph's name."""
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        self._name = name
        self.version = next(_CLOCK)

    @property
    def doc_string(self) -> str:
        """The graph's documentation string."""
        return self._doc_string

    @doc_string.setter
    def doc_string(self, doc: str) -> None:
        self._doc_string = doc
        self.version = next(_CLOCK)

    # -- node list ----------------------------------------------------------------------------

    @property
    def first(self) -> Node | None:
        """The first node (walk on with ``node.next``), None when the graph is empty."""
        return self._head

    @property
    def last(self) -> Node | None:
        """The last node (walk back with ``node.prev``), None when the graph is empty."""
        return self._tail

    def __iter__(self) -> Iterator[Node]:
        """Nodes in order; removing the current node while iterating is safe."""
        node = self._head
        while node is not None:
            nxt = node._next
            yield node
            node = nxt

    def __reversed__(self) -> Iterator[Node]:
        node = self._tail
        while node is not None:
            prv = node._prev
            yield node
            node = prv

    def __len__(self) -> int:
        return self._len

    @property
    def nodes(self) -> list[Node]:
        """A snapshot list of the nodes in order."""
        return list(self)

    def append(self, node: Node) -> Node:
        """Adds ``node`` at the end and returns it."""
        self._link(node, self._tail, None)
        return node

    def insert_before(self, anchor: Node, node: Node) -> Node:
        """Inserts ``node`` right before ``anchor`` (which must belong to this graph)."""
        self._check_owned(anchor)
        self._link(node, anchor._prev, anchor)
        return node

    def insert_after(self, anchor: Node, node: Node) -> Node:
        """Inserts ``node`` right after ``anchor``."""
        self._check_owned(anchor)
        self._link(node, anchor, anchor._next)
        return node

    def _check_owned(self, node: Node) -> None:
        if node.graph is not self:
            raise VerificationError("anchor node is not in this graph", node)

    def _link(self, node: Node, prev: Node | None, nxt: Node | None) -> None:
        if node.graph is not None:
            raise VerificationError("node already belongs to a graph", node)
        node.graph = self
        node._prev = prev
        node._next = nxt
        if prev is None:
            self._head = node
        else:
            prev._next = node
        if nxt is None:
            self._tail = node
        else:
            nxt._prev = node
        self._len += 1
        self.version = next(_CLOCK)
        for a in node._attributes.values():
            if a.type in _GRAPH_TYPES:
                self._holders[node] = None
                node._adopt_subgraphs()
                break

    def remove(self, node: Node, *, safe: bool = True) -> None:
        """Unlinks ``node`` and drops its input uses.

        Args:
            node: a node of this graph.
            safe: refuse when an output is still used (else the caller takes responsibility).
        """
        self._check_owned(node)
        if safe:
            for v in node.outputs:
                if v._uses or v._outputs_of:
                    raise VerificationError(
                        f"cannot remove: output '{v.name}' still has {len(v._uses)} uses"
                        + (" and is a graph output" if v._outputs_of else ""),
                        node,
                    )
        node._drop_input_uses()
        _drop_subgraph_outer_uses(node)
        prev, nxt = node._prev, node._next
        if prev is None:
            self._head = nxt
        else:
            prev._next = nxt
        if nxt is None:
            self._tail = prev
        else:
            nxt._prev = prev
        node._prev = node._next = None
        node.graph = None
        self._holders.pop(node, None)
        self._len -= 1
        self.version = next(_CLOCK)

    erase = remove

    # -- inputs, outputs, constants -----------------------------------------------------------

    @property
    def inputs(self) -> tuple[Value, ...]:
        """Graph inputs, in order (IR v3 models may list initializers here too)."""
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Value, ...]:
        """Graph outputs, in order."""
        return tuple(self._outputs)

    def add_input(self, value: Value) -> Value:
        """Appends a graph input (a value with no producer)."""
        if value.producer is not None or (value._graph is not None and value._graph is not self):
            raise VerificationError(f"value '{value.name}' already has a producer")
        value._graph = self
        self._inputs.append(value)
        self.version = next(_CLOCK)
        return value

    def remove_input(self, value: Value) -> None:
        """Removes a graph input; it must be unused (and not also an initializer)."""
        if value._uses:
            raise VerificationError(f"graph input '{value.name}' is still used")
        self._inputs.remove(value)
        if value.const is None:
            value._graph = None
        self.version = next(_CLOCK)

    def add_initializer(self, value: Value) -> Value:
        """Registers a constant value (``value.const`` must be set) under ``value.name``."""
        if value.const is None:
            raise VerificationError(f"initializer '{value.name}' has no tensor")
        if value.producer is not None:
            raise VerificationError(f"initializer '{value.name}' has a producer")
        value._graph = self
        key = value.name
        if not key or key in self.initializers and self.initializers[key] is not value:
            key = self._fresh_key(value.name or "const")
            value.name = key
        self.initializers[key] = value
        self.version = next(_CLOCK)
        return value

    def _fresh_key(self, hint: str) -> str:
        """``hint_<i>`` for the first free ``i`` from where the last search for ``hint`` stopped.

        The counter per hint only grows, so adding N initializers with one hint costs O(N), not
        O(N^2); names stay deterministic (a name freed by a removal is not reused).
        """
        i = self._fresh.get(hint, 1)
        while f"{hint}_{i}" in self.initializers:
            i += 1
        self._fresh[hint] = i + 1
        return f"{hint}_{i}"

    def remove_initializer(self, value: Value) -> None:
        """Drops an unused constant (also from the inputs, if it is an IR v3 input)."""
        if value._uses or value._outputs_of:
            raise VerificationError(f"initializer '{value.name}' is still used")
        if self.initializers.get(value.name) is value:
            del self.initializers[value.name]
        else:  # renamed since it was added: find it
            for k, v in list(self.initializers.items()):
                if v is value:
                    del self.initializers[k]
        if value in self._inputs:
            self._inputs.remove(value)
        value._graph = None
        self.version = next(_CLOCK)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The interface names of the outputs, as given when each output slot was set.

        They outlive value replacement: when a pass makes an output slot hold another value,
        the exporter still writes the slot under its original name.
        """
        return tuple(self._output_names)

    def add_output(self, value: Value) -> None:
        """Appends a graph output."""
        self._output_names.append(value.name)
        self._outputs.append(value)
        _count_output(value, self, +1)
        self.version = next(_CLOCK)

    def set_outputs(self, values: Sequence[Value], names: Sequence[str] | None = None) -> None:
        """Replaces the output list; ``names`` gives the slots' interface names (default: the
        values' names, see ``output_names``)."""
        for v in self._outputs:
            _count_output(v, self, -1)
        self._outputs = list(values)
        if names is None:
            self._output_names = [v.name for v in self._outputs]
        else:
            if len(names) != len(self._outputs):
                raise VerificationError(f"{len(names)} output names for {len(values)} outputs")
            self._output_names = list(names)
        for v in self._outputs:
            _count_output(v, self, +1)
        self.version = next(_CLOCK)

    def replace_output(self, old: Value, new: Value) -> None:
        """Makes every output slot that holds ``old`` hold ``new``."""
        for i, v in enumerate(self._outputs):
            if v is old:
                self._outputs[i] = new
                _count_output(old, self, -1)
                _count_output(new, self, +1)
        self.version = next(_CLOCK)

    # -- walking ------------------------------------------------------------------------------

    def all_nodes(self) -> Iterator[Node]:
        """Every node of this graph and, depth first after their parent, of its subgraphs."""
        if not self._holders:
            yield from self
            return
        stack: list[tuple[Graph, Iterator[Node]]] = [(self, iter(self))]
        while stack:
            g, it = stack[-1]
            node = next(it, None)
            if node is None:
                stack.pop()
                continue
            yield node
            if node in g._holders:
                for sub in reversed(node.subgraphs):
                    stack.append((sub, iter(sub)))

    def all_graphs(self) -> Iterator[Graph]:
        """This graph and every nested subgraph (O(graphs), not O(nodes))."""
        stack: list[Graph] = [self]
        while stack:
            g = stack.pop()
            yield g
            if g._holders:
                subs = [sub for n in g._holders for sub in n.subgraphs]
                stack.extend(reversed(subs))

    @property
    def subgraph_nodes(self) -> list[Node]:
        """The nodes of this graph that hold subgraphs (Loop, If, Scan ...), in insertion order."""
        return list(self._holders)

    @property
    def holders(self) -> KeysView[Node]:
        """The nodes that hold subgraphs, as a live read-only view: O(1) to get and to test
        ``node in graph.holders`` (copy it before removing nodes while iterating)."""
        return self._holders.keys()

    def take_contents(self, source: Graph) -> None:
        """Moves everything ``source`` holds into this graph (which callers keep referencing).

        ``source`` must be a top-level graph that nothing else uses afterwards; it is left
        empty.
        """
        for v in self._outputs:
            if v._outputs_of:
                v._outputs_of.pop(self, None)
        self._outputs = []
        self._name = source.name
        self._doc_string = source.doc_string
        self.opset_imports = dict(source.opset_imports)
        self.meta = source.meta
        self._inputs = source._inputs
        self.initializers = source.initializers
        self._head, self._tail, self._len = source._head, source._tail, source._len
        self._holders = source._holders
        source._holders = {}
        for v in source._inputs:
            v._graph = self
        for v in source.initializers.values():
            v._graph = self
        for node in self:
            node.graph = self
        outs = list(source._outputs)
        names = list(source._output_names)
        source.set_outputs([])
        self.set_outputs(outs, names)
        source._head = source._tail = None
        source._len = 0
        source._inputs = []
        source.initializers = {}
        self.version = next(_CLOCK)

    @property
    def root(self) -> Graph:
        """The top-level graph this graph is nested in (itself if top level)."""
        g = self
        while g.parent is not None and g.parent.graph is not None:
            g = g.parent.graph
        return g

    def opset(self, domain: str = "") -> int | None:
        """The opset version imported for ``domain`` (looked up on the top-level graph)."""
        return self.root.opset_imports.get(domain)

    def cached(self, key: str, build: Any) -> Any:
        """Returns ``build(self)``, cached until the graph's version changes."""
        hit = self._cache.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        value = build(self)
        self._cache[key] = (self.version, value)
        return value

    def __repr__(self) -> str:
        return (
            f"Graph({self.name!r}, {len(self._inputs)} inputs, {len(self._outputs)} outputs, "
            f"{self._len} nodes, {len(self.initializers)} initializers)"
        )


class ModelMeta:
    """Model-level data carried through a round trip unchanged (top-level graph only)."""

    __slots__ = (
        "ir_version",
        "producer_name",
        "producer_version",
        "domain",
        "model_version",
        "doc_string",
        "metadata_props",
        "functions",
        "sparse_initializers",
        "source_path",
        "external_data",
    )

    def __init__(self) -> None:
        self.ir_version: int | None = None
        self.producer_name = "neffkit"
        self.producer_version = ""
        self.domain = ""
        self.model_version = 0
        self.doc_string = ""
        self.metadata_props: dict[str, str] = {}
        self.functions: list[Any] = []
        self.sparse_initializers: list[Any] = []
        self.source_path: str | None = None
        #: The source file kept tensors in external data (``save`` then does too).
        self.external_data = False


def _drop_subgraph_outer_uses(node: Node) -> None:
    """Forgets the uses that nodes inside ``node``'s subgraphs make of outer values."""
    subs = node.subgraphs
    if not subs:
        return
    inner: set[Graph] = set()
    for g in subs:
        inner.update(g.all_graphs())
    for g in inner:
        for n in g:
            for i, v in enumerate(n._inputs):
                if v is not None and v.graph not in inner:
                    v._uses.pop((n, i), None)
        for v in g._outputs:
            if v.graph not in inner and v._outputs_of:
                v._outputs_of.pop(g, None)


def _count_output(value: Value, graph: Graph, delta: int) -> None:
    d = value._outputs_of
    if d is None:
        d = value._outputs_of = {}
    n = d.get(graph, 0) + delta
    if n > 0:
        d[graph] = n
    else:
        d.pop(graph, None)


def infer_attribute_type(value: Any) -> int:
    """Guesses the AttributeProto type of a Python value (lists take their first element's)."""
    if isinstance(value, bool | int):
        return AttributeProto.INT
    if isinstance(value, float):
        return AttributeProto.FLOAT
    if isinstance(value, str | bytes):
        return AttributeProto.STRING
    if isinstance(value, Tensor):
        return AttributeProto.TENSOR
    if isinstance(value, Graph):
        return AttributeProto.GRAPH
    if isinstance(value, list | tuple):
        if not value:
            return AttributeProto.INTS
        first = infer_attribute_type(value[0])
        if first == AttributeProto.INT and any(isinstance(x, float) for x in value):
            return AttributeProto.FLOATS
        lists: dict[int, int] = {
            AttributeProto.INT: AttributeProto.INTS,
            AttributeProto.FLOAT: AttributeProto.FLOATS,
            AttributeProto.STRING: AttributeProto.STRINGS,
            AttributeProto.TENSOR: AttributeProto.TENSORS,
            AttributeProto.GRAPH: AttributeProto.GRAPHS,
        }
        return lists[first]
    raise TypeError(f"cannot infer an ONNX attribute type for {type(value).__name__}")
