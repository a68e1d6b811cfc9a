"""``pad-loop``: a Loop whose carried values grow each step gets a body of one static shape.

Before / after (tokens grow by one a step; ``max-len=3`` steps, so a buffer of 1 + 3 slots)::

    t = Loop(M, c, t0) {                     buf = Concat(t0, zeros[1, 3])
        x = Embed(t)          [1, L, d]      buf, n = Loop(M, c, buf, 1) {      [1, 4], L = n
        ...                                      x = Embed(buf)      [1, 4, d]   positions >= L:
        s = Softmax(q k^T)    over L             s = Softmax(Where(pos < L, q k^T, -inf))
        y = Gather(x, -1)     last position      y = Gather(x, L - 1)
        t = Concat(t, next)   [1, L + 1]         buf = Where(pos == L, next, buf); n = L + 1
    }                                        }
                                             t = Slice(buf, 0, n)   (the original tokens)

Exact or refused. The pass walks the body once and knows for every value which axes carry the
loop's length L (the *time* axes, padded to P in the new body, valid below L) and, for small
integers (shapes, indices, counters), their value as an affine form of the step. An op that
keeps positions apart is copied; an op that mixes positions along a time axis gets a mask so
that padded positions cannot reach valid ones (``-inf`` before softmax / max / argmax, ``0``
before a sum or a contraction, the count L for a mean); indexing from the end reads from L;
shapes that held L hold P; a slice up to L is the whole buffer. Anything else that touches a
padded axis is refused: the loop is left as it was and the reason, naming the node and op,
is logged and counted (``loops_left``).

What it costs: every step computes over P positions instead of L (a greedy decoder's step
costs about its last step's), in exchange for one shape: the step is traced and compiled
once, and a host loop calls the same compiled unit every step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from onnx import AttributeProto

import neffkit.passes._pad_rules  # noqa: F401 - fills the rule tables
from neffkit.ir.core import Attr, Graph, Node, Value
from neffkit.ir.types import TensorType
from neffkit.passes._loops import (
    Emitter,
    LoopParts,
    counted_bound,
    read_loop,
    static_int,
    static_shape,
)
from neffkit.passes._pad_body import BodyPadder, Refused
from neffkit.passes.base import Pass, PassContext, PassResult, all_graphs_postorder, option
from neffkit.passes.infer_shapes import InferShapes
from neffkit.passes.registry import register

log = logging.getLogger("neffkit.passes.pad_loop")


@register
@dataclass(frozen=True)
class PadLoop(Pass):
    """Pads the growing carried values of each Loop to a static buffer, with masks."""

    name: ClassVar[str] = "pad-loop"
    description: ClassVar[str] = (
        "pad a Loop's growing carried values to max-len steps, masked, so the body has one shape"
    )

    max_len: int = option(0, "steps the buffer holds (0: the loop's bound)")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        stats = {"loops_padded": 0, "loops_left": 0}
        if not any(n.op_type == "Loop" for n in graph.all_nodes()):
            return PassResult(False, {})
        # the walk reads the types of the values the bodies capture and compute
        typed = InferShapes().run(graph, ctx).changed
        for g in list(all_graphs_postorder(graph)):
            for node in [n for n in g.holders if n.op_type == "Loop" and n.domain == ""]:
                parts = read_loop(node)
                try:
                    if isinstance(parts, str):
                        raise Refused(parts)
                    padded = self._pad(g, parts)
                except Refused as e:
                    stats["loops_left"] += 1
                    log.warning("pad-loop: Loop '%s' left as it is: %s", node.name, e)
                    continue
                if padded:
                    stats["loops_padded"] += 1
        if stats["loops_padded"]:
            InferShapes().run(graph, ctx)  # the new bodies' types, so that a rerun is a no-op
        return PassResult(typed or stats["loops_padded"] > 0, {k: v for k, v in stats.items() if v})

    def _pad(self, g: Graph, parts: LoopParts) -> bool:
        """Replaces the loop by its padded form; False when nothing in it grows."""
        growing = _growing(parts)
        if not growing:
            return False
        sizes = {_growth_size(parts, j, axis) for j, axis in growing.items()}
        starts = {int(_init_dims(parts, j)[axis] or 0) for j, axis in growing.items()}
        if len(sizes) != 1 or len(starts) != 1:
            raise Refused("its growing values grow by different amounts or from different lengths")
        (k,), (l0,) = sizes, starts
        trip = static_int(parts.trip)
        bounds = [b for b in (trip, counted_bound(parts)) if b is not None and b >= 0]
        if not bounds:
            raise Refused(
                "its number of steps has no static bound (give the Loop a constant trip count)"
            )
        steps = min(bounds)
        max_len = self.max_len or steps
        if steps > max_len:
            raise Refused(f"it may run {steps} steps, more than max-len={max_len}")
        p = l0 + k * max_len
        types = [_carried_type(parts, j, growing.get(j), p) for j in range(len(parts.inits))]
        counters = {j: c for j in range(len(parts.inits)) if (c := _counter(parts, j)) is not None}
        padder = BodyPadder(parts, growing, l0, k, p, g.root.opset("") or 0)
        body = padder.pad(types, counters)
        _replace(g, parts, body, growing, types, l0, p)
        log.info("pad-loop: Loop '%s': %d positions padded to %d", parts.node.name, l0, p)
        return True


def _growing(parts: LoopParts) -> dict[int, int]:
    """Carried values whose body output is ``Concat`` of their input (the time axis each)."""
    out: dict[int, int] = {}
    for j, (v_in, v_out) in enumerate(zip(parts.state_in, parts.state_out)):
        p = v_out.producer
        if p is None or p.op_type != "Concat" or p.domain != "" or p.graph is not parts.body:
            continue
        reads = [_source(v, v_in, parts.body) for v in p.inputs]
        if v_in not in reads:
            continue
        if reads.index(v_in) != 0:
            raise Refused(f"carried value '{v_in.name}' grows at its front (only appending pads)")
        shape = _init_dims(parts, j)
        axis = p.attr("axis")
        axis = axis + len(shape) if axis < 0 else axis
        if not 0 <= axis < len(shape) or not isinstance(shape[axis], int):
            raise Refused(f"carried value '{v_in.name}' grows from a length that is not static")
        out[j] = axis
    return out


def _source(v: Value | None, target: Value, body: Graph) -> Value | None:
    """``target`` when ``v`` is it, through ``Identity`` and ``Slice`` of the body; else v."""
    while v is not None and v is not target:
        q = v.producer
        if q is None or q.graph is not body or q.op_type not in ("Identity", "Slice"):
            break
        v = q.inputs[0]
    return v


def _growth_size(parts: LoopParts, j: int, axis: int) -> int:
    """Positions the growing value ``j`` gains a step: the declared sizes of what is appended,
    or 1 when they are not declared (the walk checks the real sizes and refuses others)."""
    concat = parts.state_out[j].producer
    assert concat is not None
    total = 0
    for v in concat.inputs[1:]:
        shape = None if v is None else v.shape
        d = None if shape is None or len(shape) <= axis else shape[axis]
        if not isinstance(d, int):
            return 1
        total += d
    if total <= 0:
        raise Refused(f"'{parts.state_in[j].name}' does not grow")
    return total


def _init_dims(parts: LoopParts, j: int) -> list[int | str | None]:
    """The dims of carried value ``j``'s initial value (its type, or its constant's shape)."""
    init = parts.inits[j]
    shape = static_shape(init)
    if shape is not None:
        return list(shape)
    if isinstance(init.type, TensorType) and init.type.shape is not None:
        return list(init.type.shape)
    raise Refused(f"the rank of carried value '{parts.state_in[j].name}' is not known")


def _carried_type(parts: LoopParts, j: int, axis: int | None, p: int) -> TensorType:
    init = parts.inits[j]
    declared = parts.state_in[j].type
    dtype = init.dtype if init.dtype is not None else getattr(declared, "dtype", None)
    if dtype is None:
        raise Refused(f"carried value '{parts.state_in[j].name}' has no known element type")
    if axis is not None:
        # unknown dims get a name of their own: the body's values then relate to them
        shape = [f"pad_dim{j}_{a}" if d is None else d for a, d in enumerate(_init_dims(parts, j))]
        shape[axis] = p
        return TensorType(dtype, shape)
    if isinstance(declared, TensorType) and declared.shape is not None:
        return declared
    if isinstance(init.type, TensorType):
        return init.type
    return TensorType(dtype, None)


def _counter(parts: LoopParts, j: int) -> tuple[int, int] | None:
    """``(step, start)`` of a carried integer counter ``c_out = c_in + step``, else None."""
    start = static_int(parts.inits[j])
    v_in, v_out = parts.state_in[j], parts.state_out[j]
    p = v_out.producer
    if start is None or p is None or p.op_type != "Add" or p.graph is not parts.body:
        return None
    a, b = p.inputs
    step = static_int(b) if a is v_in else static_int(a) if b is v_in else None
    return None if step is None else (step, start)


def _replace(
    g: Graph,
    parts: LoopParts,
    body: Graph,
    growing: dict[int, int],
    types: list[TensorType],
    l0: int,
    p: int,
) -> None:
    """Puts the padded Loop in the old one's place; its users read the original values."""
    node = parts.node
    em = Emitter(g, node)
    inits: list[Value | None] = list(parts.inits)
    for j, axis in growing.items():
        rank = len(types[j].shape or ())
        pads = np.zeros(2 * rank, np.int64)
        pads[rank + axis] = p - l0  # zeros after the initial positions, along the time axis
        if (g.root.opset("") or 0) >= 11:
            inits[j] = em.node("Pad", [inits[j], em.const(pads, "pad_pads")], "pad_buffer")
        else:
            inits[j] = em.node("Pad", [inits[j]], "pad_buffer", pads=pads.tolist())
    length0 = em.const(np.array(l0, np.int64), "pad_len0")
    k = len(parts.inits)
    outs = [Value(v.name) for v in node.outputs[:k]] + [Value("pad_len_final")]
    outs += [Value(v.name) for v in node.outputs[k:]]
    loop = Node(
        "Loop",
        [parts.trip, parts.cond, *inits, length0],
        attributes={"body": Attr("body", AttributeProto.GRAPH, body)},
        outputs=outs,
        name=node.name,
    )
    loop.doc_string = node.doc_string
    node.name = ""  # the padded loop keeps the name (a host-loop mark is keyed by it)
    g.insert_before(node, loop)
    length = loop.outputs[k]
    length.type = TensorType(7, ())
    for j, old in enumerate(node.outputs[:k]):
        new = loop.outputs[j]
        if j in growing:
            new.type = types[j]
            end = em.node("Reshape", [length, em.const(np.array([1], np.int64), "pad_one")])
            zero = em.const(np.array([0], np.int64), "pad_zero")
            axes = em.const(np.array([growing[j]], np.int64), "pad_axis")
            new = em.node("Slice", [new, zero, end, axes], f"{old.name}_unpadded")
        new.type = old.type
        old.replace_all_uses_with(new)
    for old, new in zip(node.outputs[k:], loop.outputs[k + 1 :]):
        new.type = old.type
        old.replace_all_uses_with(new)
    g.remove(node)
