"""The walker: a frozen TorchScript graph -> neffkit IR, block by block (Loop/If bodies as
subgraphs), each node through its rule in ``rules_*`` or kept as an ``aten`` node."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from neffkit.errors import FrontendError
from neffkit.frontends.torchscript import (  # noqa: F401 - the rule families register
    rules_math,
    rules_nn,
    rules_rnn,
    rules_scalar,
    rules_shape,
    rules_vision,
)
from neffkit.frontends.torchscript._base import (
    RULES,
    Decline,
    first_line,
    location,
    raise_branch,
    scalar_type,
    torch_onnx_dtype,
    torch_to_numpy,
    unsupported,
)
from neffkit.frontends.torchscript.aten_types import meta_output_types, refused_dtype
from neffkit.ir import Graph, Node, Tensor, TensorType, Value, np_dtype, onnx_dtype
from neffkit.ir import aten as contract

#: The ONNX opset the lifted graph imports (Split ``num_outputs``, ReduceMean axes as input).
OPSET = 18


class Lifter:
    """Walks a frozen TorchScript graph and builds the IR graph; see ``load_torchscript``.

    ``env`` maps each TorchScript value to what it is at lift time: an IR ``Value`` (a tensor,
    or a 0-d tensor for a dynamic int/float/bool), a Python constant (int, float, bool, None,
    str, dtype, device), a list/tuple of those, or a ``torch.nn`` attribute holder.
    """

    def __init__(self, module: Any, example_inputs: Any) -> None:
        self.module = module
        self.example = example_inputs
        self.top = Graph("torchscript", opset_imports={"": OPSET})
        self.graphs: list[Graph] = [self.top]
        self.env: dict[Any, Any] = {}
        self._params: dict[int, Value] = {}
        self._consts: dict[tuple[int, str, bytes, tuple[int, ...]], Value] = {}
        self.node: Any = None  # the TorchScript node being lifted, for errors
        self.names: dict[int, str] = {}  # id(tensor constant) -> its TorchScript name
        self._keep: list[Any] = []  # the tensors ``_params`` is keyed on, kept alive

    @property
    def graph(self) -> Graph:
        """The IR graph nodes are being added to (a Loop/If body while one is lifted)."""
        return self.graphs[-1]

    def run(self) -> Graph:
        """Lifts the whole module and returns the IR graph."""
        import torch  # noqa: PLC0415

        ts = self.module.graph
        inputs = list(ts.inputs())
        self.env[inputs[0]] = self.module
        examples = list(self.example) if self.example is not None else None
        defaults = _defaults(self.module)
        if examples is not None and len(examples) > len(inputs) - 1:
            raise FrontendError(
                f"example_inputs has {len(examples)} values, the module takes {len(inputs) - 1}"
            )
        for i, v in enumerate(inputs[1:]):
            # an argument left out of example_inputs, or given as None, takes its default
            # (None for an Optional[Tensor] mask, say): a constant, not a graph input
            if examples is not None and (i >= len(examples) or examples[i] is None):
                if i < len(examples):
                    self.env[v] = None
                    continue
                if i not in defaults:
                    raise FrontendError(f"example_inputs leaves out '{v.debugName()}', "
                                        "which has no default")  # fmt: skip
                self.env[v] = defaults[i]
                continue
            name = v.debugName().split(".")[0] or f"input_{i}"
            t = v.type()
            if examples is not None and isinstance(examples[i], torch.Tensor):
                ex = examples[i]
                if ex.is_complex() or ex.is_quantized or ex.is_sparse:
                    raise FrontendError(f"graph input '{name}': dtype {ex.dtype} (layout "
                                        f"{ex.layout}) is not liftable")  # fmt: skip
                vt = TensorType(torch_onnx_dtype(ex.dtype), list(ex.shape))
            elif isinstance(t, torch._C.TensorType):
                dtype = TensorProto.FLOAT if t.scalarType() is None else scalar_type(t)
                sizes = t.varyingSizes()
                vt = TensorType(dtype, sizes)
            elif isinstance(t, torch._C.IntType):
                vt = TensorType(TensorProto.INT64, [])
            elif isinstance(t, torch._C.FloatType):
                vt = TensorType(TensorProto.DOUBLE, [])
            elif isinstance(t, torch._C.BoolType):
                vt = TensorType(TensorProto.BOOL, [])
            else:
                raise FrontendError(f"graph input '{name}' of type {t} is not liftable "
                                    "(inputs must be tensors, ints, floats or bools)")  # fmt: skip
            self.env[v] = self.top.add_input(Value(name, vt))
        self.lift_block(ts)
        outs: list[Value] = []
        for v in ts.outputs():
            self._flatten_output(self.env[v], outs)
        final = []
        for v in outs:
            if v.producer is None or v in final:
                v = self.emit("Identity", [v])
            final.append(v)
        self._output_ranks(final)
        self.top.set_outputs(final, [f"output_{i}" for i in range(len(final))])
        for i, v in enumerate(final):  # reports and runners name outputs by their values
            v.name = v.name or f"output_{i}"
        _drop_unused(self.top)
        if any(contract.is_aten(n) for n in self.top.all_nodes()):
            self.top.opset_imports[contract.DOMAIN] = 1
        return self.top

    def _output_ranks(self, outs: list[Value]) -> None:
        """Gives an output whose rank no rule could tell (a squeeze of a dim of unknown size,
        say) the rank it has on the example inputs: the ONNX checker wants one."""
        import torch  # noqa: PLC0415

        if self.example is None or all(v.type is None or v.type.rank is not None for v in outs):
            return
        try:
            with torch.no_grad():
                result = self.module(*self.example)
        except Exception:  # noqa: BLE001 - the ranks stay unknown, as the rules left them
            return
        values: list[Any] = []
        self._flatten_example(result, values)
        if len(values) != len(outs):
            return
        for v, r in zip(outs, values, strict=True):
            if v.type is not None and v.type.rank is None and isinstance(r, torch.Tensor):
                v.type = TensorType(v.type.dtype, [None] * r.dim())

    def _flatten_example(self, item: Any, out: list[Any]) -> None:
        if isinstance(item, tuple | list):
            for x in item:
                self._flatten_example(x, out)
        else:
            out.append(item)

    def _flatten_output(self, item: Any, out: list[Value]) -> None:
        if isinstance(item, tuple | list):
            for x in item:
                self._flatten_output(x, out)
        else:
            out.append(self.tensor(item))

    # -- blocks ---------------------------------------------------------------------------------

    def lift_block(self, block: Any) -> None:
        """Lifts every node of ``block`` into the current graph."""
        for node in block.nodes():
            self.node = node
            kind = node.kind()
            try:
                if kind == "prim::If":
                    self.lift_if(node)
                elif kind == "prim::Loop":
                    self.lift_loop(node)
                else:
                    lift(self, node)
            except FrontendError:
                raise
            except Exception as e:  # noqa: BLE001 - a rule met a case it does not cover
                raise unsupported(node, f"lifting failed: {first_line(e)}") from e

    def lift_if(self, node: Any) -> None:
        """``prim::If``: a constant condition or a raising branch inlines the other block."""
        then_b, else_b = node.blocks()
        cond = self.env[node.input()]
        if raise_branch(then_b) and not raise_branch(else_b):
            cond = False
        elif raise_branch(else_b) and not raise_branch(then_b):
            cond = True
        if not isinstance(cond, Value):
            block = then_b if cond else else_b
            self.lift_block(block)
            for out, res in zip(node.outputs(), block.outputs(), strict=True):
                self.env[out] = self.env[res]
            return
        branches = []
        for block in (then_b, else_b):
            g = Graph("then" if block is then_b else "else")
            self.graphs.append(g)
            self.lift_block(block)
            outs = [self.emit("Identity", [self.tensor(self.env[r])]) for r in block.outputs()]
            g.set_outputs(outs)
            self.graphs.pop()
            branches.append(g)
        self.node = node  # errors from here on are the If's
        n = Node("If", [self.as_bool(cond)], num_outputs=len(list(node.outputs())))
        n.set_attr("then_branch", branches[0])
        n.set_attr("else_branch", branches[1])
        self.graph.append(n)
        for i, (out, v) in enumerate(zip(node.outputs(), n.outputs, strict=True)):
            t, e = branches[0].outputs[i].type, branches[1].outputs[i].type
            if isinstance(t, TensorType) and isinstance(e, TensorType):
                if t.dtype != e.dtype:
                    raise unsupported(node, "branches return different dtypes")
                same = t.rank is not None and t.rank == e.rank
                v.type = TensorType(t.dtype, [None] * t.rank if same else None)
            self.env[out] = v

    def lift_loop(self, node: Any) -> None:
        """``prim::Loop(max_trip, cond, carried...)`` -> ONNX ``Loop`` (INT64_MAX: no M); a
        counted loop that mutates a list, with its count known now, is unrolled instead."""
        args = list(node.inputs())
        trip, cond = self.env[args[0]], self.env[args[1]]
        body_block = next(iter(node.blocks()))
        if isinstance(trip, int) and cond is True and _mutates_list(body_block):
            self._unroll(node, body_block, trip)
            return
        carried = [self.tensor(self.env[a]) for a in args[2:]]
        body = Graph("body")
        self.graphs.append(body)
        params = list(body_block.inputs())
        it = body.add_input(Value("iter", TensorType(TensorProto.INT64, [])))
        body.add_input(Value("cond_in", TensorType(TensorProto.BOOL, [])))
        self.env[params[0]] = it
        for p, init in zip(params[1:], carried, strict=True):
            t = init.type if isinstance(init.type, TensorType) else None
            vt = TensorType(t.dtype, [None] * t.rank if t.rank is not None else None) if t else None
            self.env[p] = body.add_input(Value(p.debugName().split(".")[0], vt))
        self.lift_block(body_block)
        results = list(body_block.outputs())
        outs = [self.as_bool(self.env[results[0]])]
        for r, init in zip(results[1:], carried, strict=True):
            v = self.tensor(self.env[r])
            if init.type is not None and v.type is not None and v.type.dtype != init.type.dtype:
                v = self.emit("Cast", [v], to=init.type.dtype)
            outs.append(v)
        outs = [self.emit("Identity", [v]) if v.graph is not body or v.producer is None
                else v for v in outs]  # fmt: skip
        body.set_outputs(outs)
        self.graphs.pop()
        m = None if isinstance(trip, int) and trip >= 2**63 - 1 else self.int64(trip)
        loop = Node("Loop", [m, self.as_bool(cond), *carried], num_outputs=len(carried))
        loop.set_attr("body", body)
        self.graph.append(loop)
        for out, v, init in zip(node.outputs(), loop.outputs, carried, strict=True):
            v.type = init.type
            # a name keeps an unread carried output named on export (onnxruntime crashes on a
            # Loop whose carried output is omitted)
            v.name = out.debugName().replace(".", "_")
            self.env[out] = v

    def _unroll(self, node: Any, block: Any, trip: int) -> None:
        """Lifts ``block`` ``trip`` times in the current graph (a list comprehension, say)."""
        if trip > _MAX_UNROLL:
            raise unsupported(node, f"a loop of {trip} steps mutating a list (at most "
                              f"{_MAX_UNROLL} are unrolled)")  # fmt: skip
        params, results = list(block.inputs()), list(block.outputs())
        items = [self.env[a] for a in list(node.inputs())[2:]]
        for i in range(trip):
            self.env[params[0]] = i
            for p, item in zip(params[1:], items, strict=True):
                self.env[p] = item
            self.lift_block(block)
            items = [self.env[r] for r in results[1:]]
            self.node = node
            if self.env[results[0]] is not True:
                raise unsupported(node, "a loop mutating a list whose condition is computed")
        for out, item in zip(node.outputs(), items, strict=True):
            self.env[out] = item

    # -- building -------------------------------------------------------------------------------

    def emit(self, op: str, inputs: list[Value | None], *, domain: str = "", outputs: int = 1,
             dtype: int | None = None, rank: int | None = -1,
             attributes: dict[str, Any] | None = None, **attrs: Any) -> Any:  # fmt: skip
        """Appends one node; its output type is ``dtype``/``rank`` (default: like input 0).

        Attributes come as keywords, or as ``attributes`` when a name could clash (aten nodes
        keep the schema's argument names, ``self`` included). Returns the output value, or the
        tuple of them when ``outputs`` > 1.
        """
        n = Node(op, inputs, domain=domain, num_outputs=outputs)
        for k, v in {**(attributes or {}), **attrs}.items():
            if v is not None:
                n.set_attr(k, v)
        self.graph.append(n)
        first = next((v for v in inputs if v is not None), None)
        ft = first.type if first is not None and isinstance(first.type, TensorType) else None
        if dtype is None and ft is not None:
            dtype = ft.dtype
        if rank == -1:
            rank = ft.rank if ft is not None else None
        for v in n.outputs:
            if dtype is not None:
                v.type = TensorType(dtype, None if rank is None else [None] * rank)
        return n.outputs[0] if outputs == 1 else n.outputs

    def constant(self, array: np.ndarray) -> Value:
        """A constant: a top-level initializer (outer scope for every body), shared by value."""
        array = np.array(array, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
        key = (array.dtype.num, array.dtype.str, array.tobytes(), array.shape)
        found = self._consts.get(key)
        if found is None:
            vt = TensorType(onnx_dtype(array.dtype), list(array.shape))
            found = self.top.add_initializer(Value(f"const_{len(self._consts)}", vt,
                                                   const=Tensor(array)))  # fmt: skip
            self._consts[key] = found
        return found

    def param(self, t: Any, name: str = "") -> Value:
        """A tensor constant of the module (parameter, buffer): one initializer per tensor."""
        found = self._params.get(id(t))
        if found is None:
            array = torch_to_numpy(t)
            vt = TensorType(onnx_dtype(array.dtype), list(array.shape))
            hint = name or self.names.get(id(t)) or f"param_{len(self._params)}"
            found = self.top.add_initializer(Value(hint, vt,
                                                   const=Tensor(array)))  # fmt: skip
            self._params[id(t)] = found
            self._keep.append(t)
        return found

    def tensor(self, item: Any, dtype: int | None = None) -> Value:
        """``item`` as an IR value; a Python number becomes a 0-d constant (of ``dtype``)."""
        import torch  # noqa: PLC0415

        if isinstance(item, Value):
            if dtype is not None and item.type is not None and item.type.dtype != dtype:
                return self.emit("Cast", [item], to=dtype, dtype=dtype)
            return item
        if isinstance(item, torch.Tensor):
            return self.param(item)
        if isinstance(item, bool | int | float):
            if dtype is None:
                dtype = (TensorProto.BOOL if isinstance(item, bool) else TensorProto.INT64
                         if isinstance(item, int) else TensorProto.FLOAT)  # fmt: skip
            return self.constant(np.array(item, dtype=np_dtype(dtype)))
        if isinstance(item, list | tuple):
            return self.ints(item)
        raise FrontendError(f"{self.node.kind()} at {location(self.node)}: a {type(item).__name__}"
                            " value where a tensor is needed")  # fmt: skip

    def ints(self, items: Any) -> Value:
        """A list of ints (Python ints and/or 0-d int64 values) as a 1-D int64 tensor."""
        if isinstance(items, Value):
            return items
        if all(isinstance(x, int) for x in items):
            return self.constant(np.array(list(items), dtype=np.int64).reshape(len(items)))
        parts = [self.emit("Reshape", [self.int64(x), self.constant(np.array([1]))], rank=1)
                 for x in items]  # fmt: skip
        return self.emit("Concat", parts, axis=0, rank=1)

    def int64(self, item: Any) -> Value:
        """A 0-d int64 tensor of ``item``."""
        return self.tensor(item, TensorProto.INT64)

    def as_bool(self, item: Any) -> Value:
        """A bool tensor of ``item``."""
        return self.tensor(item, TensorProto.BOOL)


#: The longest counted loop that mutates a list the lifter unrolls.
_MAX_UNROLL = 1024
_LIST_MUTATIONS = ("aten::append", "aten::_set_item", "aten::insert", "aten::extend")


def _mutates_list(block: Any) -> bool:
    """True when ``block`` (not counting nested blocks) mutates a list."""
    return any(n.kind() in _LIST_MUTATIONS for n in block.nodes())


def _defaults(module: Any) -> dict[int, Any]:
    """The default values of ``forward``'s arguments, by position after ``self``."""
    try:
        arguments = module.forward.schema.arguments[1:]
    except (AttributeError, RuntimeError):
        return {}
    return {i: a.default_value for i, a in enumerate(arguments) if a.has_default_value()}


def _drop_unused(top: Graph) -> None:
    """Removes nodes whose outputs nothing reads (left by rules that declined after building,
    or by values TorchScript computed but never used), last to first so chains go too."""
    for g in reversed(list(top.all_graphs())):
        for n in reversed(g.nodes):
            if not any(o.is_used or o.is_graph_output for o in n.outputs):
                g.remove(n)


def lift(lifter: Lifter, node: Any) -> None:
    """Lifts ``node`` into ``lifter``'s current graph and binds its outputs in ``env``."""
    kind = node.kind()
    fn = RULES.get(kind)
    args = _arguments(lifter, node)
    if fn is not None:
        try:
            result = fn(lifter, args, node)
        except Decline:
            result = None
            fn = None
    if fn is None:
        if not kind.startswith("aten::"):
            raise unsupported(node, "no lifting rule for this operator")
        result = _opaque(lifter, args, node)
    outs = list(node.outputs())
    if not outs:  # a warning, say: nothing to bind
        return
    if len(outs) == 1:
        lifter.env[outs[0]] = result
    else:
        for o, r in zip(outs, result, strict=True):
            lifter.env[o] = r


def _arguments(lifter: Lifter, node: Any) -> dict[str, Any]:
    """The node's inputs by schema argument name (positional ``_0``.. when there is none)."""
    import torch  # noqa: PLC0415

    values = [lifter.env[v] if v in lifter.env else _missing(node, v) for v in node.inputs()]
    names: list[str] = []
    if node.kind().startswith("aten::"):
        try:
            names = [a.name for a in torch._C.parse_schema(node.schema()).arguments]
        except RuntimeError:
            names = []
    out = {f"_{i}": v for i, v in enumerate(values)}
    out.update(zip(names, values, strict=False))
    return out


def _missing(node: Any, v: Any) -> Any:
    raise FrontendError(f"{node.kind()}: input %{v.debugName()} was never lifted")


def _opaque(lifter: Lifter, args: dict[str, Any], node: Any) -> Any:
    """An ``aten`` node (contract: ``neffkit.ir.aten``): tensors (and computed scalars) as
    inputs, named in the ``tensor_args`` attribute (``name.i`` for a tensor list), the other
    arguments as attributes, plus the schema; an omitted optional tensor is left out."""
    import torch  # noqa: PLC0415

    schema = node.schema()
    try:
        arguments = torch._C.parse_schema(schema).arguments
    except RuntimeError:
        arguments = []
    n = len(list(node.inputs()))
    named = [(a.name, str(a.type)) for a in arguments][:n] or [(f"_{i}", "") for i in range(n)]
    inputs: list[Value | None] = []
    tensor_args: list[str] = []
    attrs: dict[str, Any] = {contract.SCHEMA: schema}
    for name, kind in named:
        v = args[name]
        if v is None:
            continue
        if isinstance(v, list | tuple) and (kind.startswith("Tensor") or kind == "List[Tensor]"):
            for i, x in enumerate(v):
                if x is not None:
                    inputs.append(lifter.tensor(x))
                    tensor_args.append(f"{name}.{i}")
        elif isinstance(v, Value | torch.Tensor):
            inputs.append(lifter.tensor(v))
            tensor_args.append(name)
        elif isinstance(v, list | tuple) and any(isinstance(x, Value) for x in v):
            inputs.append(lifter.ints(v))
            tensor_args.append(name)
        elif isinstance(v, bool | int | float | str):
            attrs[name] = v
        elif isinstance(v, list | tuple) and all(isinstance(x, int | float) for x in v):
            attrs[name] = [float(x) for x in v] if any(isinstance(x, float) for x in v) else v
        else:
            attrs[name] = str(v)
    attrs[contract.TENSOR_ARGS] = tensor_args
    outs = list(node.outputs())
    why = refused_dtype(node.kind()[len("aten::"):], [v for v in inputs if v is not None],
                        [o.type() for o in outs])  # fmt: skip
    if why is not None:
        raise unsupported(node, why)
    results = lifter.emit(node.kind()[len("aten::"):], inputs, domain=contract.DOMAIN,
                          outputs=len(outs), attributes=attrs)  # fmt: skip
    results = [results] if len(outs) == 1 else list(results)
    # types TorchScript does not know come from a run on meta tensors, not from input 0
    inferred = meta_output_types(schema, {k: args[k] for k, _ in named if k in args
                                          and args[k] is not None}, len(outs))  # fmt: skip
    for i, (o, r) in enumerate(zip(outs, results, strict=True)):
        t = o.type()
        if isinstance(t, torch._C.TensorType) and t.scalarType() is not None:
            sizes = t.varyingSizes()
            r.type = TensorType(torch_onnx_dtype(t.dtype()), sizes)
        elif inferred is not None:
            r.type = inferred[i]
        dtype = r.type.dtype if isinstance(r.type, TensorType) else None
        if dtype in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
            raise unsupported(node, "makes a complex tensor; dtype not supported")
    return results[0] if len(outs) == 1 else results
