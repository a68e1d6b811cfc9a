"""The copy rule of ``fold``: folding must not store a copy of a weight that stays in the model.

A folded value is stored as a new constant, and the constants it was computed from are freed
only if nothing else reads them. When a weight stays live (a tied embedding read by ``Gather``
and, through ``Transpose``, by the LM head's ``MatMul``), storing ``Transpose(wte)`` adds its
bytes and frees none: the model carries the weight twice. The rule compares the bytes each
fold stores with the bytes of the weights it frees:

- a *weight* is a constant (initializer or ``Constant`` node) of more than ``FREE_BYTES``;
  smaller constants, and values built only from them (shape arithmetic, scalars, the
  ``ConstantOfShape`` weights of the ONNX ``light_*`` models), are not counted;
- a stored value over ``FREE_BYTES`` that *replaces* its weights (all of them become dead,
  and no other stored value was built from them) is stored whatever its size: it is not a
  copy (a value larger than what it is built from is ``max-growth``'s business, as for the
  token-type ``Gather`` of a BERT export, 6 KB of weight into 393 KB);
- otherwise it must be paid for by the bytes its dead weights have left: each weight's bytes
  pay once (two folded copies of one weight cost one of them, two halves of a split weight
  fit), and a weight that stays live pays nothing.

Liveness depends on what else folds, so the decision is repeated with the weights found live
until nothing changes (refusing a fold only makes more weights live, so this ends).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from neffkit.ir.core import Node, Value
from neffkit.ir.tensor import Tensor

#: Values up to this size are always stored (they are cheaper than the ops they replace), and
#: constants up to this size are not weights.
FREE_BYTES = 1024
#: Weights tracked per value; a value built from more is checked against the first ones only,
#: which can only refuse more (the bytes it may spend are undercounted), never less.
_MAX_WEIGHTS = 256


class WeightLedger:
    """Which weights each candidate value is computed from, and what storing it may spend."""

    def __init__(
        self, nodes: Iterable[Node], sources: Mapping[Value, Tensor], direct: Collection[Node]
    ) -> None:
        self.sources = sources
        #: the weights a computed value is built from, in first-seen order
        self.weights: dict[Value, tuple[Value, ...]] = {}
        for n in nodes:  # topological order: inputs are traced before their readers
            if n in direct:
                continue
            found: dict[Value, None] = {}
            for v in n.inputs:
                if v is None:
                    continue
                t = sources.get(v)
                if t is not None:
                    if t.nbytes > FREE_BYTES:
                        found[v] = None
                else:
                    found.update(dict.fromkeys(self.weights.get(v, ())))
            if found:
                traced = tuple(found)[:_MAX_WEIGHTS]
                for v in n.outputs:
                    self.weights[v] = traced
        self.all_weights: dict[Value, None] = {}
        for ws in self.weights.values():
            self.all_weights.update(dict.fromkeys(ws))

    def live_outside(self, cand: Collection[Node]) -> set[Value]:
        """Weights that stay live whatever folds: graph outputs, or read by a non-candidate."""
        return self.live_after(cand)

    def live_after(self, folded: Collection[Node]) -> set[Value]:
        """Weights that stay live when exactly ``folded`` go."""
        return {
            w
            for w in self.all_weights
            if w.is_graph_output or any(u not in folded for u, _ in w.iter_uses())
        }

    def may_store(self, v: Value, size: int, live: Collection[Value]) -> bool:
        """Whether ``v`` could be stored, ignoring what other values spend."""
        ws = self.weights.get(v)
        if size <= FREE_BYTES or not ws or not any(w in live for w in ws):
            return True
        return size <= sum(self.sources[w].nbytes for w in ws if w not in live)

    def spend(
        self,
        v: Value,
        size: int,
        live: Collection[Value],
        budget: dict[Value, int],
        spent: dict[Value, int],
    ) -> bool:
        """Pays ``size`` bytes for storing ``v`` from its dead weights' remaining bytes.

        ``budget`` holds what earlier decisions left of each weight (its size when absent);
        this decision's payments go to ``spent``, for the caller to commit or drop. A value
        that replaces its weights (all dead, none spent yet) is stored even when they cannot
        pay for all of it. False when the dead weights cannot pay: ``v`` would be a copy.
        """
        ws = self.weights.get(v)
        if size <= FREE_BYTES or not ws:
            return True
        # replacing its weights: stored even when larger than they are (max-growth's case)
        fresh = all(w not in live and w not in budget and w not in spent for w in ws)
        remaining = size
        for w in ws:
            if w in live:
                continue
            left = budget.get(w, self.sources[w].nbytes) - spent.get(w, 0)
            take = min(left, remaining)
            if take > 0:
                spent[w] = spent.get(w, 0) + take
                remaining -= take
                if remaining == 0:
                    break
        return fresh or remaining == 0
