"""Tuning the partition boundaries of an unrolled decoder loop (``neffkit tune-partitions``).

- :mod:`~neffkit.tune.lengths`: observed output lengths, read and checked;
- :mod:`~neffkit.tune.costs`: the cost model (call overhead, cost per step position), measured
  or simulated;
- :mod:`~neffkit.tune.measure`: measuring it for a model's decoder loop on a backend;
- :mod:`~neffkit.tune.plan`: the dynamic program that picks the boundaries, and what any
  boundaries cost;
- :mod:`~neffkit.tune.result`: the result, the pipeline text to use, the printed report.

Partition boundaries ``1+2+...+T`` (one step a call) are the host loop, ``T`` alone the full
unroll; the optimizer weighs both against everything in between.
"""

from __future__ import annotations

from neffkit.tune.costs import CostModel, interpolate, padded, parse_simulate, simulated
from neffkit.tune.lengths import LengthsError, parse_lengths, read_lengths
from neffkit.tune.plan import (
    Objective,
    Plan,
    choose_boundaries,
    evaluate,
    parse_objective,
    quantile,
)
from neffkit.tune.result import TuneResult, format_result, pipeline_text, tune

__all__ = [
    "CostModel",
    "LengthsError",
    "Objective",
    "Plan",
    "TuneResult",
    "choose_boundaries",
    "evaluate",
    "format_result",
    "interpolate",
    "padded",
    "parse_lengths",
    "parse_objective",
    "parse_simulate",
    "pipeline_text",
    "quantile",
    "read_lengths",
    "simulated",
    "tune",
]
