"""Choosing partition boundaries: a dynamic program over where the partitions end.

A request that decodes L steps runs every partition up to and including the one that holds
step L; each partition it runs costs one call plus all of its steps (those after the EOS too:
the wasted steps). With partitions ending at ``b_1 < ... < b_k = T``, partition j
(steps ``b_{j-1}+1 .. b_j``) runs for the requests with ``L > b_{j-1}``, so

    mean latency = sum_j P(L > b_{j-1}) * cost(b_{j-1}+1, b_j)

is a sum over partitions of a term that depends on the partition alone, and the best end for
the rest of the steps after a boundary does not depend on how that boundary was reached:
``best[a] = min_b weight(a) * cost(a+1, b) + best[b]``, O(T^2) for T step positions.

A percentile works the same way. Latency grows with L for any boundaries, so the nearest-rank
q-th percentile of latency is the latency of the q-th percentile length ``L_q``: the sum of the
partitions that start at or before ``L_q`` (weight 1 for ``a < L_q``, 0 after). Its minimum is
reached by many boundary sets (those after ``L_q`` do not change it), so among them the program
takes the one with the lowest mean: it minimizes the pair (percentile, mean) in that order.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from neffkit.errors import NeffkitError
from neffkit.tune.costs import CostModel

__all__ = ["Objective", "Plan", "choose_boundaries", "evaluate", "parse_objective", "quantile"]

#: two percentile latencies closer than this (relative) are a tie, broken by the mean
_TIE = 1e-9


@dataclass(frozen=True)
class Objective:
    """What to minimize: the mean latency, or its ``percentile``-th percentile (then the mean)."""

    percentile: float | None = None

    @property
    def label(self) -> str:
        """``mean`` or ``p99``."""
        return "mean" if self.percentile is None else f"p{self.percentile:g}"


def parse_objective(text: str) -> Objective:
    """``mean`` or ``pNN`` (``p99``, ``p99.9``, ``p50``) as an :class:`Objective`.

    Raises:
        NeffkitError: anything else, or a percentile outside (0, 100].
    """
    if text == "mean":
        return Objective()
    m = re.fullmatch(r"p([0-9]+(?:\.[0-9]+)?)", text)
    if m is None or not 0 < float(m.group(1)) <= 100:
        raise NeffkitError(f"objective must be 'mean' or pNN with 0 < NN <= 100, got {text!r}")
    return Objective(float(m.group(1)))


def quantile(lengths: Sequence[int], percentile: float) -> int:
    """The nearest-rank percentile: the smallest length at or above which ``percentile`` % of
    the requests lie (``p100`` is the longest)."""
    ordered = sorted(lengths)
    rank = max(1, math.ceil(percentile / 100 * len(ordered) - 1e-9))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Plan:
    """Partition boundaries and what they cost on a set of requests (seconds, steps, calls).

    Attributes:
        boundaries: the last step of each partition, ascending; the last is ``max_len``.
        mean: expected latency of a request.
        latencies: ``latencies[L - 1]``: the latency of a request that decodes L steps.
        calls: expected partitions (backend calls) per request.
        steps: expected steps computed per request.
        wasted: expected steps computed after the EOS (against an oracle that stops there).
    """

    boundaries: tuple[int, ...]
    mean: float
    latencies: tuple[float, ...]
    calls: float
    steps: float
    wasted: float

    def percentile(self, lengths: Sequence[int], percentile: float) -> float:
        """The nearest-rank percentile of latency over ``lengths``."""
        return self.latencies[quantile(lengths, percentile) - 1]

    def value(self, objective: Objective, lengths: Sequence[int]) -> float:
        """The objective's value: the mean, or the percentile latency."""
        if objective.percentile is None:
            return self.mean
        return self.percentile(lengths, objective.percentile)


def evaluate(costs: CostModel, boundaries: Sequence[int], lengths: Sequence[int]) -> Plan:
    """What ``boundaries`` cost on the requests of ``lengths`` under ``costs``."""
    bounds = _checked(boundaries, costs.max_len)
    _check_lengths(lengths, costs.max_len)
    latencies = []
    total = 0.0
    for first, last in zip((0, *bounds[:-1]), bounds, strict=True):
        total += costs.partition(first + 1, last)
        latencies.extend([total] * (last - first))
    n = len(lengths)
    calls = steps = 0
    for index, (first, last) in enumerate(zip((0, *bounds[:-1]), bounds, strict=True)):
        served = sum(1 for x in lengths if first < x <= last)
        calls += served * (index + 1)
        steps += served * last
    mean = math.fsum(latencies[x - 1] for x in lengths) / n
    wasted = (steps - sum(lengths)) / n
    return Plan(bounds, mean, tuple(latencies), calls / n, steps / n, wasted)


def choose_boundaries(
    costs: CostModel,
    lengths: Sequence[int],
    objective: Objective | None = None,
    candidates: Sequence[int] | None = None,
    max_partitions: int | None = None,
) -> Plan:
    """The boundaries that minimize ``objective`` (default: the mean latency) over ``lengths``.

    Among equally good boundary sets the one with fewer partitions wins.

    Args:
        costs: the call overhead and per-step costs; ``costs.max_len`` ends the last partition.
        lengths: observed output lengths (steps per request), each in 1..max_len.
        objective: the mean, or a percentile (ties broken by the mean).
        candidates: where a partition may end (default: after any step); ``max_len`` always.
        max_partitions: at most this many partitions (compiled units); None for no limit.

    Raises:
        NeffkitError: no lengths, a length out of range, a candidate out of range, or a
            partition limit below 1.
    """
    objective = objective or Objective()
    big_t = costs.max_len
    _check_lengths(lengths, big_t)
    ends = sorted({*(candidates if candidates is not None else range(1, big_t + 1)), big_t})
    _checked(ends, big_t)
    if max_partitions is not None and max_partitions < 1:
        raise NeffkitError(f"the partition limit must be at least 1, got {max_partitions}")
    limit = len(ends) if max_partitions is None else min(max_partitions, len(ends))
    n = len(lengths)
    counts = Counter(lengths)
    longer = [1.0]  # longer[a]: the share of requests that decode more than a steps
    for a in range(1, big_t + 1):
        longer.append(longer[-1] - counts.get(a, 0) / n)
    cut = None if objective.percentile is None else quantile(lengths, objective.percentile)
    prefix = [0.0]
    for c in costs.steps:
        prefix.append(prefix[-1] + c)
    starts = [0, *ends[:-1]]
    # best[k][a]: (percentile part, mean part, partitions, next end) of the steps after a
    # boundary at a in at most k partitions; absent where k partitions cannot cover them
    best: list[dict[int, tuple[float, float, int, int]]] = [{big_t: (0.0, 0.0, 0, 0)}]
    for k in range(1, limit + 1):
        row: dict[int, tuple[float, float, int, int]] = {big_t: (0.0, 0.0, 0, 0)}
        for a in starts:
            choice: tuple[float, float, int, int] | None = None
            for b in ends:
                if b <= a or b not in best[k - 1]:
                    continue
                call = costs.overhead + prefix[b] - prefix[a]
                pct_b, mean_b, parts_b, _ = best[k - 1][b]
                pct = (call if cut is not None and a < cut else 0.0) + pct_b
                candidate = (pct, longer[a] * call + mean_b, parts_b + 1, b)
                if choice is None or _better(candidate, choice):
                    choice = candidate
            if choice is not None:
                row[a] = choice
        best.append(row)
    bounds, a, k = [], 0, limit
    while a != big_t:
        a = best[k][a][3]
        k -= 1
        bounds.append(a)
    return evaluate(costs, bounds, lengths)


def _better(x: tuple[float, float, int, int], y: tuple[float, float, int, int]) -> bool:
    """Whether ``x`` beats ``y``: a lower percentile part, then mean, then fewer partitions
    (the parts compared with a relative tolerance, so that rounding does not decide)."""
    for u, v in ((x[0], y[0]), (x[1], y[1])):
        if abs(u - v) > _TIE * max(abs(u), abs(v)):
            return u < v
    return x[2] < y[2]


def _checked(boundaries: Sequence[int], max_len: int) -> tuple[int, ...]:
    bounds = tuple(boundaries)
    if not bounds or bounds[-1] != max_len:
        raise NeffkitError(f"the last boundary must be the maximum length {max_len}: {bounds}")
    if any(b < 1 for b in bounds) or any(x >= y for x, y in zip(bounds, bounds[1:])):
        raise NeffkitError(f"boundaries must be increasing positive steps: {bounds}")
    return bounds


def _check_lengths(lengths: Sequence[int], max_len: int) -> None:
    if not lengths:
        raise NeffkitError("no output lengths to tune for")
    bad = [x for x in lengths if not 1 <= x <= max_len]
    if bad:
        raise NeffkitError(f"output lengths must lie in 1..{max_len}, got {bad[0]}")
