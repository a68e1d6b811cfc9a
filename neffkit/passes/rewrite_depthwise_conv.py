"""``dwconv``: depthwise convolutions rewritten into the form the target runs fastest.

A depthwise ``Conv`` (``group`` = input channels C, weight ``[C*M, 1, *kernel]``) becomes one
of three equivalent forms; ``dwconv{strategy=shift-mac}``, 1-D, kernel 3, pads 1::

    y = Conv <group = C, pads = [1, 1]> (x, w, b)
        ->
    p = Pad (x, [0, 0, 1, 0, 0, 1])
    t0 = Slice (p, [0], [L], [2], [1])        m0 = Mul (t0, w[:, 0])
    t1 = Slice (p, [1], [L + 1], [2], [1])    m1 = Mul (t1, w[:, 1])
    t2 = Slice (p, [2], [L + 2], [2], [1])    m2 = Mul (t2, w[:, 2])
    y = Sum (m0, m1, m2, b)

- ``shift-mac``: pad, then the sum of one strided slice per tap times its per-channel weight
  (elementwise only: no patch matrix);
- ``dense``: one group-1 Conv with a block-diagonal weight (C times the weight and the
  arithmetic; only up to ``dense-max-channels``);
- ``unfold-matmul``: every patch gathered once (``[N, C, out, taps]``), then one batched
  per-channel MatMul;
- ``auto`` (the default): per node, the original and each form are timed on the target
  backend (``PassContext.target``) for that node's shapes, and the fastest is kept; the
  original stays unless a form beats it by ``min-gain``. Timings are cached on disk
  (``$NEFFKIT_CACHE_DIR``, else the user's cache folder), keyed by shapes, attributes, dtype,
  target and backend version.

Weights (and bias) must be constants; a depthwise Conv whose input or output has a dim that
is not static (a symbolic batch included), a kernel of over 64 taps (``shift-mac``) or an
``unfold-matmul`` patch index over ``max_constant_bytes`` is left alone, logged as a warning
naming the node, and counted; ``auto`` times only the forms that would be accepted. A target
that cannot run here or compiles in ``prepare`` (``neuron``) is not measured: ``auto`` leaves
the Convs and warns once; a measurement in which nothing ran is never cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from neffkit._gc import paused_gc
from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph, Node
from neffkit.passes import _dwconv_measure as measuring
from neffkit.passes._dwconv_forms import (
    BUILDERS,
    FORMS,
    Depthwise,
    NotDepthwise,
    RewriteEmit,
    analyze,
    dense_bytes,
    patch_index_bytes,
    tap_count,
)
from neffkit.passes.base import Pass, PassContext, PassResult, option
from neffkit.passes.registry import register
from neffkit.passes.rewrite.driver import drive
from neffkit.passes.rewrite.registry import RuleSet
from neffkit.passes.rewrite.rewriter import Rewriter

log = logging.getLogger("neffkit.passes")

STRATEGIES = ("auto", *FORMS)
#: ``shift-mac`` emits a Slice and a Mul per tap: a larger kernel is left alone
MAX_SHIFT_MAC_TAPS = 64
DWCONV_RULES = RuleSet("dwconv")
_MEMO = "dwconv"


@dataclass
class _State:
    """What the rules of one run share: the pass's options and the counters."""

    options: RewriteDepthwiseConv
    counts: dict[str, int] = field(default_factory=dict)
    reported: set[Node] = field(default_factory=set)
    decided: dict[str, str] = field(default_factory=dict)
    #: why the target cannot be measured, once known (``auto`` then measures nothing more)
    unmeasurable: str | None = None

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


def _state(rw: Rewriter) -> _State:
    state = rw.memo.get(_MEMO)
    if not isinstance(state, _State):
        raise NeffkitError("dwconv rules run only through the dwconv pass")
    return state


def _match(node: Node, rw: Rewriter) -> Depthwise | None:
    """The depthwise conv ``node`` is, or None; a depthwise one left alone is reported once."""
    state = _state(rw)
    try:
        return analyze(node, rw)
    except NotDepthwise as e:
        if node not in state.reported:
            state.reported.add(node)
            state.count(e.stat)
            log.warning("dwconv: Conv '%s' left as it is: %s", node.name or "?", e)
        return None


def _rewrite(node: Node, rw: Rewriter, dw: Depthwise, form: str) -> None:
    """Replaces ``node``'s output by the same conv in ``form``; the Conv goes once unread."""
    x = node.inputs[0]
    assert x is not None  # analyze() checked it
    y = BUILDERS[form](dw, x, RewriteEmit(rw, node))
    old = node.outputs[0]
    if y.type is None:
        y.type = old.type if old.shape is not None else dw.out_type()
    rw.replace(old, y)
    _state(rw).count(form.replace("-", "_"))


def _refuse(node: Node, rw: Rewriter, stat: str, reason: str | None = None) -> bool:
    """Leaves ``node`` as it is: counted under ``stat`` once, with a warning when ``reason``."""
    state = _state(rw)
    if node not in state.reported:
        state.reported.add(node)
        state.count(stat)
        if reason:
            log.warning("dwconv: Conv '%s' left as it is: %s", node.name or "?", reason)
    return False


def _dense_fits(dw: Depthwise, rw: Rewriter) -> bool:
    limit = _state(rw).options.dense_max_channels
    return dw.channels <= limit and dense_bytes(dw) <= rw.ctx.max_constant_bytes


def _refusal(dw: Depthwise, form: str, rw: Rewriter) -> tuple[str, str] | None:
    """``(stat, reason)`` when ``form`` would make ``dw`` too large a graph, else None."""
    if form == "shift-mac" and tap_count(dw) > MAX_SHIFT_MAC_TAPS:
        why = f"{tap_count(dw)} taps: shift-mac takes at most {MAX_SHIFT_MAC_TAPS}"
        return "left_too_many_taps", why
    if form == "unfold-matmul" and patch_index_bytes(dw) > rw.ctx.max_constant_bytes:
        why = (
            f"unfold-matmul's patch index would take {patch_index_bytes(dw)} bytes, over "
            f"max_constant_bytes ({rw.ctx.max_constant_bytes})"
        )
        return "left_index_too_large", why
    return None


def _by_form(node: Node, rw: Rewriter, form: str) -> bool:
    """``node`` rewritten into ``form`` unless it is not a depthwise conv or would be too large."""
    dw = _match(node, rw)
    if dw is None:
        return False
    refused = _refusal(dw, form, rw)
    if refused is not None:
        return _refuse(node, rw, *refused)
    _rewrite(node, rw, dw, form)
    return True


@DWCONV_RULES.rule("Conv")
def to_shift_mac(node: Node, rw: Rewriter) -> bool:
    """Conv(x, w){group=C} -> Sum_k(Slice_k(Pad(x)) * w_k) + b"""
    return _by_form(node, rw, "shift-mac")


@DWCONV_RULES.rule("Conv")
def to_dense(node: Node, rw: Rewriter) -> bool:
    """Conv(x, w){group=C} -> Conv(x, blockdiag(w)){group=1}"""
    dw = _match(node, rw)
    if dw is None:
        return False
    if not _dense_fits(dw, rw):
        return _refuse(node, rw, "left_too_many_channels")
    _rewrite(node, rw, dw, "dense")
    return True


@DWCONV_RULES.rule("Conv")
def to_unfold_matmul(node: Node, rw: Rewriter) -> bool:
    """Conv(x, w){group=C} -> MatMul(Gather(Pad(x), patches), w[C, taps, M]) + b"""
    return _by_form(node, rw, "unfold-matmul")


@DWCONV_RULES.rule("Conv")
def by_measurement(node: Node, rw: Rewriter) -> bool:
    """Conv(x, w){group=C} -> the fastest of Conv, shift-mac, dense, unfold-matmul on the target"""
    dw = _match(node, rw)
    if dw is None:
        return False
    state = _state(rw)
    forms = ["original"]
    forms += [f for f in ("shift-mac", "unfold-matmul") if _refusal(dw, f, rw) is None]
    if _dense_fits(dw, rw):
        forms.append("dense")
    if len(forms) == 1:
        why = "; ".join(r[1] for f in ("shift-mac", "unfold-matmul") if (r := _refusal(dw, f, rw)))
        return _refuse(node, rw, "left_too_large", f"no form fits ({why})")
    choice = _decide(dw, forms, rw, state)
    if choice is None or choice == "original":
        return _refuse(node, rw, "kept_original" if choice else "left_unmeasured")
    _rewrite(node, rw, dw, choice)
    return True


def _unmeasurable(rw: Rewriter, state: _State, why: str) -> None:
    """Marks the target as not measurable; the first time, a warning naming it says why."""
    if state.unmeasurable is None:
        state.unmeasurable = why
        log.warning("dwconv: cannot measure on target '%s' (%s); Convs left alone",
                    rw.ctx.target, why)  # fmt: skip


def _decide(dw: Depthwise, forms: list[str], rw: Rewriter, state: _State) -> str | None:
    """The form ``auto`` keeps for ``dw`` (None: the target cannot be measured)."""
    if state.unmeasurable is not None:
        return None
    options = state.options
    device = rw.ctx.options.get("device")
    try:
        backend = measuring.backend_key(rw.ctx.target, device)
    except NeffkitError as e:
        _unmeasurable(rw, state, str(e))
        return None
    why = measuring.UNMEASURABLE.get(backend["backend"])
    if why is not None:
        _unmeasurable(rw, state, why)
        return None
    key: dict[str, Any] = {"version": measuring.CACHE_VERSION, "conv": dw.key(), **backend,
                           "candidates": sorted(forms)}  # fmt: skip
    memo_key = repr(sorted(key.items()))
    if memo_key in state.decided:
        return state.decided[memo_key]
    seconds = measuring.load(key) if options.cache else None
    if seconds is not None and measuring.all_failed(seconds):
        seconds = None  # an entry of an older version: never trusted
    if seconds is None:
        seconds = measuring.measure(dw, forms, rw.ctx.target, device, rw.opset, options.budget)
        state.count("measured")
        if measuring.all_failed(seconds):
            _unmeasurable(rw, state, "no candidate, the original included, ran there")
            return None
        if options.cache:
            measuring.store(key, seconds)
    else:
        state.count("cache_hits")
    choice = measuring.choose(seconds, options.min_gain)
    log.info("dwconv: %s: %s -> %s", dw.key(), seconds, choice)
    state.decided[memo_key] = choice
    return choice


_RULE_OF = {
    "shift-mac": "to_shift_mac",
    "dense": "to_dense",
    "unfold-matmul": "to_unfold_matmul",
    "auto": "by_measurement",
}


@register
@dataclass(frozen=True)
class RewriteDepthwiseConv(Pass):
    """Rewrites depthwise Convs into shift-mac, dense or unfold-matmul, or the fastest."""

    name: ClassVar[str] = "dwconv"
    description: ClassVar[str] = (
        "depthwise Conv -> shift-mac / dense / unfold-matmul, or per node the fastest on the "
        "target (auto, measured and cached)"
    )
    strategy: str = option("auto", "auto, shift-mac, dense or unfold-matmul")
    dense_max_channels: int = option(64, "dense only for at most this many channels")
    budget: float = option(0.15, "auto: seconds of timed rounds per conv shape")
    min_gain: float = option(0.02, "auto: a form must beat the original by this fraction")
    cache: bool = option(True, "auto: keep timings in the cache folder ($NEFFKIT_CACHE_DIR)")
    #: one rule per strategy; ``neffkit passes`` lists them
    rules: ClassVar[RuleSet] = DWCONV_RULES

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strategy not in STRATEGIES:
            raise NeffkitError(
                f"dwconv: unknown strategy '{self.strategy}'; known: {', '.join(STRATEGIES)}"
            )
        if self.min_gain >= 1:
            raise NeffkitError(f"dwconv: min-gain must be below 1, got {self.min_gain}")
        # check_option (above) refuses negative and non-finite numbers; these must also be > 0
        if self.budget <= 0:
            raise NeffkitError(
                f"option 'budget' of pass 'dwconv' takes a positive number, got {self.budget!r}"
            )
        if self.dense_max_channels < 1:
            raise NeffkitError(
                "option 'dense-max-channels' of pass 'dwconv' takes an integer of at least 1, "
                f"got {self.dense_max_channels!r}"
            )

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        rules = DWCONV_RULES.table(n for s, n in _RULE_OF.items() if s != self.strategy)
        rw = Rewriter(graph, ctx)
        state = _State(self)
        rw.memo[_MEMO] = state
        with paused_gc():
            drive(graph, rw, rules, 4)
        stats = {k: v for k, v in sorted(state.counts.items()) if v}
        rewritten = sum(stats.get(f.replace("-", "_"), 0) for f in FORMS)
        if rw.dead_nodes:
            stats["dead_nodes_removed"] = rw.dead_nodes
        return PassResult(rewritten > 0, stats)
