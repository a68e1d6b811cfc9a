"""Cost models: simulated accelerators, ``--simulate`` parsing, interpolation."""

from __future__ import annotations

import pytest

from neffkit.errors import NeffkitError
from neffkit.tune.costs import CostModel, interpolate, parse_simulate, simulated


def test_simulated_steps_grow_with_the_positions_computed():
    costs = simulated(2e-3, 1e-5, 4, fixed=1e-4)
    assert costs.overhead == 2e-3
    assert costs.steps == pytest.approx((1.1e-4, 1.2e-4, 1.3e-4, 1.4e-4))
    assert costs.partition(2, 3) == pytest.approx(2e-3 + 1.2e-4 + 1.3e-4)
    assert costs.max_len == 4


@pytest.mark.parametrize(
    ("text", "overhead", "per_position"),
    [
        ("overhead=2ms,per-position=0.01ms", 2e-3, 1e-5),
        ("per-position=10us, overhead=0.5", 0.5, 1e-5),
        ("overhead=1e3ns,per-position=3s", 1e-6, 3.0),
    ],
)
def test_parse_simulate(text, overhead, per_position):
    costs = parse_simulate(text, 3)
    assert costs.overhead == pytest.approx(overhead)
    assert costs.steps == pytest.approx(tuple(per_position * t for t in (1, 2, 3)))
    assert "simulated" in costs.source


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("overhead=2ms", "missing per-position"),
        ("per-position=1ms", "missing overhead"),
        ("overhead=2ms,per-position=1ms,speed=3", "expected key=duration"),
        ("overhead=2 minutes,per-position=1ms", "not a duration"),
        ("overhead=-2ms,per-position=1ms", "not a duration"),
    ],
)
def test_parse_simulate_refuses(text, message):
    with pytest.raises(NeffkitError, match=message):
        parse_simulate(text, 3)


def test_interpolate_is_linear_between_and_flat_beyond():
    assert interpolate({2: 1.0, 4: 3.0}, 6) == (1.0, 1.0, 2.0, 3.0, 3.0, 3.0)
    assert interpolate({1: 5.0}, 3) == (5.0, 5.0, 5.0)
    with pytest.raises(NeffkitError, match="no step position"):
        interpolate({}, 3)


def test_cost_model_refuses_bad_numbers():
    with pytest.raises(NeffkitError, match="at least one step"):
        CostModel(1.0, ())
    with pytest.raises(NeffkitError, match="non-negative"):
        CostModel(-1.0, (1.0,))
    with pytest.raises(NeffkitError, match="non-negative"):
        CostModel(1.0, (float("nan"),))
