"""The decoder bench's counting and reporting (bench/decoders.py, decoders_units.py,
decoders_report.py, svg.py): what it counts per request, the targets, the SVG it writes.
The bench itself is run by hand (minutes); these parts are pure."""

from __future__ import annotations

import statistics
import xml.etree.ElementTree as ET

import pytest

from bench import decoders, decoders_report
from bench.decoders_units import UnitSizes
from bench.svg import bar_chart, line_chart

#: state[t] = 10 * t bytes (tokens growing), captured 1000, inputs 500
SIZES = UnitSizes(inputs=500, captured=1000, state=tuple(10 * t for t in range(77)))


def test_lengths_are_seeded_skewed_and_within_bounds() -> None:
    lengths = decoders.sample_lengths(4000, seed=1)
    assert lengths == decoders.sample_lengths(4000, seed=1)
    assert lengths != decoders.sample_lengths(4000, seed=2)
    assert min(lengths) == 1 and max(lengths) == decoders.MAX_LEN
    assert statistics.median(lengths) == 6
    assert statistics.fmean(lengths) > 8, "a long tail pulls the mean above the median"


def test_host_loop_counts_every_step_it_runs() -> None:
    positions, calls, moved = decoders.accounting("host-loop", None, SIZES, 3, 24)
    assert positions == 1 + 2 + 3
    assert calls == 1 + 3  # the encoder, then a call a step
    steps = sum(9 + 10 * t + 1000 + 1 + 10 * (t + 1) for t in (1, 2, 3))
    assert moved == 500 + (10 + 1000) + steps

    positions, calls, moved_padded = decoders.accounting("host-loop-padded", None, SIZES, 3, 24)
    assert (positions, calls) == (3 * 76, 4)
    assert moved_padded == moved  # the sizes come from the padded loop itself


def test_partitions_count_the_partitions_run() -> None:
    assert decoders.accounting("unroll", None, SIZES, 7, 24) == (2850, 1, 500 + 24)
    bounds = [25, 50, 75]
    # 30 steps: the first partition (with the encoder) returns the state at step 26, the
    # second takes it with the encoder output and returns the tokens
    positions, calls, moved = decoders.accounting("partitions-x", bounds, SIZES, 30, 24)
    assert (positions, calls) == (sum(range(1, 51)), 2)
    assert moved == 500 + (1 + 260) + (1 + 260 + 1000) + 24
    assert decoders.accounting("partitions-x", bounds, SIZES, 25, 24)[:2] == (325, 1)
    assert decoders.accounting("partitions-x", bounds, SIZES, 75, 24)[1] == 3


def _data(tuned_ms: float, padded_ms: float, unroll_bytes: int) -> dict:
    rows = [
        {"variant": "host-loop", "avg_ms": 10.0, "p99_ms": 30.0, "constant_bytes": 1000},
        {"variant": "host-loop-padded", "avg_ms": padded_ms, "p99_ms": 3 * padded_ms},
        {"variant": "unroll", "avg_ms": 90.0, "p99_ms": 95.0, "constant_bytes": unroll_bytes},
        {"variant": "partitions-tuned", "avg_ms": tuned_ms, "p99_ms": 3 * tuned_ms},
    ]
    return {"batches": {"1": {"rows": rows, "mismatches": []}}}


def test_checks_state_each_target() -> None:
    status = {c["check"]: c["status"] for c in decoders_report.checks(_data(10.4, 25.0, 1040))}
    assert list(status.values()) == ["PASS"] * 5
    status = [c["status"] for c in decoders_report.checks(_data(11.0, 20.0, 1100))]
    # 1.82x on avg, p99 0.55x, 10% off the fastest, tokens equal, constants 1.1x
    assert status == ["FAIL", "PASS", "FAIL", "PASS", "FAIL"]
    data = _data(10.0, 25.0, 1000)
    data["batches"]["1"]["rows"][1] = {"variant": "host-loop-padded", "missing": "no pad-loop"}
    data["batches"]["1"]["mismatches"] = ["unroll: batch 3"]
    status = [c["status"] for c in decoders_report.checks(data)]
    assert status == ["N/A", "N/A", "PASS", "FAIL", "PASS"]


@pytest.mark.parametrize("log", [False, True])
def test_svg_charts_are_well_formed(log: bool) -> None:
    bars = bar_chart("t", ["a-b", "c"], {"x": [1.0, 250.0], "y": [None, 3.0]}, "ms", log=log)
    root = ET.fromstring(bars)
    rects = [r for r in root.iter("{http://www.w3.org/2000/svg}rect")]
    heights = [float(r.get("height")) for r in rects[1:]]  # the first is the background
    assert len(heights) == 3 and heights[1] == max(heights)
    lines = line_chart("t", {"x": [(1, 2.0), (5, 9.0)], "y": [(2, 1.0)]}, "ms", "steps")
    polylines = list(ET.fromstring(lines).iter("{http://www.w3.org/2000/svg}polyline"))
    assert len(polylines) == 2


def test_nearest_rank() -> None:
    samples = list(range(1, 101))
    assert decoders_report.nearest_rank(samples, 99) == 99
    assert decoders_report.nearest_rank(samples, 100) == 100
    assert decoders_report.nearest_rank([5.0], 99) == 5.0
