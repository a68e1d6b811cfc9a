"""``fold``: computes what only depends on constants and stores it as initializers.

Before / after::

    w = [1, 2]  b = [3, 4]  (initializers)      wb = [4, 6]  (initializer)
    wb = Add(w, b)                       ->      y = Mul(x, wb)
    y = Mul(x, wb)
    s = Shape(x)     (x: float[2, 3])            r = Reshape(z, s)  (s = [2, 3] initializer)
    r = Reshape(z, s)

Constants are initializers (not IR v3 inputs the caller may override, when
``PassContext.keep_overridable_inputs`` is set, nor subgraph inputs) and ``Constant`` nodes;
``Shape`` / ``Size`` of a value whose (sliced) shape is static are constants too, whatever the
value. A node folds when it is a pure ONNX-domain op (not random) without subgraphs whose
inputs are all constants or folded. Nodes inside ``Loop`` / ``If`` bodies fold as well (outer
constants are visible there). The folded values that something else still reads (a node that
does not fold, a graph output) become initializers under their own name, in the graph that
defined them; the nodes that computed them, and the ``Constant`` nodes only they read, are
removed here. Initializers left unused, and nodes that were dead before (they still count as
readers), are left to ``dce``.

All folded values are computed together in one onnxruntime session per round (see
``_fold_eval``; a second round is needed only where a size cannot be known in advance), not one
session per node.

Size policy:

- No value larger than the cap is created *or computed*: the cap is the ``max-bytes`` option,
  or ``PassContext.max_constant_bytes`` (64 MiB) when that is 0. Sizes are estimated before
  evaluation from the known types and from onnx shape inference on the constant sub-DAG (which
  sees ``ConstantOfShape``'s shape input and the like); a node whose size stays unknown is
  evaluated only when its inputs total at most 1 MiB, and every result is checked again.
- ``max-growth`` (0 = off): a value is not stored when its bytes exceed ``max-growth`` times
  the bytes of the constants it is built from (summed over its inputs, so a constant shared
  along two paths counts twice). This keeps weights that a model builds at run time from a
  few numbers as they are (``ConstantOfShape`` in the ONNX ``light_*`` models, measured: 0.3-24
  KB of constants turning into 5-164 MB); the small values they are built from still fold.

- No copies of live weights (unless ``allow-live-copies``): a value over 1 KiB computed from
  constants over 1 KiB is stored only when it replaces them (they all become dead) or the
  bytes they leave pay for it (see ``_fold_copies``). ``Transpose(wte)`` of a tied embedding
  that ``Gather`` still reads would be a second copy of ``wte`` (a GPT-2 export's constants
  grew 39% that way); it stays a ``Transpose`` instead. Values up to 1 KiB always fold.

A value not stored for any of these reasons keeps its node, and the values that node reads
fold instead. Stats: ``nodes_folded``, ``constants_created``, ``bytes_created``,
``skipped_too_large``, ``skipped_live_copy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx

from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.serde import GRAPH_TYPES
from neffkit.ir.tensor import Tensor
from neffkit.ir.types import TensorType
from neffkit.passes._fold_copies import WeightLedger
from neffkit.passes._fold_eval import (
    INLINE_BYTES,
    array_type,
    constant_tensor,
    evaluate,
    infer_sizes,
    nbytes_of,
    shape_fact,
)
from neffkit.passes.base import Pass, PassContext, PassResult, is_pure, option
from neffkit.passes.registry import register

#: A node whose output size stays unknown is evaluated only with inputs this small.
_SMALL_INPUTS = 1024 * 1024
#: Intermediate values up to this size are kept after evaluation, so that a node refused by
#: the size policy finds its inputs ready to be stored in its place.
_KEEP_INTERMEDIATE = 1024 * 1024
_MAX_ROUNDS = 4
#: Decisions repeated at most this often while refused copies make more weights live.
_MAX_DECISIONS = 16


@register
@dataclass(frozen=True)
class FoldConstants(Pass):
    """Replaces values computed from constants (and static shapes) by initializers."""

    name: ClassVar[str] = "fold"
    description: ClassVar[str] = (
        "constant folding (shapes included) in one onnxruntime run, subgraphs too, size-capped"
    )
    max_bytes: int = option(0, "largest constant to create, in bytes (0: max_constant_bytes)")
    max_growth: float = option(
        0.0, "refuse a constant over this many times the constants it comes from (0: off)"
    )
    allow_live_copies: bool = option(
        False, "store folded copies of weights (> 1 KiB) that stay live (default: refuse)"
    )

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        cap = self.max_bytes if self.max_bytes > 0 else ctx.max_constant_bytes
        return _Folder(graph, ctx, cap, self.max_growth, self.allow_live_copies).run()


class _Folder:
    """One run of the pass: classify, evaluate, decide, rewrite."""

    def __init__(
        self, graph: Graph, ctx: PassContext, cap: int, growth: float, copies: bool
    ) -> None:
        self.graph = graph
        self.ctx = ctx
        self.cap = cap
        self.growth = growth
        self.copies = copies
        self.opset = graph.opset("") or onnx.defs.onnx_opset_version()
        #: initializers and Constant node values (tensors decoded only when evaluated)
        self.sources: dict[Value, Tensor] = {}
        #: arrays of computed values (and of sources, once decoded for an evaluation)
        self.arrays: dict[Value, np.ndarray] = {}
        #: nodes that fold, topologically ordered over all graphs (outer graphs first)
        self.nodes: list[Node] = []
        #: Shape / Size nodes answered from static shapes, without evaluation
        self.direct: set[Node] = set()
        #: nodes whose outputs were computed
        self.done: set[Node] = set()
        self.cand: set[Node] = set()
        self.src_bytes: dict[Value, int] = {}
        self.skipped = 0
        #: weights each value comes from (None: live copies allowed)
        self.ledger: WeightLedger | None = None
        #: weights read by nodes that do not fold in any case
        self.live: set[Value] = set()
        self.skipped_copies = 0

    def run(self) -> PassResult:
        self._classify()
        self._keep_live()
        if not self.nodes:
            return PassResult(False, {})
        if self.growth > 0:
            self._count_source_bytes()
        if not self.copies:
            self.ledger = WeightLedger(self.nodes, self.sources, self.direct)
            self.live = self.ledger.live_outside(self.cand)
        self._evaluate()
        folded, stored = self._decide()
        stats = self._rewrite(folded, stored)
        if self.skipped:
            stats["skipped_too_large"] = self.skipped
        if self.skipped_copies:
            stats["skipped_live_copy"] = self.skipped_copies
        return PassResult(bool(folded), stats)

    # -- what folds ---------------------------------------------------------------------------

    def _classify(self) -> None:
        root = self.graph
        sources = self.sources
        folding: set[Value] = set()
        # Outer graphs come before their subgraphs, and inner nodes read only outer values
        # defined before them, so this order is topological for the flat DAG of all graphs.
        for g in list(root.all_graphs()):
            overridable = (
                set(g.inputs) if (self.ctx.keep_overridable_inputs or g is not root) else ()
            )
            for v in g.initializers.values():
                if v.const is not None and v not in overridable:
                    sources[v] = v.const
            for n in g:
                if n.domain != "":
                    continue
                op = n.op_type
                if op == "Constant":
                    t = constant_tensor(n)
                    if t is not None:
                        sources[n.outputs[0]] = t
                    continue
                if op in ("Shape", "Size"):
                    fact = shape_fact(n)
                    if fact is not None:
                        # Shape(x) with x: float[2, 3] -> [2, 3]
                        self.arrays[n.outputs[0]] = fact
                        self.direct.add(n)
                        self.nodes.append(n)
                        folding.add(n.outputs[0])
                        continue
                if not _foldable_op(n):
                    continue
                if all(v is None or v in sources or v in folding for v in n.inputs):
                    self.nodes.append(n)
                    folding.update(n.outputs)

    def _keep_live(self) -> None:
        """Drops candidates whose results nothing outside the candidates ever reads."""
        cand = set(self.nodes)
        live: set[Node] = set()
        for n in reversed(self.nodes):
            for v in n.outputs:
                if v.is_graph_output or any(u not in cand or u in live for u, _ in v.iter_uses()):
                    live.add(n)
                    break
        self.nodes = [n for n in self.nodes if n in live]
        self.direct &= live
        self.cand = live

    def _count_source_bytes(self) -> None:
        """Bytes of the constants each value is built from (for ``max-growth``)."""
        sb = self.src_bytes
        for n in self.nodes:
            if n in self.direct:
                total = int(self.arrays[n.outputs[0]].nbytes)
            else:
                total = 0
                for v in dict.fromkeys(n.inputs):
                    if v is None:
                        continue
                    t = self.sources.get(v)
                    total += t.nbytes if t is not None else sb.get(v, 0)
            for v in n.outputs:
                sb[v] = total

    def _growth_ok(self, v: Value, size: int) -> bool:
        return self.growth <= 0 or size <= self.growth * self.src_bytes.get(v, 0)

    # -- evaluation ---------------------------------------------------------------------------

    def _evaluate(self) -> None:
        """Computes the candidates in rounds of one onnxruntime run each (usually one round)."""
        self.done = set(self.direct)
        pending = [n for n in self.nodes if n not in self.direct]
        lost: set[Value] = set()  # values that will not be computed
        for _ in range(_MAX_ROUNDS):
            if not pending:
                break
            sizes = self._sizes(pending)
            ready: list[Node] = []
            ready_out: set[Value] = set()
            later: list[Node] = []
            for n in pending:
                state = self._readiness(n, sizes, ready_out, lost)
                if state == "ready":
                    ready.append(n)
                    ready_out.update(n.outputs)
                elif state == "later":
                    later.append(n)
                else:
                    lost.update(n.outputs)
            if not ready:
                break
            wanted = self._wanted(ready, sizes)
            known = self._arrays_for(ready)
            got = evaluate(ready, known, wanted, self.opset)
            for v in wanted:
                arr = got.get(v)
                if arr is None or not self._acceptable(v, arr):
                    lost.add(v)
                    continue
                self.arrays[v] = arr
            for n in ready:
                if all(v not in lost for v in n.outputs):
                    self.done.add(n)
                else:
                    lost.update(n.outputs)
            pending = later

    def _sizes(self, pending: Sequence[Node]) -> dict[Value, int]:
        sizes: dict[Value, int] = {}
        unknown = False
        for n in pending:
            for v in n.outputs:
                size = nbytes_of(v.dtype, v.shape)
                if size is None:
                    unknown = True
                else:
                    sizes[v] = size
        if unknown:
            known = self._inputs_for_inference(pending)
            for v, size in infer_sizes(pending, known, self.opset).items():
                sizes.setdefault(v, size)
        return sizes

    def _readiness(
        self, n: Node, sizes: dict[Value, int], ready_out: set[Value], lost: set[Value]
    ) -> str:
        """``ready`` to evaluate now, ``later`` (an input comes later), or ``no``."""
        waiting = False
        in_bytes = 0
        for v in n.inputs:
            if v is None:
                continue
            if v in lost:
                return "no"
            if v in ready_out:
                waiting = True
                in_bytes += sizes.get(v, _SMALL_INPUTS + 1)
            elif v in self.arrays:
                in_bytes += int(self.arrays[v].nbytes)
            elif v in self.sources:
                in_bytes += self.sources[v].nbytes
            else:
                return "later"  # computed by a node deferred to a later round
        for v in n.outputs:
            if not (v.name or v.is_used):
                continue  # an omitted optional output is not computed
            size = sizes.get(v)
            if size is None:
                if waiting:
                    return "later"  # its inputs, once computed, tell the size
                if in_bytes > _SMALL_INPUTS:
                    self.skipped += 1  # big inputs, and no way to bound the result
                    return "no"
                continue
            if size > self.cap:
                # a 1 GiB ConstantOfShape is never computed, whatever reads it
                self.skipped += 1
                return "no"
            if not self._growth_ok(v, size) and self._read_outside(v):
                self.skipped += 1
                return "no"
            if self._live_copy(v, size) and self._read_outside(v):
                # Transpose(wte) beside a live wte: not even computed
                self.skipped_copies += 1
                return "no"
        return "ready"

    def _live_copy(self, v: Value, size: int) -> bool:
        """True when ``v`` copies weights that nodes kept in any case still read."""
        ledger = self.ledger
        return ledger is not None and not ledger.may_store(v, size, self.live)

    def _read_outside(self, v: Value) -> bool:
        """True when ``v`` would have to be stored: a graph output or read by a kept node."""
        if v.is_graph_output:
            return True
        cand = self.cand
        return any(u not in cand for u, _ in v.iter_uses())

    def _wanted(self, ready: list[Node], sizes: dict[Value, int]) -> list[Value]:
        """The values to fetch: read outside this round, or small enough to keep anyway."""
        ready_set = set(ready)
        wanted = []
        for n in ready:
            for v in n.outputs:
                if not v.is_used:
                    continue
                outside = v.is_graph_output or any(u not in ready_set for u, _ in v.iter_uses())
                if outside or sizes.get(v, _KEEP_INTERMEDIATE + 1) <= _KEEP_INTERMEDIATE:
                    wanted.append(v)
        return wanted

    def _arrays_for(self, nodes: Sequence[Node]) -> dict[Value, np.ndarray]:
        """Arrays of the constants ``nodes`` read (decoding sources on first use)."""
        out: dict[Value, np.ndarray] = {}
        for n in nodes:
            for v in n.inputs:
                if v is None or v in out:
                    continue
                arr = self.arrays.get(v)
                if arr is None:
                    t = self.sources.get(v)
                    if t is None:
                        continue
                    arr = self.arrays[v] = t.numpy()
                out[v] = arr
        return out

    def _inputs_for_inference(self, nodes: Sequence[Node]) -> dict[Value, np.ndarray | TensorType]:
        """Values of small constants, only the types of large ones (left undecoded)."""
        out: dict[Value, np.ndarray | TensorType] = {}
        for n in nodes:
            for v in n.inputs:
                if v is None or v in out:
                    continue
                arr = self.arrays.get(v)
                if arr is not None:
                    out[v] = arr
                    continue
                t = self.sources.get(v)
                if t is None:
                    continue
                if t.nbytes <= INLINE_BYTES:
                    out[v] = self.arrays[v] = t.numpy()
                else:
                    out[v] = TensorType(t.dtype, t.shape)
        return out

    def _acceptable(self, v: Value, arr: np.ndarray) -> bool:
        if arr.dtype == object and not all(isinstance(s, str | bytes) for s in arr.flat):
            return False
        if v.dtype and array_type(arr) != v.dtype:
            return False  # keep dtypes exact
        if arr.nbytes > self.cap:
            self.skipped += 1
            return False
        return True

    # -- decision and rewrite -----------------------------------------------------------------

    def _decide(self) -> tuple[set[Node], list[Value]]:
        """Which computed nodes go, and which of their values must be stored for others.

        Refusing a copy of a weight keeps a node that reads the weight, which keeps that weight
        live for the other decisions: repeated with the live weights found until none is new.
        """
        live = set(self.live)
        for _ in range(_MAX_DECISIONS):
            folded, stored, skipped, copies = self._decide_once(live)
            if self.ledger is None:
                break
            more = self.ledger.live_after(folded) - live
            if not more:
                break
            live |= more
        self.skipped += skipped
        self.skipped_copies += copies
        return folded, stored

    def _decide_once(self, live: set[Value]) -> tuple[set[Node], list[Value], int, int]:
        folded: set[Node] = set()
        stored: list[Value] = []
        skipped = copies = 0
        budget: dict[Value, int] = {}  # bytes of each dead weight not yet paid for a copy
        ledger = self.ledger
        for n in reversed(self.nodes):
            if n not in self.done:
                continue
            needed = [
                v
                for v in n.outputs
                if v.is_graph_output or any(u not in folded for u, _ in v.iter_uses())
            ]
            ok = True
            spent: dict[Value, int] = {}
            for v in needed:
                arr = self.arrays.get(v)
                if arr is None:
                    ok = False
                    break
                size = int(arr.nbytes)
                if size > self.cap or not self._growth_ok(v, size):
                    skipped += 1
                    ok = False
                    break
                if ledger is not None and not ledger.spend(v, size, live, budget, spent):
                    copies += 1
                    ok = False
                    break
            if ok:
                for w, paid in spent.items():
                    budget[w] = budget.get(w, self.sources[w].nbytes) - paid
                folded.add(n)
                stored.extend(reversed(needed))
        stored.reverse()  # graph order, so the new initializers read in order
        return folded, stored, skipped, copies

    def _rewrite(self, folded: set[Node], stored: list[Value]) -> dict[str, int]:
        created = 0
        for v in stored:
            arr = self.arrays[v]
            new = Value(v.name, const=Tensor(arr, v.name))
            owner = v.graph
            assert owner is not None  # a computed value of a node still in its graph
            owner.add_initializer(new)
            # y = Add(w, b) -> y = [...] (initializer)
            v.replace_all_uses_with(new)
            created += int(arr.nbytes)
        if stored:
            _allow_plain_initializers(self.graph)
        touched: dict[Value, None] = {}
        for n in reversed(self.nodes):
            if n not in folded:
                continue
            for inp in n.inputs:
                if inp is not None and inp.producer is not None and inp in self.sources:
                    touched[inp] = None
            assert n.graph is not None  # folded nodes are still in their graph
            n.graph.remove(n)
        for v in touched:
            _drop_if_unused(v)
        stats = {}
        if folded:
            stats["nodes_folded"] = len(folded)
        if stored:
            stats["constants_created"] = len(stored)
            stats["bytes_created"] = created
        return stats


def _allow_plain_initializers(root: Graph) -> None:
    """Moves an IR v3 model to IR v4, where an initializer need not be a graph input.

    IR v3 requires every initializer to be listed as an input as well (the checker and
    onnxruntime enforce it); listing the new constants as inputs would widen the interface.
    IR v4 only drops that requirement, so the model means the same.
    """
    ir = root.meta.ir_version
    if ir is None:
        ir = 3 if (root.opset("") or 1) < 10 else 4  # what the exporter picks without one
    if ir < 4:
        root.meta.ir_version = 4


def _drop_if_unused(v: Value) -> None:
    """Removes a Constant node that the folded nodes were the last to read.

    Initializers left unused are ``dce``'s to remove (``Graph.remove_initializer`` scans the
    table, so removing many here would be quadratic).
    """
    p = v.producer
    if p is not None and p.graph is not None and not v.is_used:
        p.graph.remove(p)


def _foldable_op(n: Node) -> bool:
    """A pure op with no subgraph and no attribute that refers to a function's parameter."""
    if not is_pure(n):
        return False
    for a in n.attributes.values():
        if a.ref or a.type in GRAPH_TYPES:
            return False
    return True
