"""``neffkit.report``: the constant-growth figures and the warning ``optimize`` gives."""

from __future__ import annotations

import json

import pytest

from neffkit.passes.manager import ManagerReport, PassRecord
from neffkit.passes.pipeline import parse_pipeline
from neffkit.report import ConstantGrowth, constant_growth

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("before", "after", "warn"),
    [
        (288, 92_847_040, True),  # light_bvlc_alexnet under the default pipeline
        (0, 2 * MIB, True),
        (MIB, 2 * MIB + 2, True),
        (MIB, 2 * MIB, False),  # exactly twice
        (10 * MIB, 15 * MIB, False),  # 1.5x
        (1000, 500_000, False),  # 500x, but less than 1 MiB more
        (5 * MIB, 4 * MIB, False),
    ],
)
def test_warns_only_above_twice_and_one_mib(before: int, after: int, warn: bool) -> None:
    assert ConstantGrowth(before, after, {"fold": max(after - before, 0)}).warn is warn


def _record(name: str, before: int, after: int) -> PassRecord:
    return PassRecord(name, name, True, {}, 0.0, 10, 9, before, after)


def _report(pipeline: str, records: list[PassRecord]) -> ManagerReport:
    return ManagerReport(
        pipeline,
        records,
        bytes_before=records[0].bytes_before,
        bytes_after=records[-1].bytes_after,
    )


def test_message_names_the_folding_and_a_pipeline_that_refuses_growth() -> None:
    text = "dedup,(fold{max-bytes=1000000},simplify,dce){max-iter=8}"
    records = [_record("fold", 288, 92_000_000), _record("dce", 92_000_000, 91_000_000)]
    growth = constant_growth(_report(text, records), parse_pipeline(text), overridable_inputs=17)
    assert growth.by_pass == {"fold": 91_999_712}
    msg = growth.message()
    assert msg.startswith("constants grew from 288 B to 86.8 MiB (315,972x): folding")
    nogrow = "dedup,(fold{max-bytes=1000000,max-growth=1.0},simplify,dce){max-iter=8}"
    assert growth.nogrow_pipeline == nogrow
    assert f"--passes '{nogrow}'" in msg
    assert "--keep-overridable-inputs (the model's 17 inputs with an initializer" in msg
    d = json.loads(json.dumps(growth.to_dict()))
    assert d["bytes_before"] == 288 and d["bytes_after"] == 91_000_000
    assert d["warn"] is True and d["message"] == msg
    assert d["ratio"] == pytest.approx(91_000_000 / 288)


def test_fold_that_already_refuses_growth_is_kept_as_it_is() -> None:
    text = "fold{max-growth=0.5},dce"
    records = [_record("fold", 100, 100)]
    growth = constant_growth(_report(text, records), parse_pipeline(text))
    assert growth.nogrow_pipeline == text
    assert growth.warn is False
    assert growth.to_dict()["message"] is None


def test_growth_without_fold_points_at_the_constant_cap() -> None:
    text = "simplify,dce"
    records = [_record("simplify", 0, 3 * MIB)]
    growth = constant_growth(_report(text, records), parse_pipeline(text))
    assert growth.nogrow_pipeline is None
    assert growth.to_dict()["ratio"] is None  # infinite: grew from nothing
    msg = growth.message()
    assert "from nothing" in msg and "passes materialized" in msg
    assert msg.endswith("--max-constant-bytes (a cap on each constant)")
