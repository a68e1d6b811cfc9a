"""The tuned boundaries next to the host loop and the full unroll, and the pipeline to use."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from neffkit.optimize import DEFAULT_PIPELINES
from neffkit.tune.costs import CostModel, padded
from neffkit.tune.plan import Objective, Plan, choose_boundaries, evaluate, quantile

__all__ = ["TuneResult", "format_result", "pipeline_text", "tune"]


@dataclass(frozen=True)
class TuneResult:
    """Boundaries chosen for ``objective`` and the two extremes they are weighed against."""

    costs: CostModel
    objective: Objective
    lengths: tuple[int, ...]
    chosen: Plan
    host_loop: Plan
    full_unroll: Plan
    pipeline: str
    padded_host_loop: Plan | None = None

    def variants(self) -> list[tuple[str, Plan]]:
        """(name, plan) of the tuned cut and the forms it is weighed against, as printed."""
        out = [
            ("tuned", self.chosen),
            ("host loop (a call a step)", self.host_loop),
            ("full unroll (one call)", self.full_unroll),
        ]
        if self.padded_host_loop is not None:
            out.append(("padded host loop (steps at max length)", self.padded_host_loop))
        return out


def tune(
    costs: CostModel,
    lengths: Sequence[int],
    objective: Objective | None = None,
    target: str = "torch",
    *,
    max_partitions: int | None = None,
) -> TuneResult:
    """The best boundaries under ``costs`` for ``lengths`` (at most ``max_partitions``
    partitions), the host loop, the full unroll and the padded host loop (every step priced
    as the last) priced alike, and the pipeline text for ``target`` that builds the chosen
    form."""
    objective = objective or Objective()
    big_t = costs.max_len
    chosen = choose_boundaries(costs, lengths, objective, max_partitions=max_partitions)
    return TuneResult(
        costs=costs,
        objective=objective,
        lengths=tuple(lengths),
        chosen=chosen,
        host_loop=evaluate(costs, range(1, big_t + 1), lengths),
        full_unroll=evaluate(costs, [big_t], lengths),
        pipeline=pipeline_text(chosen.boundaries, target),
        padded_host_loop=evaluate(padded(costs), range(1, big_t + 1), lengths),
    )


def pipeline_text(boundaries: Sequence[int], target: str = "torch") -> str:
    """The pass pipeline that builds ``boundaries``, then the target's default pipeline.

    One partition is ``unroll{max-trip=T}``; one step a partition is the host loop, ``split``;
    anything else is ``partition-unroll{boundaries=a+b+...+T}``.
    """
    bounds = list(boundaries)
    rest = DEFAULT_PIPELINES.get(target, DEFAULT_PIPELINES["torch"])
    if len(bounds) == 1:
        first = f"unroll{{max-trip={bounds[0]}}}"
    elif bounds == list(range(1, bounds[-1] + 1)):
        first = "split"
    else:
        first = "partition-unroll{boundaries=" + "+".join(map(str, bounds)) + "}"
    return f"{first},{rest}"


def format_result(result: TuneResult) -> str:
    """The report ``neffkit tune-partitions`` prints."""
    lengths, costs, objective = result.lengths, result.costs, result.objective
    pcts = sorted({50.0, 99.0, *([objective.percentile] if objective.percentile else [])})
    steps = costs.steps
    lines = [
        f"lengths:   {len(lengths)} requests, mean {statistics.fmean(lengths):.1f} steps, "
        + ", ".join(f"p{p:g} {quantile(lengths, p)}" for p in pcts)
        + f", longest {max(lengths)}; max length {costs.max_len}",
        f"costs:     {costs.source}",
        f"           call overhead {_ms(costs.overhead)}; step 1 {_ms(steps[0])}, "
        f"step {len(steps) // 2 + 1} {_ms(steps[len(steps) // 2])}, "
        f"step {len(steps)} {_ms(steps[-1])} (compute only)",
        f"objective: {objective.label}"
        + ("" if objective.percentile is None else " latency, ties broken by the mean"),
        "",
    ]
    header = ["variant", "boundaries", "calls/req", "steps/req", "wasted/req", "mean ms"]
    header += [f"p{p:g} ms" for p in pcts]
    rows = [header]
    variants = result.variants()
    for name, plan in variants:
        row = [name, _bounds(plan.boundaries), f"{plan.calls:.2f}", f"{plan.steps:.1f}"]
        row += [f"{plan.wasted:.1f}", f"{plan.mean * 1e3:.3f}"]
        row += [f"{plan.percentile(lengths, p) * 1e3:.3f}" for p in pcts]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(r[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    chosen = result.chosen.value(objective, lengths)
    for name, plan in variants[1:]:
        other = plan.value(objective, lengths)
        lines.append(f"{objective.label} vs {name}: {_ratio(other, chosen)}")
    lines.append(f"boundaries: {'+'.join(map(str, result.chosen.boundaries))}")
    lines.append(f"pipeline:   {result.pipeline}")
    return "\n".join(lines)


def _ratio(other: float, chosen: float) -> str:
    if chosen <= 0:
        return "both cost nothing" if other <= 0 else "the tuned form costs nothing"
    r = other / chosen
    if abs(r - 1) < 5e-4:
        return f"the same ({_ms(chosen)})"
    word = "faster" if r > 1 else "slower"
    factor = r if r > 1 else 1 / r
    return f"{factor:.2f}x {word} ({_ms(chosen)} against {_ms(other)})"


def _bounds(bounds: Sequence[int]) -> str:
    if len(bounds) > 4 and list(bounds) == list(range(1, bounds[-1] + 1)):
        return f"1+2+...+{bounds[-1]}"
    text = "+".join(map(str, bounds))
    return text if len(text) <= 40 else text[:37] + "..."


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"
