"""The boundary optimizer against brute force over every boundary set, and its edge cases."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from neffkit.errors import NeffkitError
from neffkit.tune.costs import CostModel, simulated
from neffkit.tune.plan import (
    Objective,
    choose_boundaries,
    evaluate,
    parse_objective,
    quantile,
)


def _latency(costs: CostModel, bounds: tuple[int, ...], length: int) -> float:
    """From the definition: every partition that starts at or before step ``length`` runs."""
    total, first = 0.0, 1
    for last in bounds:
        if first > length:
            break
        total += costs.overhead + sum(costs.steps[first - 1 : last])
        first = last + 1
    return total


def _brute(costs, lengths, objective, max_partitions):
    """(percentile, mean) of the best boundary set, trying every one."""
    big_t = costs.max_len
    best = None
    for r in range(big_t):
        for inner in itertools.combinations(range(1, big_t), r):
            bounds = (*inner, big_t)
            if max_partitions is not None and len(bounds) > max_partitions:
                continue
            lat = sorted(_latency(costs, bounds, x) for x in lengths)
            mean = sum(lat) / len(lat)
            if objective.percentile is None:
                key = (0.0, mean)
            else:  # nearest rank over the latencies themselves, not over the lengths
                rank = max(1, math.ceil(objective.percentile / 100 * len(lat) - 1e-9))
                key = (lat[rank - 1], mean)
            if best is None or _less(key, best):
                best = key
    return best


def _less(x, y):
    for u, v in zip(x, y, strict=True):
        if not math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12):
            return u < v
    return False


@pytest.mark.parametrize("big_t", [1, 2, 3, 4, 5, 6, 7])
def test_matches_brute_force(big_t):
    rng = random.Random(big_t)
    objectives = [Objective(), Objective(50), Objective(90), Objective(99), Objective(100)]
    for trial in range(25):
        whole = trial % 2 == 0  # whole numbers make exact ties; fractions make none
        draw = (lambda: rng.randint(0, 4)) if whole else (lambda: rng.random())
        steps = tuple(float(draw()) for _ in range(big_t))
        costs = CostModel(float(draw()), steps)
        lengths = [rng.randint(1, big_t) for _ in range(rng.randint(1, 12))]
        for objective in objectives:
            for limit in (None, 1, 2, 3):
                plan = choose_boundaries(costs, lengths, objective, max_partitions=limit)
                if limit is not None:
                    assert len(plan.boundaries) <= limit
                pct = 0.0 if objective.percentile is None else plan.value(objective, lengths)
                want = _brute(costs, lengths, objective, limit)
                case = (steps, costs.overhead, lengths, objective, limit, plan.boundaries)
                assert math.isclose(pct, want[0], rel_tol=1e-9, abs_tol=1e-12), case
                assert math.isclose(plan.mean, want[1], rel_tol=1e-9, abs_tol=1e-12), case


def test_evaluate_counts_calls_steps_and_waste():
    costs = CostModel(1.0, (1.0, 2.0, 3.0, 4.0))
    plan = evaluate(costs, [2, 4], [1, 2, 3])
    # lengths 1 and 2 run partition 1..2 (cost 1+1+2); 3 runs both (4 + 1+3+4)
    assert plan.latencies == (4.0, 4.0, 12.0, 12.0)
    assert plan.mean == pytest.approx((4 + 4 + 12) / 3)
    assert plan.calls == pytest.approx(4 / 3)
    assert plan.steps == pytest.approx((2 + 2 + 4) / 3)
    assert plan.wasted == pytest.approx((1 + 0 + 1) / 3)
    assert [x for x in evaluate(costs, range(1, 5), [1, 2, 3]).latencies] == [2, 5, 9, 14]


def test_percentile_is_the_latency_of_the_percentile_length():
    costs = simulated(0.002, 1e-5, 10)
    lengths = [1] * 90 + [10] * 10
    assert quantile(lengths, 90) == 1
    assert quantile(lengths, 91) == 10
    assert quantile(lengths, 100) == 10
    plan = choose_boundaries(costs, lengths, Objective(99))
    assert plan.value(Objective(99), lengths) == plan.latencies[9]


def test_boundaries_move_later_as_calls_get_expensive():
    """Cheap calls: many small partitions, near the host loop. Dear calls: few and long."""
    lengths = [3] * 60 + [8] * 25 + [20] * 10 + [40] * 5
    seen = []
    for overhead in (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1.0):
        plan = choose_boundaries(simulated(overhead, 1e-5, 40), lengths)
        seen.append(plan)
    assert seen[0].boundaries == (3, 8, 20, 40)  # free calls: stop exactly where requests end
    assert seen[0].wasted == 0
    assert seen[-1].boundaries == (40,)  # calls dearer than all steps: the full unroll
    calls = [p.calls for p in seen]
    assert calls == sorted(calls, reverse=True)
    assert [p.boundaries[0] for p in seen] == sorted(p.boundaries[0] for p in seen)
    assert seen[-1].calls == 1


def test_ties_prefer_fewer_partitions():
    # no request is longer than 2: a split after step 2 changes nothing, so none is made
    assert choose_boundaries(simulated(1.0, 1.0, 6), [1, 2, 2]).boundaries == (2, 6)
    # free calls: a split at 1 changes nothing either when every request runs 2 steps
    assert choose_boundaries(simulated(0.0, 1.0, 6), [2, 2]).boundaries == (2, 6)


def test_candidates_restrict_the_ends():
    costs = simulated(1e-3, 1e-5, 20)
    plan = choose_boundaries(costs, [1, 2, 3, 15], candidates=[5, 10])
    assert set(plan.boundaries) <= {5, 10, 20}
    assert plan.boundaries[-1] == 20


@pytest.mark.parametrize(
    ("text", "want"), [("mean", None), ("p99", 99.0), ("p99.9", 99.9), ("p100", 100.0)]
)
def test_parse_objective(text, want):
    assert parse_objective(text).percentile == want


@pytest.mark.parametrize("text", ["median", "p0", "p101", "99", "p", "P99"])
def test_parse_objective_refuses(text):
    with pytest.raises(NeffkitError, match="objective must be"):
        parse_objective(text)


def test_refusals():
    costs = simulated(1.0, 1.0, 5)
    with pytest.raises(NeffkitError, match=r"1\.\.5, got 6"):
        choose_boundaries(costs, [1, 6])
    with pytest.raises(NeffkitError, match="no output lengths"):
        choose_boundaries(costs, [])
    with pytest.raises(NeffkitError, match="at least 1"):
        choose_boundaries(costs, [1], max_partitions=0)
    with pytest.raises(NeffkitError, match="last boundary"):
        evaluate(costs, [2, 4], [1])
    with pytest.raises(NeffkitError, match="increasing"):
        evaluate(costs, [3, 2, 5], [1])
