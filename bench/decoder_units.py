"""The embedded Conformer's decoder cut into the units that ``bench/decoders_gpu.py`` times.

A model with one top-level ``Loop`` (after ``split``) is cut as ``neffkit convert`` cuts a host
loop (``neffkit.backends.torch.host_loop``): the encoder (the nodes before the loop), the step
(the loop body, lowered with the subgraph calling convention ``step(inputs, captures)``) and the
epilogue (the nodes after the loop, run on the host). A loop-free model (after ``unroll``) is cut
before its first node whose shape is not static (the final ``Slice`` to the length): the prefix
is one static unit, the rest runs on the host. Units run eagerly, or replayed from a captured
CUDA graph (``Replay``), or compiled.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from neffkit.backends.torch.context import free_values
from neffkit.backends.torch.host_loop import _encoder_graph, _epilogue_graph, _reads
from neffkit.backends.torch.lowering import lower_graph
from neffkit.errors import BackendError
from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.types import TensorType

Tensors = list[torch.Tensor]


def _is_const(v: Value) -> bool:
    g = v.graph
    return v.const is not None and v.producer is None and not (g is not None and v in g.inputs)


def _const(v: Value, device: torch.device) -> torch.Tensor:
    if v.const is None:
        raise BackendError(f"'{v.name}' is neither computed before the loop nor a constant")
    return torch.from_numpy(v.const.numpy().copy()).to(device)


def _lower(graph: Graph, device: torch.device, **kwargs: Any) -> torch.fx.GraphModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = lower_graph(graph, **kwargs)
    return gm.eval().to(device)


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of a lowered module's constants (buffers and parameters, subgraphs included),
    each tensor once even where several names hold it."""
    seen: dict[tuple[int, int], int] = {}
    for t in [*module.buffers(), *module.parameters()]:
        seen[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
    return sum(seen.values())


@dataclass
class HostLoop:
    """A model cut at its Loop: encoder, step and epilogue units and the loop's start state."""

    encoder: torch.fx.GraphModule
    step: torch.fx.GraphModule
    epilogue: torch.fx.GraphModule
    trip: int
    n_carried: int
    crossing: list[Value]
    loop: Node
    captures: list[Value]
    epi_inputs: list[Value]
    device: torch.device
    body_nodes: int = 0
    iters: dict[int, torch.Tensor] = field(default_factory=dict)

    def iteration(self, i: int) -> torch.Tensor:
        """The iteration number ``i`` as a device tensor, made once."""
        hit = self.iters.get(i)
        if hit is None:
            hit = self.iters[i] = torch.tensor(i, dtype=torch.int64, device=self.device)
        return hit

    def start(self, enc_out: Sequence[torch.Tensor]) -> tuple[torch.Tensor, Tensors, Tensors]:
        """The initial cond (0-d), carried values and captures, from the encoder's outputs."""
        env = dict(zip(self.crossing, enc_out))

        def get(v: Value) -> torch.Tensor:
            hit = env.get(v)
            return hit if hit is not None else _const(v, self.device)

        cond = get(self.loop.inputs[1]).reshape(()).bool()
        return cond, [get(v) for v in self.loop.inputs[2:]], [get(v) for v in self.captures]

    def finish(self, enc_out: Sequence[torch.Tensor], carried: Sequence[torch.Tensor]) -> Any:
        """The epilogue on the loop's final values: the model's outputs."""
        env = dict(zip(self.crossing, enc_out))
        env.update(zip(self.loop.outputs, carried))
        return self.epilogue(*[env[v] for v in self.epi_inputs])


def cut_at_loop(graph: Graph, device: torch.device, max_steps: int) -> HostLoop:
    """``graph``'s one top-level Loop as host-loop units on ``device``.

    ``trip`` is the Loop's trip count or ``max_steps``, the lower (the exported Conformer's
    trip count is the largest int64; its condition stops it).
    """
    loops = [i for i, n in enumerate(graph.nodes) if n.op_type == "Loop"]
    if len(loops) != 1:
        raise BackendError(f"the model must have one top-level Loop, it has {len(loops)}")
    k = loops[0]
    loop = graph.nodes[k]
    body: Graph = loop.attr("body")
    n_carried = len(loop.inputs) - 2
    if len(body.outputs) != 1 + n_carried:
        raise BackendError("the bench's host loop takes a Loop without scan outputs")
    trip = loop.inputs[0]
    made = trip.producer if trip is not None else None
    const = trip.const if trip is not None else None
    if const is None and made is not None and made.op_type == "Constant":
        const = made.attr("value")
    if const is None:
        raise BackendError("the bench's host loop needs a constant trip count")
    captures = [v for v in free_values(body) if not _is_const(v)]
    runtime = [v for v in graph.inputs if v.const is None]
    before = set(runtime).union(*(n.outputs for n in graph.nodes[:k]))
    after = graph.nodes[k + 1 :]
    read_after = _reads(after, graph) | set(graph.outputs)
    loop_ins = [v for v in loop.inputs if v is not None]
    wanted = [*loop_ins, *captures, *sorted(read_after, key=lambda v: v.name)]
    crossing = list(dict.fromkeys(v for v in wanted if v in before))
    epi_inputs = list(loop.outputs) + [v for v in crossing if v in read_after]
    n = min(int(const.numpy().reshape(-1)[0]), max_steps)
    return HostLoop(
        encoder=_lower(_encoder_graph(graph, k, crossing), device, class_name="Encoder"),
        step=_lower(body, device, captures=captures, list_io=True, class_name="Step"),
        epilogue=_lower(_epilogue_graph(graph, k, epi_inputs), device, class_name="Epilogue"),
        trip=n,
        n_carried=n_carried,
        crossing=crossing,
        loop=loop,
        captures=captures,
        epi_inputs=epi_inputs,
        device=device,
        body_nodes=len(body),
    )


def _static(v: Value) -> bool:
    t = v.type
    return (
        isinstance(t, TensorType)
        and t.shape is not None
        and all(isinstance(d, int) for d in t.shape)
    )


@dataclass
class StaticPrefix:
    """A loop-free model cut before its first node with a non-static output."""

    prefix: torch.fx.GraphModule
    epilogue: torch.fx.GraphModule
    cut: str  # the first node left to the host, as "Op 'name'"


def cut_static_prefix(graph: Graph, device: torch.device) -> StaticPrefix:
    """The static prefix of a loop-free ``graph`` as one unit and the rest as the host's."""
    k = next((i for i, n in enumerate(graph.nodes) if not all(_static(v) for v in n.outputs)), None)
    if k is None or k == 0:
        raise BackendError("the model has no static prefix to capture, or nothing after it")
    after = graph.nodes[k:]
    runtime = [v for v in graph.inputs if v.const is None]
    before = set(runtime).union(*(n.outputs for n in graph.nodes[:k]))
    read_after = _reads(after, graph) | set(graph.outputs)
    crossing = sorted((v for v in read_after if v in before), key=lambda v: v.name)
    # _epilogue_graph drops nodes[: j + 1] (a host loop's Loop included): j = k - 1 keeps node k
    epi = _epilogue_graph(graph, k - 1, crossing)
    node = graph.nodes[k]
    return StaticPrefix(
        prefix=_lower(_encoder_graph(graph, k, crossing), device, class_name="Prefix"),
        epilogue=_lower(epi, device, class_name="Epilogue"),
        cut=f"{node.op_type} '{node.name}'" if node.name else f"an unnamed {node.op_type}",
    )


class Replay:
    """``fn(*inputs) -> list of tensors`` from static input and output tensors.

    On CUDA, ``fn`` is captured once as a ``torch.cuda.CUDAGraph`` (after warm-up calls on a side
    stream, as torch's documentation asks) and each call copies the given inputs into the static
    ones and replays the graph; ``None`` leaves an input as it was (the captures, unchanged
    within a request). Elsewhere every code path but the capture runs: copy-in, then ``fn`` on
    the static inputs.
    """

    def __init__(self, fn: Callable[..., Sequence[torch.Tensor]], example: Tensors) -> None:
        self.fn = fn
        self.inputs = [t.clone() for t in example]
        self.graph: Any = None
        self.outputs: Tensors = []
        if self.inputs and self.inputs[0].device.type == "cuda":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    fn(*self.inputs)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = list(fn(*self.inputs))

    def __call__(self, args: Sequence[torch.Tensor | None]) -> Tensors:
        for dst, src in zip(self.inputs, args):
            if src is not None and src is not dst:
                dst.copy_(src)
        if self.graph is None:
            return list(self.fn(*self.inputs))
        self.graph.replay()
        return self.outputs


def flat_step(step: torch.nn.Module, n_in: int) -> Callable[..., Tensors]:
    """``step(inputs, captures)`` as ``f(*inputs, *captures)`` (what capture and compile take)."""

    def call(*xs: torch.Tensor) -> Tensors:
        return step(list(xs[:n_in]), list(xs[n_in:]))

    return call


def partition_fn(step: torch.nn.Module, size: int, n_carried: int) -> Callable[..., Tensors]:
    """``size`` steps in a row as one function ``f(i0, cond, *carried, *captures)``.

    Exact for a loop that stops inside the partition: once cond is false the carried values
    stay as they were (the later steps' results are dropped by a select), as in ONNX Loop.
    """

    def call(i0: torch.Tensor, cond: torch.Tensor, *rest: torch.Tensor) -> Tensors:
        carried, caps = list(rest[:n_carried]), list(rest[n_carried:])
        for j in range(size):
            outs = step([i0 + j, cond, *carried], caps)
            carried = [torch.where(cond, new, old) for new, old in zip(outs[1:], carried)]
            cond = torch.logical_and(cond, outs[0].reshape(()))
        return [cond, *carried]

    return call


def run_host_loop(
    units: HostLoop, enc_out: Sequence[torch.Tensor], step: Callable[..., Tensors]
) -> tuple[Any, int]:
    """Greedy decoding with one step call per token; the host reads cond after every step.

    ``step(args)`` takes ``[i, cond, *carried, *captures]``, captures ``None`` after the first
    call of a request. Returns the model's outputs and the number of steps run.
    """
    cond, carried, caps = units.start(enc_out)
    n = units.n_carried
    steps = 0
    for i in range(units.trip):  # a model that runs past trip steps gives other tokens
        extra: list[torch.Tensor | None] = list(caps) if i == 0 else [None] * len(caps)
        outs = step([units.iteration(i), cond, *carried, *extra])
        cond, carried = outs[0].reshape(()), list(outs[1 : 1 + n])
        steps += 1
        if not bool(cond):
            break
    return units.finish(enc_out, carried), steps


def run_partitions(
    units: HostLoop,
    enc_out: Sequence[torch.Tensor],
    parts: Sequence[tuple[int, Callable[..., Tensors]]],
) -> tuple[Any, int]:
    """Partitions ``(start step, unit)`` in order; the host stops at the first boundary where
    cond is false. Returns the model's outputs and the number of partitions run."""
    cond, carried, caps = units.start(enc_out)
    ran = 0
    for k, (start, unit) in enumerate(parts):
        extra: list[torch.Tensor | None] = list(caps) if k == 0 else [None] * len(caps)
        outs = unit([units.iteration(start), cond, *carried, *extra])
        cond, carried = outs[0], list(outs[1:])
        ran += 1
        if not bool(cond):
            break
    return units.finish(enc_out, carried), ran


def host_reads(
    module: torch.nn.Module,
    wrap: Callable[[torch.nn.Module], Callable[..., Any]],
    args: Sequence[torch.Tensor],
) -> str:
    """Why ``wrap(module)`` cannot be captured as it stands, found without a GPU, or "".

    Runs a copy of ``module`` on meta tensors (shapes without data): a unit that reads a
    tensor's value on the host (``.item()``, ``int(t)``, a data-dependent shape) fails there as
    it would fail a CUDA-graph capture or ``torch.compile(fullgraph=True)``.
    """
    meta = [torch.empty_like(a, device="meta") for a in args]
    try:
        fn = wrap(copy.deepcopy(module).to("meta"))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*meta)
    except Exception as e:  # noqa: BLE001 - the failure is the answer
        return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return ""
