"""The tuned result: the pipeline text, the printed report, and the user guide's numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from neffkit.optimize import DEFAULT_PIPELINES
from neffkit.tune import Objective, format_result, pipeline_text, simulated, tune
from neffkit.tune.costs import padded

USER_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
#: the user guide's lengths: 100 * 0.85^L requests of length L, at least one of each to 75
SKEWED = [n for n in range(1, 76) for _ in range(max(1, round(100 * 0.85**n)))]
REST = DEFAULT_PIPELINES["torch"]


@pytest.mark.parametrize(
    ("bounds", "first"),
    [
        ((25, 50, 75), "partition-unroll{boundaries=25+50+75}"),
        ((75,), "unroll{max-trip=75}"),
        (tuple(range(1, 76)), "split"),
        ((1, 2, 4), "partition-unroll{boundaries=1+2+4}"),
    ],
)
def test_pipeline_text(bounds, first):
    assert pipeline_text(bounds) == f"{first},{REST}"
    assert pipeline_text(bounds, "onnxruntime") == f"{first},{DEFAULT_PIPELINES['onnxruntime']}"


def test_the_result_weighs_every_form_alike():
    costs = simulated(2e-3, 1.6e-5, 75, fixed=7.2e-4)
    result = tune(costs, SKEWED)
    assert result.host_loop.boundaries == tuple(range(1, 76))
    assert result.full_unroll.boundaries == (75,)
    assert result.padded_host_loop is not None
    assert result.padded_host_loop.boundaries == result.host_loop.boundaries
    assert result.padded_host_loop.mean > result.host_loop.mean  # every step at 75 positions
    assert padded(costs).steps == (costs.steps[-1],) * 75
    for _, plan in result.variants()[1:]:
        assert result.chosen.mean <= plan.mean
    text = format_result(result)
    assert "boundaries: " + "+".join(map(str, result.chosen.boundaries)) in text
    assert f"pipeline:   {result.pipeline}" in text


def test_a_percentile_objective_is_reported_with_its_column():
    result = tune(simulated(2e-3, 1e-5, 75), SKEWED, Objective(95))
    text = format_result(result)
    assert "p95 ms" in text and "objective: p95 latency, ties broken by the mean" in text
    assert "p95 vs host loop (a call a step):" in text


def test_the_user_guide_example_is_real_output():
    guide = USER_GUIDE.read_text()
    block = re.search(
        r"\$ neffkit tune-partitions .*?\n(conformer.onnx: .*?\n)(.*?)```", guide, re.S
    )
    assert block, "the tune-partitions example is missing from the user guide"
    result = tune(simulated(2e-3, 1.6e-5, 75, fixed=7.2e-4), SKEWED)
    assert block[2].rstrip("\n") == format_result(result)


def test_the_user_guide_table_of_boundaries_is_real():
    guide = USER_GUIDE.read_text()
    table = guide[guide.index("| call overhead | partitions |") :].split("\n\n")[0]
    rows = [r.strip("|").split("|") for r in table.splitlines()[2:]]
    assert len(rows) == 5
    for row in rows:
        cells = [c.strip() for c in row]
        overhead = float(cells[0].removesuffix(" ms")) * 1e-3
        result = tune(simulated(overhead, 1.6e-5, 75, fixed=7.2e-4), SKEWED)
        chosen = result.chosen
        assert int(cells[1]) == len(chosen.boundaries)
        assert int(cells[2]) == chosen.boundaries[0]
        if cells[3]:
            assert cells[3] == "+".join(map(str, chosen.boundaries))
        assert cells[4:6] == [f"{chosen.calls:.2f}", f"{chosen.wasted:.1f}"]
        plans = [chosen, result.host_loop, result.full_unroll, result.padded_host_loop]
        assert cells[6:] == [f"{p.mean * 1e3:.2f}" for p in plans]
