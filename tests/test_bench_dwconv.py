"""The dwconv bench (bench/dwconv.py): its quick mode runs every workload kind on both
backends, checks every variant's output, and writes what the full run writes; its verdict
holds auto to the targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import dwconv


def test_the_verdict_holds_auto_to_both_targets() -> None:
    ms = {"original": 10.0, "shift-mac": 8.0, "dense": 20.0, "unfold-matmul": 9.0, "auto": 8.1}
    v = dwconv.verdict(ms, None)
    assert v["fastest"] == "shift-mac" and v["ok"]
    assert v["auto_vs_fastest"] == pytest.approx(0.0125)
    assert not dwconv.verdict({**ms, "auto": 8.5}, None)["ok"]  # 6% off the fastest
    assert not dwconv.verdict({**ms, "shift-mac": 11.0, "auto": 10.3}, None)["ok"]  # 3% slower
    # auto's graph is the original's: the original's time is auto's
    v = dwconv.verdict({**ms, "shift-mac": 11.0, "unfold-matmul": 12.0, "auto": 10.9}, "original")
    assert v["ok"] and v["auto_vs_original"] == 0.0


def test_quick_mode_runs_and_writes_json_and_markdown(tmp_path: Path) -> None:
    data = dwconv.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "dwconv.json").read_text())
    assert saved["rows"] == data["rows"] and saved["load_before"]
    assert {(r["backend"], r["workload"].split()[0]) for r in data["rows"]} == {
        (b, w) for b in ("torch", "onnxruntime") for w in ("conformer", "mobilenet")
    }
    for row in data["rows"]:
        assert set(row["ms"]) == set(dwconv.VARIANTS) and min(row["ms"].values()) > 0
        assert row["auto_stats"].get("measured") == 1
    assert [e["backend"] for e in data["encoder"]] == ["torch", "onnxruntime"]
    md = (tmp_path / "dwconv.md").read_text()
    assert "| workload | backend | original |" in md and "Whole Conformer encoder" in md
