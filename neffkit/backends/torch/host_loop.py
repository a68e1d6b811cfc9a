"""A graph whose top-level Loop ``split`` marked as a host loop -> one TorchScript module: a
scripted host loop that calls the traced encoder and the traced step.

The graph is cut at the loop into three graphs: the encoder (the nodes before the loop, whose
outputs are the values the loop and the rest read), the step (the loop body) and the epilogue
(the nodes after the loop, on the host). The encoder and the step are lowered as usual and
traced with ``torch.jit.trace`` on the example inputs (a compiled unit has one shape, as an
accelerator compiler needs); the loop itself is the torch backend's ``LoopModule``, scripted.

A traced step is only kept when it is right: the body has no control flow (trace would bake in
one branch), no shape operand computed from data (trace would bake in its first value), and the
traced step matches the eager one on the second iteration, whose carried values may have other
shapes than the first's. Otherwise the step is scripted, and the module
says so (``pad-loop`` gives a growing loop one static shape).

The host loop is lowered only by ``to_torchscript``; the eager backend runs the Loop as usual.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx

from neffkit.backends.torch.context import free_values
from neffkit.backends.torch.lowering import lower_graph, quiet_call
from neffkit.backends.torch.ops.control_flow import LoopModule
from neffkit.errors import BackendError, first_line
from neffkit.ir.clone import clone_graph
from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.shape_operands import SHAPE_OPERANDS
from neffkit.ir.units import host_loops

_CONTROL_FLOW = frozenset({"If", "Loop", "Scan", "SequenceMap"})


def marked_loops(graph: Graph) -> list[Node]:
    """The top-level Loop nodes marked as host loops in the model's metadata, in order."""
    return host_loops(graph)


class HostLoopReport:
    """How the host-loop module was made: which units were traced and which scripted."""

    def __init__(self, loop: str, step: str, why: str = "") -> None:
        self.loop = loop
        self.step = step  # "traced" or "scripted"
        self.why = why
        # the eager encoder and step the units were made from (``host_loop_module`` sets them),
        # for compilers that take a module rather than a trace
        self.eager: dict[str, torch.nn.Module] = {}

    def __str__(self) -> str:
        text = f"host loop '{self.loop}': encoder traced, step {self.step}"
        return f"{text} ({self.why})" if self.why else text


def to_host_loop(
    graph: Graph, example: Sequence[torch.Tensor]
) -> tuple[torch.jit.ScriptModule, HostLoopReport]:
    """One TorchScript module for ``graph``, whose marked Loop runs on the host.

    Args:
        graph: a top-level graph with exactly one marked host loop.
        example: the runtime inputs, in order, to trace the encoder and the step with.

    Raises:
        BackendError: no or several marked loops, or a unit that cannot be made.
    """
    module, report = host_loop_module(graph, example)
    try:
        scripted = torch.jit.script(module)
    except Exception as e:  # noqa: BLE001 - any scripting failure is reported as one error
        raise BackendError(f"the host-loop module could not be scripted: {first_line(e)}") from e
    return scripted, report


def host_loop_module(
    graph: Graph, example: Sequence[torch.Tensor]
) -> tuple[fx.GraphModule, HostLoopReport]:
    """The host-loop module before scripting: ``encoder`` (traced) and ``host_loop.body`` (the
    step, traced or scripted) are submodules that a caller may swap for compiled ones.

    Args:
        graph: a top-level graph with exactly one marked host loop.
        example: the runtime inputs, in order, to trace the encoder and the step with.

    Raises:
        BackendError: no or several marked loops, or a unit that cannot be made.
    """
    loops = marked_loops(graph)
    if len(loops) != 1:
        names = [n.name for n in loops]
        raise BackendError(f"a host-loop module needs one marked Loop, the model has {names}")
    loop = loops[0]
    k = graph.nodes.index(loop)
    body: Graph = loop.attr("body")
    consts = {v for v in free_values(body) if _is_const(v)}
    captures = [v for v in free_values(body) if v not in consts]
    after = graph.nodes[k + 1 :]
    # what the loop and the nodes after it read from before it (initializers are read in place)
    read_after = _reads(after, graph) | {v for v in graph.outputs}
    runtime = [v for v in graph.inputs if v.const is None]
    loop_ins = [v for v in loop.inputs if v is not None]
    before = set(runtime).union(*(n.outputs for n in graph.nodes[:k]))
    crossing = _unique([v for v in [*loop_ins, *captures, *read_after] if v in before])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: the step is checked below instead
        enc_gm = lower_graph(_encoder_graph(graph, k, crossing), class_name="Encoder")
        enc_gm.eval()
        enc_out = list(enc_gm(*example))
        encoder = _trace(enc_gm, tuple(example), "encoder")
        env: dict[Value, Any] = dict(zip(crossing, enc_out))
        step_gm = lower_graph(body, captures=captures, list_io=True, class_name="Step")
        step_gm.eval()
        step, how, why = _step_unit(step_gm, body, loop, env, captures)
    epi_inputs = list(loop.outputs) + [v for v in crossing if v in read_after]
    epi_gm = lower_graph(_epilogue_graph(graph, k, epi_inputs), class_name="Epilogue")
    module = _assemble(graph, loop, runtime, crossing, captures, encoder, step, epi_gm, epi_inputs)
    report = HostLoopReport(loop.name, how, why)
    report.eager = {"encoder": enc_gm, "step": step_gm}
    return module, report


def _is_const(v: Value) -> bool:
    g = v.graph
    return v.const is not None and v.producer is None and not (g and v in g.inputs)


def _unique(values: list[Value]) -> list[Value]:
    return list(dict.fromkeys(values))


def _reads(nodes: Sequence[Node], graph: Graph) -> set[Value]:
    """Values of ``graph`` read by ``nodes`` or their subgraphs."""
    out: set[Value] = set()
    for node in nodes:
        for v in node.inputs:
            if v is not None and v.graph is graph:
                out.add(v)
        for sub in node.subgraphs:
            out.update(v for v in free_values(sub) if v.graph is graph)
    return out


def _encoder_graph(graph: Graph, k: int, outputs: list[Value]) -> Graph:
    """A copy of ``graph`` cut before node ``k``, whose outputs are ``outputs``."""
    enc = clone_graph(graph)
    vmap = _value_map(graph, enc)
    enc.set_outputs([vmap[v] for v in outputs], [f"enc_{i}" for i in range(len(outputs))])
    for node in reversed(enc.nodes[k:]):
        enc.remove(node, safe=False)
    return enc


def _epilogue_graph(graph: Graph, k: int, inputs: list[Value]) -> Graph:
    """A copy of ``graph`` from after node ``k``, whose inputs are ``inputs``."""
    epi = clone_graph(graph)
    vmap = _value_map(graph, epi)
    old = [v for v in epi.inputs if v.const is None]
    for i, v in enumerate(inputs):
        c = vmap[v]
        fresh = epi.add_input(Value(f"epi_{i}", c.type))
        c.replace_all_uses_with(fresh)
    for node in reversed(epi.nodes[: k + 1]):
        epi.remove(node, safe=False)
    for v in old:
        epi.remove_input(v)
    return epi


def _value_map(graph: Graph, copy: Graph) -> dict[Value, Value]:
    """Original value -> its copy (``clone_graph`` keeps the order of inputs and nodes)."""
    vmap = dict(zip(graph.inputs, copy.inputs))
    for a, b in zip(graph, copy):
        vmap.update(zip(a.outputs, b.outputs))
    return vmap


def _trace(module: torch.nn.Module, args: tuple[Any, ...], what: str) -> torch.jit.ScriptModule:
    try:
        return torch.jit.trace(module, args, check_trace=False)
    except Exception as e:  # noqa: BLE001 - any tracing failure is reported as one error
        raise BackendError(f"the {what} could not be traced: {first_line(e)}") from e


def _step_unit(
    step_gm: fx.GraphModule,
    body: Graph,
    loop: Node,
    env: dict[Value, Any],
    captures: list[Value],
) -> tuple[torch.nn.Module, str, str]:
    """The traced step when tracing keeps its meaning, else the scripted one, and why."""
    control = next((n for n in body.all_nodes() if n.op_type in _CONTROL_FLOW), None)
    if control is not None:
        return step_gm, "scripted", f"the body has control flow: {control.op_type} '{control.name}'"
    baked = _data_fixing_a_shape(body)
    if baked is not None:
        why = f"{baked.op_type} '{baked.name}' takes a shape from values, not from shapes"
        return step_gm, "scripted", why
    caps = [_initial(v, env) for v in captures]
    carried = [_initial(v, env) for v in loop.inputs[2:]]
    first = [torch.tensor(0, dtype=torch.int64), torch.tensor(True), *carried]
    traced = _trace(step_gm, (first, caps), "step")
    outs = step_gm(first, caps)
    second = [
        torch.tensor(1, dtype=torch.int64),
        outs[0].reshape(()).bool(),
        *outs[1:][: len(carried)],
    ]
    try:
        same = all(
            a.shape == b.shape and torch.equal(a, b)
            for a, b in zip(step_gm(second, caps), traced(second, caps))
        )
    except Exception:  # noqa: BLE001 - a traced step that fails on new shapes is not kept
        same = False
    if not same:
        return step_gm, "scripted", "the step's shapes change between iterations: see pad-loop"
    return traced, "traced", ""


def _data_fixing_a_shape(body: Graph) -> Node | None:
    """The first node of ``body`` whose shape operand is computed from data (the loop's
    inputs, captured values, or any value not derived from shapes and constants), else None.

    The lowering reads shape operands (``SHAPE_OPERANDS``) into Python values, which a trace
    records as constants: they must be constants or computed from shapes alone (fixed once
    the step has one shape) for a traced step to stay right."""
    from_shapes: set[Value] = set()
    for node in body:
        ins = node.inputs
        for i in SHAPE_OPERANDS.get(node.op_type, ()):
            v = ins[i] if i < len(ins) else None
            if v is not None and not _is_const(v) and v not in from_shapes:
                return node
        if node.op_type in ("Shape", "Size") or all(
            v is None or _is_const(v) or v in from_shapes for v in ins
        ):
            if node.op_type not in _CONTROL_FLOW and node.op_type not in _RANDOM:
                from_shapes.update(node.outputs)
    return None


_RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"})


def _initial(v: Value | None, env: dict[Value, Any]) -> torch.Tensor:
    """The example value the loop reads as ``v``: computed by the encoder, or a constant."""
    if v is None:
        raise BackendError("a host loop needs every loop-carried initial value")
    hit = env.get(v)
    if hit is not None:
        return hit
    return _const(v)


def _const(v: Value) -> torch.Tensor:
    if v.const is None:
        raise BackendError(f"the host loop reads '{v.name}', which the encoder does not compute")
    return torch.from_numpy(v.const.numpy().copy())


def _assemble(
    graph: Graph,
    loop: Node,
    runtime: list[Value],
    crossing: list[Value],
    captures: list[Value],
    encoder: torch.nn.Module,
    step: torch.nn.Module,
    epilogue: fx.GraphModule,
    epi_inputs: list[Value],
) -> fx.GraphModule:
    """``forward(*inputs)``: encoder, then the host loop over the step, then the epilogue."""
    root = torch.nn.Module()
    root.add_module("encoder", encoder)
    n_carried = len(loop.inputs) - 2
    n_scan = len(loop.attr("body").outputs) - 1 - n_carried
    root.add_module("host_loop", LoopModule(step, n_carried, n_scan))
    root.add_module("epilogue", epilogue)
    g = fx.Graph()
    args = [g.placeholder(f"input_{i}") for i in range(len(runtime))]
    enc = g.call_module("encoder", tuple(args))
    env: dict[Value, Any] = {
        v: g.call_function(operator.getitem, (enc, i)) for i, v in enumerate(crossing)
    }

    def arg(v: Value | None) -> Any:
        if v is None:
            return None
        if v not in env:
            name = f"const_{len(env)}"
            root.register_buffer(name, _const(v))
            env[v] = g.get_attr(name)
        return env[v]

    ins = loop.inputs
    result = g.call_module(
        "host_loop",
        (arg(ins[0]), arg(ins[1]), [arg(v) for v in ins[2:]], [arg(v) for v in captures]),
    )
    for i, v in enumerate(loop.outputs):
        env[v] = g.call_function(operator.getitem, (result, i))
    outs = g.call_module("epilogue", tuple(env[v] for v in epi_inputs))
    g.output(outs)
    gm = fx.GraphModule(root, g, class_name="HostLoopModel")
    quiet_call(gm)
    return gm
