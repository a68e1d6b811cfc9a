"""The dry run's operator-support report: what of each compiled unit would run on a NeuronCore.

The analysis reads what the Neuron API would see, the traced and inlined TorchScript unit, and
looks its ``aten::`` ops up in the target's supported-operator list (``oplists/*.json``, built
from the Neuron documentation by ``tools/neuron_oplist.py``):

- ``device``: listed as supported (or limited, with the condition checked on the node);
- ``cpu``: removed, limited with the condition failing, a CPU fallback, or (inf1 only) not on
  torch-neuron's list: torch-neuron partitions by that list, so an unlisted op runs on the CPU;
- ``limited``: listed with a condition this analysis cannot check; counted on the device;
- ``not listed (unverified)``: the torch-neuronx list (inf2/trn1) is not a complete inference
  list and the trn2 one could not be read, so an unlisted op may well compile; counted on the
  device, with the transitions it would add if it did not.

A verdict reached through ``ALIASES`` (a name the list spells differently) says "assumed".
Placement follows torch-neuron's partitioner: maximal runs of device ops in topological order,
runs shorter than ``minimum_segment_size`` go to the CPU. A transition is a tensor that one
segment computes and another reads where either runs on the device: it moves between the host
and a NeuronCore inside one call (the unit's own inputs and outputs are not counted: every call
pays them); a host-loop step pays its transitions once a trip. A unit is static when the trace
fixed the shape of every tensor in it (``torch.compile(backend="neuron")`` on trn2 recompiles
for each new shape). ``prim::`` plumbing (constants,
attributes, lists, tuples) is counted apart and placed nowhere.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from neffkit.backends.neuron.oplist import LIST_OF, STATUSES, TARGETS, OpList, load_oplist
from neffkit.errors import BackendError

__all__ = [
    "ALIASES",
    "CPU",
    "DEVICE",
    "LIMITED",
    "LIST_OF",
    "PLUMBING",
    "STATUSES",
    "TARGETS",
    "UNLISTED",
    "OpList",
    "OpVerdict",
    "UnitReport",
    "analyze_unit",
    "load_oplist",
    "render_report",
]

DEVICE, CPU, LIMITED, UNLISTED = "device", "cpu", "limited", "not listed (unverified)"
#: names a trace spells differently from a list: op -> the listed ops it stands for (all of
#: them must run on the device); a verdict reached this way is "assumed", not read
ALIASES: dict[str, tuple[str, ...]] = {
    "aten::conv1d": ("aten::_convolution",),
    "aten::conv2d": ("aten::_convolution",),
    "aten::conv3d": ("aten::_convolution",),
    "aten::convolution": ("aten::_convolution",),
    "aten::linear": ("aten::t", "aten::addmm"),
    "aten::matmul": ("aten::mm", "aten::bmm"),
    "aten::reshape": ("aten::view",),
    "aten::softmax": ("aten::_softmax",),
    "aten::log_softmax": ("aten::_log_softmax",),
    "aten::where": ("aten::_s_where",),
    "aten::batch_norm": ("aten::native_batch_norm",),
    "aten::linalg_vector_norm": ("aten::norm",),  # what torch.norm traces to since torch 2.0
}
#: prim:: nodes that only move values around (counted apart, never placed)
PLUMBING = frozenset(
    "prim::" + k
    for k in (
        "Constant GetAttr ListConstruct ListUnpack TupleConstruct TupleUnpack TupleIndex "
        "NumToTensor ImplicitTensorToNum DictConstruct unchecked_cast device dtype "
        "Uninitialized"
    ).split()
)
_COUNT_KEYS = {
    DEVICE: "device_nodes",
    CPU: "cpu_nodes",
    LIMITED: "limited_nodes",
    UNLISTED: "unlisted_nodes",
}
_NORM_P = {1.0, 2.0, math.inf, -math.inf, "fro"}


@dataclass(frozen=True)
class OpVerdict:
    """The nodes of one op kind that got the same verdict."""

    op: str
    nodes: int
    verdict: str
    assumed: bool = False
    note: str = ""


@dataclass(frozen=True)
class UnitReport:
    """What one compiled unit would look like to the target's compiler."""

    name: str
    target: str
    trips: int
    fallback: bool
    minimum_segment_size: int
    ops: tuple[OpVerdict, ...]
    plumbing: dict[str, int]
    segments: tuple[tuple[str, int], ...]
    transitions_per_call: int
    #: transitions of one call if every unverified op ran on the CPU (None: no such op)
    worst_transitions_per_call: int | None
    static: bool
    dynamic: tuple[str, ...]
    error: str | None
    oplist: str
    notes: tuple[str, ...] = field(default=())

    def count(self, verdict: str) -> int:
        """Nodes with this verdict."""
        return sum(v.nodes for v in self.ops if v.verdict == verdict)

    @property
    def aten_nodes(self) -> int:
        """The op nodes analysed (everything but prim plumbing)."""
        return sum(v.nodes for v in self.ops)

    @property
    def device_segments(self) -> int:
        """Subgraphs the target would compile for the device."""
        return sum(1 for where, _ in self.segments if where == DEVICE)

    @property
    def transitions(self) -> int:
        """CPU<->device crossings of one request: per call, times the unit's trips."""
        return self.transitions_per_call * self.trips

    @property
    def worst_transitions(self) -> int | None:
        """``transitions`` if every unverified op ran on the CPU (None: no such op)."""
        if self.worst_transitions_per_call is None:
            return None
        return self.worst_transitions_per_call * self.trips

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        out = asdict(self)
        out["ops"] = [asdict(v) for v in self.ops]
        out["segments"] = [list(s) for s in self.segments]
        out["device_segments"] = self.device_segments
        out["transitions"] = self.transitions
        out["worst_transitions"] = self.worst_transitions
        for verdict, key in _COUNT_KEYS.items():
            out[key] = self.count(verdict)
        return out


def analyze_unit(
    name: str,
    module: torch.jit.ScriptModule,
    target: str,
    *,
    trips: int = 1,
    fallback: bool = True,
    minimum_segment_size: int = 2,
) -> UnitReport:
    """The operator-support report of one traced unit on ``target``.

    Args:
        name: the unit's name in the report.
        module: the traced (or scripted) unit, as the Neuron API would get it.
        target: ``inf1``, ``inf2``, ``trn1`` or ``trn2``.
        trips: calls of the unit per request (a host-loop step: the loop's trips).
        fallback: whether unsupported ops may run on the CPU; without it any CPU op is a
            predicted compile error.
        minimum_segment_size: device runs shorter than this go to the CPU (torch-neuron's
            default is 2).
    """
    if target not in TARGETS:
        raise BackendError(f"unknown Neuron target {target!r}; expected one of {TARGETS}")
    if trips < 1 or minimum_segment_size < 1:
        raise BackendError(f"unit '{name}': trips and minimum_segment_size must be >= 1")
    graph = getattr(module, "inlined_graph", None) or getattr(module, "graph", None)
    if not isinstance(graph, torch._C.Graph):
        raise BackendError(f"unit '{name}': not a TorchScript module ({type(module).__name__})")
    oplist = load_oplist(LIST_OF[target])
    unlisted = CPU if target == "inf1" else UNLISTED
    walked = list(_walk(graph))
    ops: dict[int, tuple[str, str, bool, str]] = {}  # walk position -> (kind, verdict, ...)
    plumbing: Counter[str] = Counter()
    for i, node in enumerate(walked):
        kind = node.kind()
        if kind in PLUMBING:
            plumbing[kind] += 1
        else:
            ops[i] = (kind, *_verdict(node, oplist, unlisted))
    groups = Counter(ops.values())
    verdicts = tuple(
        OpVerdict(op, count, v, a, note)
        for (op, v, a, note), count in sorted(groups.items(), key=lambda kv: kv[0][:2])
    )
    on_device = {i: v != CPU for i, (_, v, _, _) in ops.items()}
    segments, transitions = _partition(walked, on_device, minimum_segment_size)
    worst = None
    if not oplist.unavailable and any(v == UNLISTED for _, v, _, _ in ops.values()):
        strict = {i: v not in (CPU, UNLISTED) for i, (_, v, _, _) in ops.items()}
        worst = _partition(walked, strict, minimum_segment_size)[1]
    dynamic = _dynamic_values(graph)
    return UnitReport(
        name=name,
        target=target,
        trips=trips,
        fallback=fallback,
        minimum_segment_size=minimum_segment_size,
        ops=verdicts,
        plumbing=dict(sorted(plumbing.items())),
        segments=tuple(segments),
        transitions_per_call=transitions,
        worst_transitions_per_call=worst,
        static=not dynamic,
        dynamic=tuple(dynamic[:5]),
        error=None if fallback else _predicted_error(target, verdicts),
        oplist=oplist.describe(),
        notes=_notes(target, oplist, bool(dynamic)),
    )


def _walk(graph: torch._C.Graph) -> Iterator[torch._C.Node]:
    """Every node in program order, a node's blocks right after it (explicit stack)."""
    stack: list[Iterator[torch._C.Node]] = [iter(graph.nodes())]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        yield node
        for block in reversed(list(node.blocks())):
            stack.append(iter(block.nodes()))


def _verdict(node: torch._C.Node, oplist: OpList, unlisted: str) -> tuple[str, bool, str]:
    """(verdict, assumed, note) of one op node."""
    kind = node.kind()
    entry = oplist.ops.get(kind)
    if entry is not None:
        return _from_entry(node, kind, entry)
    alias = ALIASES.get(kind)
    if alias is None and kind.endswith("_") and not kind.endswith("__"):
        alias = (kind[:-1],)  # an in-place form counts as its functional op
    if alias and all(a in oplist.ops for a in alias):
        found = [_from_entry(node, a, oplist.ops[a]) for a in alias]
        worst = next((f for f in found if f[0] != DEVICE), found[0])
        why = f"; {worst[2]}" if worst[2] else ""
        return worst[0], True, f"assumed: as {' + '.join(alias)}{why}"
    if oplist.unavailable:
        return UNLISTED, False, "the list could not be read"
    return unlisted, False, "not on the list"


def _from_entry(
    node: torch._C.Node, listed: str, entry: Mapping[str, str]
) -> tuple[str, bool, str]:
    """The verdict of ``node`` by the list's entry for ``listed`` (its kind or an alias)."""
    status, note = entry["status"], entry.get("note", "")
    if status == "supported":
        return DEVICE, False, ""
    if status in ("removed", "cpu_fallback"):
        return CPU, False, f"{status}: {note}" if note else status
    checked = _condition(node, listed)
    if checked is None:
        return LIMITED, False, note
    holds, why = checked
    return (DEVICE if holds else CPU), False, why


def _condition(node: torch._C.Node, kind: str) -> tuple[bool, str] | None:
    """Whether the documented condition of limited op ``kind`` holds on ``node``, when it can
    be read from the node."""
    ins = list(node.inputs())
    if kind == "aten::where":
        if len(ins) == 3:
            return True, "limited, condition met: 3-argument (selection) form"
        return False, "limited, condition fails: 1-argument (indices) form"
    if kind in ("aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices"):
        used = node.outputsSize() > 1 and bool(list(node.outputsAt(1).uses()))
        if used:
            return False, "limited, condition fails: the indices are used"
        return True, "limited, condition met: the indices are unused"
    if kind == "aten::norm" and len(ins) > 1:
        p = _constant(ins[1])
        if p is not None:
            ok = p in _NORM_P
            return ok, f"limited, p={p!r}: condition {'met' if ok else 'fails'}"
    if kind == "aten::one_hot" and len(ins) > 1:
        classes = _constant(ins[1])
        if classes is not None:
            ok = classes != -1
            return ok, f"limited, num_classes={classes}: condition {'met' if ok else 'fails'}"
    return None


def _constant(value: torch._C.Value) -> Any:
    """A prim::Constant input's value, else None."""
    node = value.node()
    if node.kind() != "prim::Constant":
        return None
    try:
        return value.toIValue()
    except RuntimeError:
        return None


def _partition(
    walked: Sequence[torch._C.Node], on_device: Mapping[int, bool], minimum: int
) -> tuple[list[tuple[str, int]], int]:
    """(segments as (placement, nodes), transitions of one call) of the op nodes (walk
    position -> on the device) among ``walked``."""
    order = sorted(on_device)
    place = [on_device[i] for i in order]
    start = 0
    for where, size in _runs(place):  # torch-neuron leaves short device runs on the CPU
        if where and size < minimum:
            place[start : start + size] = [False] * size
        start += size
    segments = [(DEVICE if where else CPU, size) for where, size in _runs(place)]
    segment_of: dict[int, int] = {}
    for k, (_, size) in enumerate(segments):
        segment_of.update((order[j], k) for j in range(len(segment_of), len(segment_of) + size))
    sources: dict[int, set[tuple[int, int]]] = {}  # value -> (op node, output) it carries
    crossings: set[tuple[tuple[int, int], int]] = set()
    for i, node in enumerate(walked):
        ins: set[tuple[int, int]] = set()
        for v in node.inputs():
            ins |= sources.get(v.unique(), set())
        here = segment_of.get(i)
        if here is None:  # plumbing passes on what its inputs carry
            for out in node.outputs():
                sources[out.unique()] = ins
            continue
        for src in ins:
            there = segment_of[src[0]]
            if there != here and DEVICE in (segments[there][0], segments[here][0]):
                crossings.add((src, here))
        for k, out in enumerate(node.outputs()):
            sources[out.unique()] = {(i, k)}
    return segments, len(crossings)


def _runs(flags: Sequence[bool]) -> list[tuple[bool, int]]:
    runs: list[tuple[bool, int]] = []
    for f in flags:
        if runs and runs[-1][0] == f:
            runs[-1] = (f, runs[-1][1] + 1)
        else:
            runs.append((f, 1))
    return runs


def _dynamic_values(graph: torch._C.Graph) -> list[str]:
    """Tensors of the unit whose shape the trace did not fix (``%name (producer)``).

    Parameters and buffers (``prim::GetAttr``) are typed without sizes in the inlined graph,
    but they are the module's own tensors, whose shapes no call changes: they are skipped.
    """
    out = []
    values = [(v, "input") for v in graph.inputs()]
    values += [
        (v, n.kind()) for n in _walk(graph) if n.kind() != "prim::GetAttr" for v in n.outputs()
    ]
    for v, where in values:
        t = v.type()
        if isinstance(t, torch._C.TensorType):
            sizes = t.varyingSizes()
            if sizes is None or any(s is None for s in sizes):
                out.append(f"%{v.debugName()} ({where})")
    return out


def _predicted_error(target: str, verdicts: Sequence[OpVerdict]) -> str | None:
    cpu = [v for v in verdicts if v.verdict == CPU]
    if not cpu:
        return None
    api = "torch_neuron.trace(fallback=False)" if target == "inf1" else "the compile"
    ops = ", ".join(f"{v.op} x{v.nodes} ({v.note})" for v in cpu)
    return f"{api} would fail: no CPU fallback for {ops}"


def _notes(target: str, oplist: OpList, dynamic: bool) -> tuple[str, ...]:
    notes = []
    if target == "inf1":
        notes.append("an op not on torch-neuron's list runs on the CPU (it partitions by it)")
    elif target in ("inf2", "trn1"):
        notes.append(
            "an unlisted op is counted on the device but unverified: the list is not a "
            "complete inference list; torch_neuronx.analyze on an Inf2/Trn1 host knows"
        )
    else:
        notes.append(
            "every op is counted on the device but unverified: only the TorchNeuron "
            "compatibility page or a torch.compile on a Trn2 host knows"
        )
    if oplist.unavailable:
        notes.append(f"list not read: {oplist.unavailable}")
    if dynamic and target == "trn2":
        notes.append("not static: torch.compile(backend='neuron') recompiles for each new shape")
    return tuple(notes)


def render_report(units: Sequence[UnitReport], *, target: str) -> tuple[str, dict[str, Any]]:
    """The dry-run report of a model's units on ``target``: Markdown and JSON data."""
    if target not in TARGETS:
        raise BackendError(f"unknown Neuron target {target!r}; expected one of {TARGETS}")
    other = [u.name for u in units if u.target != target]
    if other:
        raise BackendError(f"units {other} were analysed for another target than {target}")
    oplist = load_oplist(LIST_OF[target])
    notes = dict.fromkeys(n for u in units for n in u.notes) or dict.fromkeys(
        _notes(target, oplist, False)
    )
    lines = [
        f"Neuron dry run, target {target}. Operator list {oplist.describe()}.",
        "",
        *(f"- {n}" for n in notes),
        "",
        "| unit | trips | op nodes | device | CPU | limited | not listed | prim plumbing "
        "| device segments | transitions/call | transitions/request | static | predicted error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for u in units:
        per_call = f"{u.transitions_per_call}"
        per_request = f"{u.transitions}"
        if u.worst_transitions_per_call is not None:
            per_call += f" (<= {u.worst_transitions_per_call} if unlisted on CPU)"
            per_request += f" (<= {u.worst_transitions})"
        lines.append(
            f"| {u.name} | {u.trips} | {u.aten_nodes} | {u.count(DEVICE)} | {u.count(CPU)} "
            f"| {u.count(LIMITED)} | {u.count(UNLISTED)} | {sum(u.plumbing.values())} "
            f"| {u.device_segments} | {per_call} | {per_request} "
            f"| {'yes' if u.static else 'no: ' + ', '.join(u.dynamic[:2])} "
            f"| {_cell(u.error) if u.error else 'none'} |"
        )
    flagged = [
        (u, v)
        for u in units
        for v in u.ops
        if (v.verdict != DEVICE or v.assumed or v.note)
        and not (oplist.unavailable and v.verdict == UNLISTED)
    ]
    if flagged:
        lines += ["", "| unit | op | nodes | verdict | note |", "|---|---|---:|---|---|"]
        for u, v in flagged:
            verdict = f"{v.verdict} (assumed)" if v.assumed else v.verdict
            lines.append(f"| {u.name} | `{v.op}` | {v.nodes} | {verdict} | {_cell(v.note)} |")
    data = {
        "target": target,
        "oplist": {
            "name": oplist.name,
            "source": oplist.source,
            "repo_commit": oplist.repo_commit,
            "sdk_version": oplist.sdk_version,
            "retrieved": oplist.retrieved,
            "unavailable": oplist.unavailable,
        },
        "units": [u.to_json() for u in units],
    }
    return "\n".join(lines) + "\n", data


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
