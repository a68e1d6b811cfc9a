"""What a lowering function sees: ``LoweringContext``, the fx graph being built and facts about
the ONNX node being lowered (its opset, constant inputs), with the helpers that emit fx nodes.

The context does not lower graphs itself: ``lowering.lower_graph`` makes it and hands it the
function that lowers a subgraph (``ctx.lower_subgraph``), so this module sits below
``registry`` and ``lowering`` and the op lowerings import it without a circle.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
import torch.fx as fx

from neffkit.backends.torch.convert import constant_attr_value, py_name, to_torch
from neffkit.errors import BackendError
from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import Tensor, dtype_name

# lower_graph(graph, captures=..., list_io=True) -> GraphModule, as lowering.lower_graph
SubgraphLowering = Callable[..., fx.GraphModule]


class LoweringContext:
    """What a lowering function sees: an fx graph to emit into and facts about the model."""

    def __init__(
        self,
        fx_graph: fx.Graph,
        root: torch.nn.Module,
        graph: Graph,
        lower_graph: SubgraphLowering,
    ) -> None:
        self.fx = fx_graph
        self.root = root
        self.graph = graph
        self.node: Node | None = None
        self._buffers: dict[int, fx.Node] = {}
        self._names: set[str] = set()
        self.env: dict[Value, Any] = {}
        # Integer values of rank 0 or 1 whose elements are known while lowering, each a Python
        # int or an fx node holding a run-time size (``x.size(1)``): what Shape, Gather, Concat
        # ... of shapes compute. Consumers read them through ``known_ints`` so sizes reach torch
        # as Python ints (SymInts under torch.compile/export), never as tensors read at run time.
        self.ints: dict[Value, tuple[list[Any], bool]] = {}
        self._lower_graph = lower_graph

    # -- facts about the node being lowered -------------------------------------------------

    @property
    def opset(self) -> int:
        """The opset version of the current node's domain (the newest known if unrecorded)."""
        assert self.node is not None
        v = self.graph.opset(self.node.domain)
        if v is None:
            return onnx.defs.onnx_opset_version()
        return v

    def constant(self, value: Value | None) -> np.ndarray | None:
        """The value of an input known when lowering (initializer or Constant node), else None."""
        if value is None:
            return None
        if value.const is not None and value.producer is None:
            # An IR v3 initializer that is also a graph input counts too: the lowered module
            # takes no argument for it (``lower_graph`` reads it from a buffer), so it is fixed.
            return value.const.numpy()
        p = value.producer
        if p is not None and p.op_type == "Constant" and p.domain == "":
            return constant_attr_value(p)
        return None

    def input_constant(self, index: int) -> np.ndarray | None:
        """``constant()`` of the current node's input ``index`` (None when absent)."""
        assert self.node is not None
        ins = self.node.inputs
        return self.constant(ins[index]) if index < len(ins) else None

    def known_ints(self, value: Value | None) -> tuple[list[Any], bool] | None:
        """The elements of an integer value of rank <= 1 known while lowering, and whether it is
        0-d: Python ints (constants, static dims) or fx nodes of run-time sizes; else None."""
        if value is None:
            return None
        hit = self.ints.get(value)
        if hit is not None:
            return hit
        c = self.constant(value)
        if c is None or c.ndim > 1 or c.dtype.kind not in "iu" or c.size > 64:
            return None
        return [int(e) for e in c.reshape(-1)], c.ndim == 0

    def set_ints(self, value: Value, elements: list[Any], scalar: bool) -> None:
        """Records the known elements of ``value`` (see ``known_ints``)."""
        if scalar and len(elements) != 1:
            return
        self.ints[value] = (list(elements), scalar)

    # -- emitting ---------------------------------------------------------------------------

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> fx.Node:
        """Emits ``fn(*args, **kwargs)``."""
        return self.fx.call_function(fn, tuple(args), kwargs)

    def method(self, name: str, *args: Any, **kwargs: Any) -> fx.Node:
        """Emits ``args[0].name(*args[1:], **kwargs)``."""
        return self.fx.call_method(name, tuple(args), kwargs)

    def getitem(self, x: Any, i: Any) -> fx.Node:
        """Emits ``x[i]``."""
        return self.fx.call_function(operator.getitem, (x, i))

    def tensor(self, data: np.ndarray | torch.Tensor | Tensor, hint: str = "const") -> fx.Node:
        """Registers ``data`` as a buffer of the module and emits a read of it."""
        owned = False
        if isinstance(data, Tensor):
            # An unread external weight is read into an array the module then owns (not cached
            # on the IR tensor too), so a big model's weights are held once.
            owned = data.is_external
            data = data.fresh_numpy() if owned else data.numpy()
        if isinstance(data, torch.Tensor):
            t = data
        else:
            t = to_torch(np.asarray(data), copy=not owned)
        name = self._fresh(py_name(hint, "const"))
        self.root.register_buffer(name, t)
        return self.fx.get_attr(name)

    def buffer_for(self, value: Value) -> fx.Node:
        """The (cached) buffer read for an initializer value."""
        hit = self._buffers.get(id(value))
        if hit is None:
            assert value.const is not None
            hit = self.tensor(value.const, value.name)
            self._buffers[id(value)] = hit
        return hit

    def submodule(self, module: torch.nn.Module, hint: str) -> str:
        """Adds a child module to the root and returns its attribute name."""
        name = self._fresh(py_name(hint, "sub"))
        self.root.add_module(name, module)
        return name

    def lower_subgraph(self, sub: Graph) -> tuple[fx.GraphModule, list[Value]]:
        """Lowers a subgraph into a GraphModule ``forward(inputs, captures) -> List[Tensor]``.

        Returns:
            The module and the outer values it captures, in the order ``captures`` expects.
        """
        captures = free_values(sub)
        return self._lower_graph(sub, captures=captures, list_io=True), captures

    def value(self, v: Value) -> Any:
        """The fx node holding an already lowered value of this graph or an enclosing one."""
        return read_value(v, self.env, self)

    def _fresh(self, base: str) -> str:
        name = base
        i = 1
        while name in self._names or hasattr(self.root, name):
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name


def free_values(sub: Graph) -> list[Value]:
    """Values a subgraph (or its own subgraphs) reads from enclosing graphs, in first-use order."""
    inner = set(sub.all_graphs())
    out: dict[Value, None] = {}
    for node in sub.all_nodes():
        for v in node.inputs:
            if v is not None and v.graph not in inner:
                out[v] = None
    for g in inner:
        for v in g.outputs:
            if v.graph not in inner:
                out[v] = None
    return list(out)


def read_value(v: Value, env: dict[Value, Any], ctx: LoweringContext) -> Any:
    """The fx node of a lowered value; an initializer is read (once) from its buffer."""
    hit = env.get(v)
    if hit is not None:
        return hit
    if v.const is not None:
        node = ctx.buffer_for(v)
        env[v] = node
        return node
    raise BackendError(
        f"value '{v.name}' ({dtype_name(v.dtype)}) is read before it is defined in the lowering"
    )
