"""The replicas bench (bench/replicas.py) in quick mode: a tiny encoder, three rows, each in a
fresh process; results written where it is told, never over bench/results."""

from __future__ import annotations

import json
from pathlib import Path

from bench import replicas


def test_quick_mode_measures_every_row_in_its_own_process(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    results = Path(replicas.RESULTS) / "replicas.json"
    before = results.read_bytes() if results.exists() else None
    assert replicas.main(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "replicas.json").read_text())
    rows = {(r["source"], r["replicas"], r["layout"]): r for r in data["rows"]}
    assert list(rows) == replicas.QUICK_CONFIGS and data["quick"]
    one, copies, aliased = rows.values()
    for r in rows.values():
        assert r["requests_per_s"] > 0 and r["max_abs_diff"] < 1e-4
        assert r["peak_rss"] >= r["rss_loaded"] > r["rss_imported"] > 0
    assert copies["distinct_storages"] == 2 * one["distinct_storages"]
    assert copies["weight_bytes_held"] == 2 * one["weight_bytes_held"]
    # the graph source lowers in process; aliased replicas still hold one copy
    assert aliased["weight_bytes_held"] == one["weight_bytes_held"]
    md = (tmp_path / "replicas.md").read_text()
    assert "Quick mode (tiny model): not a measurement." in md
    assert md.count("\n| pt |") == 2 and md.count("\n| graph |") == 1
    assert "wrote" in capsys.readouterr().out
    assert (results.read_bytes() if results.exists() else None) == before
