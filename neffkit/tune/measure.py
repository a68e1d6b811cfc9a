"""Measuring a decoder loop's costs on a backend: the call overhead and each step position's cost.

The model's one top-level ``Loop`` is taken apart generically:

1. the outer graph is run once (onnxruntime) up to the loop, for the loop's initial values and
   the outer values its body captures (the encoder output);
2. the body becomes a standalone model: its own inputs (iteration number, condition, carried
   values), the captured constants copied in as initializers, the other captured values as
   inputs;
3. the body is stepped on onnxruntime from the initial values, condition ignored, to record the
   real carried values at every step position t (the tokens have t entries at step t);
4. for each measured position, the body with those values' shapes as static input shapes is
   prepared on the backend and timed (median of several calls); the call overhead, measured
   the same way on a unit that only returns the loop state, is taken off.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from neffkit.errors import NeffkitError
from neffkit.execution import Runner, as_graph, as_model_proto, random_inputs
from neffkit.execution.model import Model
from neffkit.ir.core import Graph
from neffkit.passes.manager import PassManager
from neffkit.tune.costs import CostModel, interpolate

__all__ = ["DecoderLoop", "find_loop", "measure_costs", "positions_to_measure"]

log = logging.getLogger("neffkit.tune")

Progress = Callable[[str], None]

#: calls of one unit further apart than this (slowest over fastest) make the costs suspect
_NOISY = 3.0


@dataclass
class DecoderLoop:
    """The one decoder ``Loop`` of a model, its body made standalone, and its starting values.

    Attributes:
        model: the whole model as a proto.
        body: the body as a model: inputs iteration number, condition, carried values, then
            the captured non-constant outer values; outputs as the body's.
        trip_count: the loop's constant trip count (its maximum steps), or None.
        carried: the initial carried values, in the body's order.
        captured: the captured non-constant outer values, by name.
    """

    model: onnx.ModelProto
    body: onnx.ModelProto
    trip_count: int | None
    carried: list[np.ndarray]
    captured: dict[str, np.ndarray]

    def states(self, steps: int) -> list[list[np.ndarray]]:
        """``states[t - 1]``: the carried values that step t starts from, for t in 1..steps
        (the body stepped on onnxruntime; its exit condition is ignored)."""
        runner = Runner(self.body, "onnxruntime", check=False)
        state = list(self.carried)
        out = []
        for t in range(1, steps + 1):
            out.append(state)
            if t == steps:
                break
            try:
                results = runner(self.feeds(t, state))
            except NeffkitError as e:
                raise NeffkitError(
                    f"the decoder step fails at step {t} of {steps} (is {steps} more steps than "
                    f"the model can decode? pass a smaller --max-len): {e}"
                ) from e
            state = [np.asarray(x) for x in results[1 : 1 + len(state)]]
        return out

    def feeds(self, t: int, state: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """The body's inputs for step t (1-based) from the carried values ``state``."""
        names = [i.name for i in self.body.graph.input]
        values = [np.array(t - 1, dtype=np.int64), np.array(True), *state]
        values += [self.captured[n] for n in names[len(values) :]]
        return dict(zip(names, values, strict=True))

    def static_body(self, feeds: Mapping[str, np.ndarray]) -> onnx.ModelProto:
        """The body with ``feeds``' shapes as its input shapes (one compiled unit per step)."""
        static = copy.deepcopy(self.body)
        _type_inputs(static.graph, feeds)
        return static

    def state_unit(self, feeds: Mapping[str, np.ndarray]) -> onnx.ModelProto:
        """A unit that takes the body's inputs and returns the carried values, computing
        nothing: what one call costs on a backend before any step runs."""
        g = self.body.graph
        carried = g.input[2 : 2 + len(self.carried)]
        outputs = [helper.make_empty_tensor_value_info(f"{i.name}.out") for i in carried]
        nodes = [helper.make_node("Identity", [i.name], [f"{i.name}.out"]) for i in carried]
        graph = helper.make_graph(nodes, "call_overhead", [], outputs)
        graph.input.extend(copy.deepcopy(g.input))
        _type_inputs(graph, feeds)
        for o, i in zip(graph.output, graph.input[2:], strict=False):
            o.type.CopyFrom(i.type)
        return _model_like(self.model, graph)


def find_loop(model: Model, inputs: Mapping[str, Any] | None = None) -> DecoderLoop:
    """The model's one top-level ``Loop``, its body standalone, and the values it starts from.

    ``inputs`` feed the model's inputs (default: random, seed 0).

    Raises:
        NeffkitError: the model has no top-level ``Loop`` or more than one.
    """
    proto = as_model_proto(model)
    loops = [n for n in proto.graph.node if n.op_type == "Loop"]
    if len(loops) != 1:
        raise NeffkitError(
            f"tune-partitions tunes a model with one decoder Loop at the top level; this one "
            f"has {len(loops)}"
        )
    loop = loops[0]
    body = next(a.g for a in loop.attribute if a.name == "body")
    consts = _outer_constants(proto.graph)
    free = _free_names(body)
    trip = loop.input[0] if loop.input else ""
    wanted = [n for n in (*loop.input[2:], *free) if n not in consts]
    if trip and trip not in consts:
        wanted.append(trip)
    probed = _probe(proto, wanted, inputs)
    values = {**probed, **{n: numpy_helper.to_array(t) for n, t in consts.items()}}
    trip_count = int(values[trip]) if trip else None
    captured = {n: values[n] for n in free if n not in consts}
    standalone = copy.deepcopy(body)
    standalone.name = "decoder_step"
    standalone.initializer.extend(_renamed(consts[n], n) for n in free if n in consts)
    for name, array in captured.items():
        standalone.input.append(helper.make_tensor_value_info(name, _elem(array), array.shape))
    for o in standalone.output:  # shapes vary per step; let the backends infer them
        o.type.tensor_type.ClearField("shape")
    carried = [values[n] for n in loop.input[2:]]
    return DecoderLoop(proto, _model_like(proto, standalone), trip_count, carried, captured)


def positions_to_measure(max_len: int, count: int | None) -> list[int]:
    """``count`` step positions spread evenly over 1..max_len, both ends included (all when
    ``count`` is None or at least ``max_len``)."""
    if count is None or count >= max_len:
        return list(range(1, max_len + 1))
    if count < 2:
        raise NeffkitError("measure at least 2 step positions (the first and the last)")
    return sorted({round(1 + i * (max_len - 1) / (count - 1)) for i in range(count)})


def measure_costs(
    loop: DecoderLoop,
    backend: str,
    max_len: int,
    *,
    positions: Iterable[int] | None = None,
    repeats: int = 7,
    device: Any = None,
    pipeline: str | None = None,
    progress: Progress | None = None,
) -> CostModel:
    """The call overhead and per-step costs of ``loop`` on ``backend`` on this machine.

    Each time is the median of ``repeats`` calls after two warm-up calls. Step costs at
    positions not in ``positions`` (default: all of 1..max_len) are interpolated linearly.
    ``pipeline`` (pass pipeline text) runs on each static step before it is timed, as it will
    run on the unrolled partitions; None times the step as the loop has it.
    """
    say = progress or (lambda _msg: None)
    chosen = sorted(set(positions if positions is not None else range(1, max_len + 1)))
    if not chosen or chosen[0] < 1 or chosen[-1] > max_len:
        raise NeffkitError(f"step positions to measure must lie in 1..{max_len}: {chosen}")
    say(f"stepping the decoder {max_len} times on onnxruntime for the values at each step")
    states = loop.states(max_len)
    first = loop.feeds(1, states[0])
    overhead, spread = _time_unit(loop.state_unit(first), first, backend, device, repeats)
    say(f"call overhead on {backend}: {overhead * 1e3:.3f} ms")
    measured: dict[int, float] = {}
    for t in chosen:
        feeds = loop.feeds(t, states[t - 1])
        step = _specialized(loop.static_body(feeds), pipeline)
        total, varied = _time_unit(step, feeds, backend, device, repeats)
        spread = max(spread, varied)
        measured[t] = max(total - overhead, 0.0)
        say(f"step {t}/{max_len}: {total * 1e3:.3f} ms a call, {measured[t] * 1e3:.3f} ms compute")
    how = f"measured on {backend}, median of {repeats} calls"
    if pipeline:
        how += f", each step static-shaped and run through {pipeline}"
    if len(chosen) < max_len:
        how += f"; {len(chosen)} of {max_len} positions measured, the rest interpolated linearly"
    if spread > _NOISY:
        warning = (
            f"NOISY: the calls of one unit took up to {spread:.1f}x the time of its fastest "
            "(a busy machine?); rerun on an idle one or with more --repeats"
        )
        say(warning)
        how += f"; {warning}"
    return CostModel(overhead, interpolate(measured, max_len), how)


def _specialized(step: onnx.ModelProto, pipeline: str | None) -> onnx.ModelProto | Graph:
    """``step`` after ``pipeline`` (its shapes are static, so the passes fold what they can)."""
    if not pipeline:
        return step
    graph = as_graph(step)
    PassManager(pipeline, rollback=False).run(graph)
    return graph


def _time_unit(
    unit: onnx.ModelProto | Graph,
    feeds: Mapping[str, np.ndarray],
    backend: str,
    device: Any,
    n: int,
) -> tuple[float, float]:
    """The median time of ``n`` calls of ``unit`` after two warm-up calls, and how far apart
    the calls were (slowest over fastest)."""
    runner = Runner(unit, backend, device=device, check=False)
    for _ in range(2):
        runner(feeds)
    times = []
    for _ in range(max(1, n)):
        start = time.perf_counter()
        runner(feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times) / max(min(times), 1e-9)


def _probe(
    proto: onnx.ModelProto, names: Sequence[str], inputs: Mapping[str, Any] | None
) -> dict[str, np.ndarray]:
    """The values of ``names`` in the outer graph, computed by onnxruntime on ``inputs``."""
    if not names:
        return {}
    graph = as_graph(proto)
    by_name = {v.name: v for v in graph.inputs}
    by_name.update({v.name: v for node in graph for v in node.outputs})
    missing = [n for n in names if n not in by_name]
    if missing:
        raise NeffkitError(f"the loop reads {missing[0]!r}, which the outer graph does not compute")
    graph.set_outputs([by_name[n] for n in names])
    PassManager("dce", rollback=False).run(graph)  # the loop itself need not run
    feeds = inputs if inputs is not None else random_inputs(graph)
    results = Runner(graph, "onnxruntime", check=False)(feeds)
    return {n: np.asarray(x) for n, x in zip(names, results, strict=True)}


def _outer_constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers and ``Constant`` outputs (with a ``value`` tensor) of the outer graph."""
    out = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = a.t
    return out


def _free_names(graph: onnx.GraphProto) -> list[str]:
    """Names read inside ``graph`` (its subgraphs too) that it does not define, in order."""
    defined: set[str] = set()
    read: dict[str, None] = {}
    stack = [graph]
    while stack:
        g = stack.pop()
        defined.update(i.name for i in g.input)
        defined.update(t.name for t in g.initializer)
        for n in g.node:
            read.update(dict.fromkeys(x for x in n.input if x))
            defined.update(n.output)
            stack.extend(a.g for a in n.attribute if a.type == onnx.AttributeProto.GRAPH)
            for a in n.attribute:
                stack.extend(a.graphs)
    return [n for n in read if n not in defined]


def _renamed(t: onnx.TensorProto, name: str) -> onnx.TensorProto:
    out = copy.deepcopy(t)
    out.name = name
    return out


def _elem(array: np.ndarray) -> int:
    return helper.np_dtype_to_tensor_dtype(array.dtype)


def _type_inputs(graph: onnx.GraphProto, feeds: Mapping[str, np.ndarray]) -> None:
    for i in graph.input:
        array = feeds[i.name]
        i.type.CopyFrom(helper.make_tensor_type_proto(_elem(array), array.shape))


def _model_like(model: onnx.ModelProto, graph: onnx.GraphProto) -> onnx.ModelProto:
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out
