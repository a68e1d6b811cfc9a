"""Graph -> ``torch.fx.GraphModule``: one fx node per torch call, readable generated code.

Initializers become buffers (``self.<name>``), graph inputs become ``forward`` arguments, and
each ONNX node is lowered by its registered function (see ``registry``). Subgraphs (Loop
bodies, If branches) become child GraphModules with the signature
``forward(inputs: List[Tensor], captures: List[Tensor]) -> List[Tensor]``, where ``captures``
are the outer values the subgraph reads.
"""

from __future__ import annotations

import keyword
import operator
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from onnx import TensorProto

from neffkit.backends.torch.registry import Unsupported, as_list, lookup
from neffkit.errors import BackendError, describe_node
from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import Tensor, dtype_name, np_dtype

_IDENT = re.compile(r"\W")


def py_name(hint: str, fallback: str = "v") -> str:
    """A valid Python identifier derived from an ONNX name."""
    name = _IDENT.sub("_", hint or fallback).strip("_") or fallback
    if name[0].isdigit():
        name = f"{fallback}_{name}"
    if keyword.iskeyword(name) or name in ("self", "torch", "typing"):
        name = f"{name}_"
    return name


def to_torch(arr: np.ndarray, *, copy: bool = True) -> torch.Tensor:
    """A torch tensor with the same dtype and values as a numpy array (bfloat16 included).

    ``copy=False``: share a writable, contiguous array's memory instead of copying it (the
    caller gives the array up).

    int4 / uint4 / int2 / uint2 / float4e2m1 / float8e8m0 arrays (ml_dtypes) come back in their
    carrier dtype (see ``CARRIERS``): same values, a wider torch dtype.
    """
    dt = arr.dtype
    if dt.kind in ("U", "S", "O"):
        raise Unsupported("string tensors are not supported by the torch backend")
    name = dt.name
    carrier = _CARRIER_BY_NAME.get(name)
    if carrier is not None:
        return torch.from_numpy(np.asarray(arr).astype(_NP_CARRIER[carrier]))
    if name == "bfloat16":
        bits = np.ascontiguousarray(arr).view(np.uint16).reshape(arr.shape)
        return torch.from_numpy(bits.copy()).view(torch.bfloat16)
    special = _ML_DTYPES.get(name)
    if special is not None:
        bits = np.ascontiguousarray(arr).view(np.uint8).reshape(arr.shape)
        return torch.from_numpy(bits.copy()).view(special)
    if dt.kind == "V":
        raise Unsupported(f"dtype {name} has no torch equivalent")
    if not copy and arr.flags.writeable and arr.flags.c_contiguous:
        return torch.from_numpy(arr)
    return torch.from_numpy(np.array(arr, copy=True))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The inverse of :func:`to_torch` (moves to the CPU); a carrier stays in its carrier dtype
    (only the graph knows the ONNX type it holds: see :func:`from_carrier`)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    for name, tdt in _ML_DTYPES.items():
        if t.dtype == tdt:
            import ml_dtypes

            return t.view(torch.uint8).numpy().view(getattr(ml_dtypes, name))
    return t.numpy()


_ML_DTYPES = {
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e4m3fnuz": torch.float8_e4m3fnuz,
    "float8_e5m2": torch.float8_e5m2,
    "float8_e5m2fnuz": torch.float8_e5m2fnuz,
}

# -- carriers: ONNX element types torch has no dtype for ----------------------------------------

# Inside a module a value of these types is held in a torch dtype that represents each of its
# values exactly; the ops that create such values (Cast, QuantizeLinear, ...) apply the ONNX
# rounding and range, and ``run()`` turns graph outputs back into ml_dtypes arrays.
CARRIERS: dict[int, torch.dtype] = {
    TensorProto.INT4: torch.int8,
    TensorProto.UINT4: torch.uint8,
    TensorProto.INT2: torch.int8,
    TensorProto.UINT2: torch.uint8,
    TensorProto.FLOAT4E2M1: torch.float32,
    TensorProto.FLOAT8E8M0: torch.float32,
}
# Bit width and signedness of the sub-byte integer types.
SUBBYTE_INTS: dict[int, tuple[int, bool]] = {
    TensorProto.INT4: (4, True),
    TensorProto.UINT4: (4, False),
    TensorProto.INT2: (2, True),
    TensorProto.UINT2: (2, False),
}
_CARRIER_BY_NAME = {
    "int4": torch.int8,
    "uint4": torch.uint8,
    "int2": torch.int8,
    "uint2": torch.uint8,
    "float4_e2m1fn": torch.float32,
    "float8_e8m0fnu": torch.float32,
}
_NP_CARRIER = {torch.int8: np.int8, torch.uint8: np.uint8, torch.float32: np.float32}


def carrier_dtype(elem_type: int | None) -> torch.dtype | None:
    """The torch dtype holding values of ONNX ``elem_type`` when torch has none, else None."""
    return CARRIERS.get(elem_type) if elem_type is not None else None


def from_carrier(arr: np.ndarray, elem_type: int | None) -> np.ndarray:
    """``arr`` as an ml_dtypes array of ONNX ``elem_type`` when it holds a carrier of that type
    (int8 for int4, ...); any other array is returned as is."""
    carrier = carrier_dtype(elem_type)
    if carrier is None or arr.dtype != _NP_CARRIER[carrier]:
        return arr
    assert elem_type is not None
    return arr.astype(np_dtype(elem_type))


class LoweringContext:
    """What a lowering function sees: an fx graph to emit into and facts about the model."""

    def __init__(self, fx_graph: fx.Graph, root: torch.nn.Module, graph: Graph) -> None:
        self.fx = fx_graph
        self.root = root
        self.graph = graph
        self.node: Node | None = None
        self._buffers: dict[int, fx.Node] = {}
        self._names: set[str] = set()
        self.env: dict[Value, Any] = {}

    # -- facts about the node being lowered -------------------------------------------------

    @property
    def opset(self) -> int:
        """The opset version of the current node's domain (the newest known if unrecorded)."""
        assert self.node is not None
        v = self.graph.opset(self.node.domain)
        if v is None:
            import onnx

            return onnx.defs.onnx_opset_version()
        return v

    def constant(self, value: Value | None) -> np.ndarray | None:
        """The value of an input known when lowering (initializer or Constant node), else None."""
        if value is None:
            return None
        if value.const is not None and value.producer is None:
            if value in value.graph.inputs if value.graph is not None else False:
                return None  # an IR v3 initializer that is also an input may be overridden
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
        return lower_graph(sub, captures=captures, list_io=True), captures

    def value(self, v: Value) -> Any:
        """The fx node holding an already lowered value of this graph or an enclosing one."""
        return _read(v, self.env, self)

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


def lower_graph(
    graph: Graph,
    *,
    captures: Sequence[Value] = (),
    list_io: bool = False,
    class_name: str = "NeffkitModule",
) -> fx.GraphModule:
    """Lowers ``graph`` to a GraphModule.

    Args:
        graph: the graph to lower.
        captures: outer values a subgraph reads (subgraphs only).
        list_io: subgraph calling convention: ``forward(inputs, captures) -> List[Tensor]``.
        class_name: the generated module's class name.

    Raises:
        BackendError: an op has no lowering or a lowering refuses the node (names both).
    """
    root = torch.nn.Module()
    g = fx.Graph()
    ctx = LoweringContext(g, root, graph)
    env = ctx.env
    if list_io:
        from typing import List  # noqa: UP035 - TorchScript reads typing.List annotations

        ins = g.placeholder("inputs", type_expr=List[torch.Tensor])  # noqa: UP006
        caps = g.placeholder("captures", type_expr=List[torch.Tensor])  # noqa: UP006
        for i, v in enumerate(graph.inputs):
            env[v] = _named(ctx.getitem(ins, i), v, ctx)
        for i, v in enumerate(captures):
            env[v] = _named(ctx.getitem(caps, i), v, ctx)
    else:
        for v in graph.inputs:
            if v.const is not None:
                continue  # IR v3: an input with an initializer is used as the constant
            env[v] = g.placeholder(ctx._fresh(py_name(v.name, "input")), _input_type(v))
    for node in graph:
        ctx.node = node
        args = [None if v is None else _read(v, env, ctx) for v in node.inputs]
        fn = lookup(node.domain, node.op_type)
        if fn is None:
            raise BackendError(
                f"{describe_node(node)}: the torch backend has no lowering for op "
                f"'{node.domain + '::' if node.domain else ''}{node.op_type}' "
                f"(opset {ctx.opset})"
            )
        try:
            result = as_list(fn(ctx, node, args))
        except Unsupported as e:
            raise BackendError(
                f"{describe_node(node)}: not supported by the torch backend: {e}"
            ) from e
        except BackendError:
            raise
        except RecursionError as e:
            raise BackendError(f"{describe_node(node)}: subgraphs nested too deeply") from e
        except Exception as e:  # noqa: BLE001 - a node the lowering cannot make sense of
            text = " ".join(str(e).split()) or type(e).__name__
            raise BackendError(
                f"{describe_node(node)}: the torch backend cannot lower this node "
                f"({type(e).__name__}: {text}); the model may be invalid"
            ) from e
        if len(result) < len(node.outputs):
            # Trailing optional outputs the lowering does not produce must be unused.
            for v in node.outputs[len(result) :]:
                if v.num_uses or v.is_graph_output:
                    raise BackendError(
                        f"{describe_node(node)}: optional output '{v.name}' is used but the "
                        "torch backend does not compute it"
                    )
        for v, r in zip(node.outputs, result):
            env[v] = _named(r, v, ctx)
    outs = [_read(v, env, ctx) for v in graph.outputs]
    g.output(list(outs) if list_io else tuple(outs))
    gm = fx.GraphModule(root, g, class_name=class_name)
    quiet_call(gm)
    return gm


def _input_type(v: Value) -> Any:
    """The annotation of a sequence or optional graph input, so the module still scripts."""
    from neffkit.backends.torch.ops.sequence import input_type_expr

    return input_type_expr(v)


def quiet_call(gm: fx.GraphModule) -> None:
    """Calls of ``gm`` no longer print torch.fx's annotated traceback to stderr on failure.

    Each GraphModule has a class of its own whose ``__call__`` torch.fx wraps to print the
    generated code around a failing line; neffkit reports the failure as one ``BackendError``
    instead, so that wrapper is replaced by the plain ``Module.__call__`` (``recompile()``
    puts it back).
    """
    type(gm).__call__ = torch.nn.Module.__call__


def _read(v: Value, env: dict[Value, Any], ctx: LoweringContext) -> Any:
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


def _named(r: Any, v: Value, ctx: LoweringContext) -> Any:
    """Gives an fx node the ONNX value's name so the generated code reads like the model."""
    if isinstance(r, fx.Node) and v.name and r.op not in ("placeholder", "get_attr"):
        try:
            r._rename(py_name(v.name))
        except Exception:  # noqa: BLE001 - naming is cosmetic; never fail the lowering for it
            pass
    return r


def constant_attr_value(node: Node) -> np.ndarray:
    """The value of a Constant node, whichever of its attributes carries it."""
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        a = node.attributes.get(key)
        if a is None:
            continue
        v = a.value
        if isinstance(v, Tensor):
            return v.numpy()
        if key == "value_float":
            return np.array(v, dtype=np.float32)
        if key == "value_int":
            return np.array(v, dtype=np.int64)
        if key == "value_floats":
            return np.array(v, dtype=np.float32)
        return np.array(v, dtype=np.int64)
    raise Unsupported("Constant with a string or sparse value")
