"""The compiled units of a graph, each lowered by the torch backend and traced with static
example inputs, and the host code that stitches them into one TorchScript module.

An accelerator compiler takes one static graph at a time, so a decoder is cut where its
control flow is:

* a graph ``split`` marked as a host loop: the encoder and the step (the torch backend's host
  loop, ``backends.torch.host_loop``; the step runs ``trips`` times per request);
* ``partition-unroll`` output: each partition (an ``If`` branch whose ``doc_string`` is
  ``neffkit:partition steps=A-B``; the first partition, with the encoder, is the top-level
  graph before its gate);
* any other graph: the whole graph.

In every graph that holds a unit, the unit is the computation before the first control flow
that stays (a partition gate, the ``If`` tree that picks the tokens once the loop stopped): the
control flow and what follows it run on the host. An ``If`` that only picks one of two values of
one static type is exact as ``Where`` and is rewritten so, on a copy, so that it stays in the
unit (the unrolled steps' exit tests are such ``If`` nodes).

Each unit is a module of tensors in, a tuple of tensors out (``forward(t0, t1, ...)``), which is
what ``torch_neuron.trace`` / ``torch_neuronx.trace`` / ``torch.compile`` take; ``UnitPlan.stitch``
puts compiled units in the host code in place of the traced ones and scripts the whole.
"""

from __future__ import annotations

import operator
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, List  # noqa: UP035 - TorchScript reads typing.List annotations

import torch
import torch.fx as fx

from neffkit.backends.neuron.prepare import own_weights, selects_to_where
from neffkit.backends.torch import prepare_inputs
from neffkit.backends.torch.host_loop import host_loop_module, marked_loops
from neffkit.backends.torch.lowering import lower_graph, quiet_call
from neffkit.backends.torch.ops.control_flow import IfModule, LoopModule, ScanModule
from neffkit.errors import BackendError, first_line
from neffkit.ir.clone import clone_graph
from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.units import GATE_MARK, PARTITION_MARK

__all__ = ["GATE_MARK", "PARTITION_MARK", "CompiledUnit", "UnitPlan", "compiled_units"]

#: A trip count this large means "no bound": the loop exits through its condition.
_UNBOUNDED = 2**31

_CONTROL = (IfModule, LoopModule, ScanModule)
_CONTROL_OPS = frozenset({"If", "Loop", "Scan"})


@dataclass(frozen=True)
class CompiledUnit:
    """One graph an accelerator compiler gets: traced with static example inputs.

    Attributes:
        name: ``model``, ``encoder``, ``step`` or ``partition_A_B``.
        traced: the unit traced on ``example_inputs`` (scripted when it cannot be traced
            faithfully: ``static`` is then False and ``note`` says why).
        example_inputs: the tensors the unit got on the example request, in order.
        trips: how many times one request calls it at most (the step: the loop's bound).
        steps: the decoder steps the unit holds (``"5-9"``), or ``""``.
        module: the eager module the trace was made from (``torch.compile`` takes it).
        static: every call has the example's shapes.
        note: why the unit is not static, or ``""``.
    """

    name: str
    traced: torch.jit.ScriptModule
    example_inputs: tuple[torch.Tensor, ...]
    trips: int = 1
    steps: str = ""
    module: torch.nn.Module | None = None
    static: bool = True
    note: str = ""


@dataclass
class UnitPlan:
    """The compiled units of a model and the host code that calls them.

    ``host`` holds each unit as a submodule (``paths[name]``); ``kind`` is ``whole``,
    ``host-loop`` or ``partitions``.
    """

    kind: str
    units: list[CompiledUnit]
    host: torch.nn.Module
    paths: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: computation left in the host code, not compiled (an unmarked Loop), one line each
    notes: list[str] = field(default_factory=list)

    def stitch(
        self, compiled: Mapping[str, torch.nn.Module] | None = None
    ) -> torch.jit.ScriptModule:
        """The host code scripted around ``compiled[name]`` for each unit (the traced unit
        where ``compiled`` has none): one TorchScript module for the whole model.

        Raises:
            BackendError: an unknown unit name, or host code that cannot be scripted.
        """
        compiled = dict(compiled or {})
        unknown = sorted(set(compiled) - set(self.paths))
        if unknown:
            raise BackendError(f"no compiled unit named {unknown}; the units are {self.names}")
        for unit in self.units:
            module: torch.nn.Module = compiled.get(unit.name, unit.traced)
            if unit.name in self.adapters:
                module = _list_adapter(module, *self.adapters[unit.name])
            _set_submodule(self.host, self.paths[unit.name], module)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's deprecation and annotation notes
                return torch.jit.script(self.host)
        except Exception as e:  # noqa: BLE001 - any scripting failure is one error
            raise BackendError(f"the host code could not be scripted: {first_line(e)}") from e

    @property
    def names(self) -> list[str]:
        """The units' names, in the order a request reaches them."""
        return [u.name for u in self.units]


def compiled_units(graph: Graph, example_inputs: Sequence[Any] | Mapping[str, Any]) -> UnitPlan:
    """The compiled units of ``graph`` traced on ``example_inputs`` (by name or in order),
    and the host code around them.

    Raises:
        BackendError: a unit the torch backend cannot lower or trace, inputs that do not fit.
    """
    example = prepare_inputs(graph, example_inputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: units are static by construction
        if marked_loops(graph):
            return _host_loop_plan(graph, example)
        return _cut_plan(graph, example)


# -- host loops ---------------------------------------------------------------------------------


def _host_loop_plan(graph: Graph, example: list[torch.Tensor]) -> UnitPlan:
    """Encoder and step of the torch backend's host loop, traced as flat units."""
    root, report = host_loop_module(graph, example)
    loop_module: LoopModule = root.get_submodule("host_loop")  # type: ignore[assignment]
    recorders = {"encoder": _Recorder(root.encoder), "step": _Recorder(loop_module.body)}
    root.encoder = recorders["encoder"]
    loop_module.body = recorders["step"]
    try:
        root(*example)
    except Exception as e:  # noqa: BLE001 - the model fails on the example inputs
        raise BackendError(
            f"the host-loop model fails on the example inputs: {first_line(e)}"
        ) from e
    enc_args = recorders["encoder"].first
    step_args = recorders["step"].first
    if enc_args is None or step_args is None:
        raise BackendError("the example run did not reach the host loop's step")
    enc_eager = report.eager["encoder"]
    encoder = _unit("encoder", enc_eager, tuple(enc_args), 1, "")
    inputs, captures = step_args
    n_in, n_cap = len(inputs), len(captures)
    n_out = len(loop_module.body.module(inputs, captures))
    flat = _flat_adapter(report.eager["step"], n_in, n_cap, n_out)
    flat_args = (*inputs, *captures)
    trips = _trips(marked_loops(graph)[0], recorders["step"].calls)
    if report.step == "traced":
        step = _unit("step", flat, flat_args, trips, "")
    else:
        step = CompiledUnit(
            "step", _script(flat, "step"), flat_args, trips, "", flat, False, report.why
        )
    root.encoder = encoder.traced
    loop_module.body = recorders["step"].module
    plan = UnitPlan("host-loop", [encoder, step], root)
    plan.paths = {"encoder": "encoder", "step": "host_loop.body"}
    plan.adapters = {"step": (n_in, n_cap, n_out)}
    return plan


def _trips(loop: Node, calls: int) -> int:
    """The loop's bound when it is a constant, else the steps the example run took."""
    bound = _const_int(loop.inputs[0] if loop.inputs else None)
    if bound is not None and 0 < bound < _UNBOUNDED:
        return bound
    return max(calls, 1)


def _const_int(v: Value | None) -> int | None:
    """The integer an initializer or a ``Constant`` node holds, else None."""
    if v is None:
        return None
    p = v.producer
    if p is None:
        tensor = v.const
    elif p.op_type == "Constant" and not p.domain:
        tensor = p.attr("value")
    else:
        return None
    array = tensor.numpy() if tensor is not None and hasattr(tensor, "numpy") else None
    if array is None or array.size != 1 or array.dtype.kind not in "iu":
        return None
    return int(array.reshape(()))


# -- whole graphs and partitions ----------------------------------------------------------------


@dataclass
class _Level:
    """One graph that holds a unit: the lowered host module, where its unit sits in it."""

    name: str
    steps: str
    unit: fx.GraphModule | None
    parent: torch.nn.Module
    attr: str


def _cut_plan(graph: Graph, example: list[torch.Tensor]) -> UnitPlan:
    """The whole graph, or its partitions, each cut before the control flow that stays."""
    g = clone_graph(graph)
    selects_to_where(g)
    own_weights(g)
    top = lower_graph(g, class_name="NeffkitModule")
    top.eval()
    levels: list[_Level] = []
    host = _cut_level(top, g, levels, top_level=True)
    if not levels:
        raise BackendError(
            f"graph '{graph.name}' has no computation before its first control flow: nothing "
            "to compile (split, unroll or partition-unroll its loop first)"
        )
    kind = "partitions" if any(lv.steps for lv in levels) else "whole"
    recorders = {}
    for lv in levels:
        rec = _Recorder(getattr(lv.parent, lv.attr))
        setattr(lv.parent, lv.attr, rec)
        recorders[lv.name] = rec
    opened = _open_gates(host)
    try:
        host(*example)
    except Exception as e:  # noqa: BLE001 - the model fails on the example inputs
        raise BackendError(f"the model fails on the example inputs: {first_line(e)}") from e
    finally:
        for gate in opened:
            del gate.forward
    units: list[CompiledUnit] = []
    paths: dict[str, str] = {}
    for lv in levels:
        rec = recorders[lv.name]
        setattr(lv.parent, lv.attr, rec.module)
        if rec.first is None:
            raise BackendError(f"the example run did not reach unit '{lv.name}'")
        unit = _unit(lv.name, rec.module, tuple(rec.first), 1, lv.steps)
        setattr(lv.parent, lv.attr, unit.traced)
        units.append(unit)
        paths[lv.name] = _path_of(host, lv.parent, lv.attr)
    notes = [
        f"{n.op_type} '{n.name}' runs in the host code on the CPU, not compiled: split, unroll "
        "or partition-unroll it to compile its body"
        for n in g
        if n.op_type in ("Loop", "Scan") and not n.domain
    ]
    return UnitPlan(kind, units, host, paths, notes=notes)


def _cut_level(gm: fx.GraphModule, graph: Graph, levels: list[_Level], *, top_level: bool) -> Any:
    """``gm`` (lowered from ``graph``) with its unit moved into a flat submodule; partitions
    behind its gate are cut the same way. Appends the level's unit to ``levels``."""
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and _is_control(gm, n)]
    ops = [n for n in graph if n.op_type in _CONTROL_OPS and n.domain == ""]
    if len(calls) != len(ops):
        raise BackendError(
            f"graph '{graph.name}': {len(ops)} control-flow nodes lowered to {len(calls)} "
            "modules; cannot tell the partition gates apart"
        )
    gates = [(c, n) for c, n in zip(calls, ops) if n.doc_string == GATE_MARK]
    name, steps = _level_name(graph, gates, top_level, {lv.name for lv in levels})
    stop = calls[0] if calls else next(n for n in gm.graph.nodes if n.op == "output")
    host = _split_before(gm, stop, name)
    if host is not None:
        levels.append(_Level(name, steps, host.get_submodule(name), host, name))  # type: ignore[arg-type]
    out = host if host is not None else gm
    for call, node in gates:
        gate = out.get_submodule(str(call.target))
        if not isinstance(gate, IfModule):
            raise BackendError(f"partition gate '{node.name}' was not lowered to an If module")
        branch = node.attr("then_branch")
        gate.then_branch = _cut_level(gate.then_branch, branch, levels, top_level=False)
    return out


def _level_name(
    graph: Graph, gates: list[tuple[fx.Node, Node]], top_level: bool, seen: set[str]
) -> tuple[str, str]:
    """The unit's name and steps: ``partition_A_B`` for partitions, else ``model``."""
    if graph.doc_string.startswith(PARTITION_MARK):
        a, b = _steps(graph.doc_string, graph.name)
    elif top_level and gates:
        branch = gates[0][1].attr("then_branch")
        first, _ = _steps(branch.doc_string, branch.name)
        if first < 1:
            raise BackendError(f"partition '{branch.name}' starts at step {first}, before step 1")
        a, b = 0, first - 1
    else:
        return "model", ""
    name = f"partition_{a}_{b}"
    if name in seen:
        raise BackendError(f"two partitions cover steps {a}-{b}: the partition marks are broken")
    return name, f"{a}-{b}"


_STEPS = re.compile(r"steps=(\d{1,9})-(\d{1,9})\b")


def _steps(doc: str, where: str) -> tuple[int, int]:
    """``(A, B)`` of a ``neffkit:partition steps=A-B`` mark (written by partition-unroll)."""
    m = _STEPS.search(doc)
    if m is None:
        raise BackendError(
            f"graph '{where}': a partition mark without 'steps=A-B' ({doc[:60]!r}); the model's "
            "partition marks are not partition-unroll's"
        )
    a, b = int(m[1]), int(m[2])
    if a > b:
        raise BackendError(f"graph '{where}': partition steps {a}-{b} run backwards")
    return a, b


def _is_control(gm: fx.GraphModule, node: fx.Node) -> bool:
    return isinstance(gm.get_submodule(str(node.target)), _CONTROL)


def _split_before(gm: fx.GraphModule, stop: fx.Node, name: str) -> fx.GraphModule | None:
    """``gm`` whose computation before ``stop`` is one call of a flat submodule ``name``
    (tensors in, a tuple out); None when nothing is computed before ``stop``."""
    nodes = list(gm.graph.nodes)
    k = nodes.index(stop)
    unit = [n for n in nodes[:k] if n.op not in ("placeholder", "get_attr") and not _unpacks(n)]
    if not unit:
        return None
    members = set(unit)
    inputs: list[fx.Node] = []
    for n in unit:
        for a in n.all_input_nodes:
            if a not in members and a.op != "get_attr" and a not in inputs:
                inputs.append(a)
    outputs = [n for n in unit if any(u not in members for u in n.users)]
    # the unit: a graph of its own
    ug = fx.Graph()
    uenv: dict[fx.Node, fx.Node] = {a: ug.placeholder(f"in_{i}") for i, a in enumerate(inputs)}

    def unit_arg(a: fx.Node) -> fx.Node:
        if a not in uenv and a.op == "get_attr":
            uenv[a] = ug.get_attr(str(a.target))
        return uenv[a]

    for n in unit:
        uenv[n] = ug.node_copy(n, unit_arg)
    ug.output(tuple(uenv[n] for n in outputs))
    unit_gm = fx.GraphModule(gm, ug, class_name="Unit")
    quiet_call(unit_gm)
    # the host: the same graph, the unit's nodes replaced by one call
    hg = fx.Graph()
    henv: dict[fx.Node, fx.Node] = {}
    for i, n in enumerate(nodes):
        if i == k:
            call = hg.call_module(name, tuple(henv[a] for a in inputs))
            for j, o in enumerate(outputs):
                henv[o] = hg.call_function(operator.getitem, (call, j))
        if n in members or (n.op == "get_attr" and all(u in members for u in n.users)):
            continue
        henv[n] = hg.node_copy(n, lambda a: henv[a])
    gm.add_module(name, unit_gm)
    host = fx.GraphModule(gm, hg, class_name=type(gm).__name__)
    quiet_call(host)
    return host


def _unpacks(node: fx.Node) -> bool:
    """A read of one element of a list argument (a subgraph's inputs or captures): host code."""
    return (
        node.op == "call_function"
        and node.target is operator.getitem
        and isinstance(node.args[0], fx.Node)
        and node.args[0].op == "placeholder"
    )


def _open_gates(module: torch.nn.Module) -> list[IfModule]:
    """Makes every partition gate take its then-branch (so the example run reaches every
    partition: their shapes do not depend on where the loop stops); returns the gates, whose
    instance ``forward`` the caller deletes afterwards."""
    opened = []
    for m in module.modules():
        if isinstance(m, IfModule) and _holds_unit(m.then_branch):
            m.forward = _always_then(m)  # type: ignore[method-assign]
            opened.append(m)
    return opened


def _always_then(gate: IfModule) -> Any:
    def forward(cond: torch.Tensor, then_caps: list[Any], else_caps: list[Any]) -> Any:
        return gate.then_branch([], then_caps)

    return forward


def _holds_unit(module: torch.nn.Module) -> bool:
    return any(isinstance(m, _Recorder) for m in module.children())


def _path_of(root: torch.nn.Module, parent: torch.nn.Module, attr: str) -> str:
    for path, m in root.named_modules(remove_duplicate=False):
        if m is parent:
            return f"{path}.{attr}" if path else attr
    raise BackendError(f"unit '{attr}' is not in the host module")


def _set_submodule(root: torch.nn.Module, path: str, module: torch.nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, attr, module)


# -- units: tracing and calling conventions -----------------------------------------------------


class _Recorder(torch.nn.Module):
    """Calls ``module`` and keeps the arguments of its first call (the unit's example)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module
        self.first: tuple[Any, ...] | None = None
        self.calls = 0

    def forward(self, *args: Any) -> Any:
        if self.first is None:
            self.first = tuple(_detached(a) for a in args)
        self.calls += 1
        return self.module(*args)


def _detached(a: Any) -> Any:
    if isinstance(a, list | tuple):
        return [x.detach().clone() if isinstance(x, torch.Tensor) else x for x in a]
    return a.detach().clone() if isinstance(a, torch.Tensor) else a


def _unit(
    name: str, module: torch.nn.Module, args: tuple[Any, ...], trips: int, steps: str
) -> CompiledUnit:
    """``module`` traced on ``args`` (all tensors: an accelerator unit takes nothing else)."""
    odd = [i for i, a in enumerate(args) if not isinstance(a, torch.Tensor)]
    if odd:
        raise BackendError(
            f"unit '{name}': inputs {odd} are not tensors ({type(args[odd[0]]).__name__}); "
            "a compiled unit takes tensors only"
        )
    module.eval()
    try:
        traced = torch.jit.trace(module, args, check_trace=False)
    except Exception as e:  # noqa: BLE001 - any tracing failure is one error
        raise BackendError(f"unit '{name}' could not be traced: {first_line(e)}") from e
    return CompiledUnit(name, traced, tuple(args), trips, steps, module)


def _script(module: torch.nn.Module, name: str) -> torch.jit.ScriptModule:
    try:
        return torch.jit.script(module)
    except Exception as e:  # noqa: BLE001 - any scripting failure is one error
        raise BackendError(f"unit '{name}' could not be scripted: {first_line(e)}") from e


def _flat_adapter(step: torch.nn.Module, n_in: int, n_cap: int, n_out: int) -> fx.GraphModule:
    """``forward(t0, .., tn) -> tuple``: the step (``forward(inputs, captures) -> list``) with
    flat tensor arguments, as the compilers take them."""
    root = torch.nn.Module()
    root.add_module("step", step)
    g = fx.Graph()
    ts = [g.placeholder(f"x_{i}") for i in range(n_in + n_cap)]
    out = g.call_module("step", (list(ts[:n_in]), list(ts[n_in:])))
    g.output(tuple(g.call_function(operator.getitem, (out, i)) for i in range(n_out)))
    gm = fx.GraphModule(root, g, class_name="FlatStep")
    quiet_call(gm)
    return gm


def _list_adapter(unit: torch.nn.Module, n_in: int, n_cap: int, n_out: int) -> fx.GraphModule:
    """``forward(inputs, captures) -> list``: a flat unit called as the host loop calls a step."""
    root = torch.nn.Module()
    root.add_module("unit", unit)
    g = fx.Graph()
    ins = g.placeholder("inputs", type_expr=List[torch.Tensor])  # noqa: UP006
    caps = g.placeholder("captures", type_expr=List[torch.Tensor])  # noqa: UP006
    args = [g.call_function(operator.getitem, (ins, i)) for i in range(n_in)]
    args += [g.call_function(operator.getitem, (caps, i)) for i in range(n_cap)]
    out = g.call_module("unit", tuple(args))
    g.output([g.call_function(operator.getitem, (out, i)) for i in range(n_out)])
    gm = fx.GraphModule(root, g, class_name="StepCall")
    quiet_call(gm)
    return gm
