"""The TorchScript coverage bench (bench/torchscript_coverage.py) on two small zoo modules:
rows for each form, op coverage counted from the prepared graph, exporter failures recorded as
one-line reasons, results written as JSON and Markdown; the totals on hand-made rows."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

pytest.importorskip("torch")

from bench import torchscript_coverage as bench  # noqa: E402


def test_bench_on_two_modules(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # the bench imports its helpers as ``common`` (bench/ on sys.path): results go to tmp_path
    monkeypatch.setattr(sys.modules["common"], "RESULTS", str(tmp_path))
    data = bench.main(["--quick", "--only", "mlp,loop_in_if", "--name", "coverage_test"])
    rows = {(r["module"], r["form"]): r for r in data["rows"]}
    assert set(rows) == {("mlp", "script"), ("mlp", "trace"), ("loop_in_if", "script")}
    mlp = rows["mlp", "trace"]
    assert mlp["ops"]["linear"] == 3 and not mlp["kept"]
    assert (mlp["torch"], mlp["ort"], mlp["onnx_ts"]) == ("ok", "ok", "ok")
    loop = rows["loop_in_if", "script"]
    assert (loop["torch"], loop["ort"], loop["onnx_ts"]) == ("ok", "ok", "ok")
    # TS2EPConverter cannot convert a data-dependent prim::If here: the reason, one line
    assert loop["onnx_dynamo"].startswith("TS2EPConverter: ") and "\n" not in loop["onnx_dynamo"]
    total = data["total"]
    assert (total["cases"], total["modules"], total["lifted"]) == (3, 2, 3)
    assert (
        total["op_nodes"]
        == total["op_nodes_mapped"]
        == sum(sum(r["ops"].values()) for r in data["rows"])
    )
    assert total["round_trip"]["ort"] == 3
    with open(os.path.join(tmp_path, "coverage_test.json")) as f:
        saved = json.load(f)
    assert saved["total"] == json.loads(json.dumps(total)) and "torch" in saved["machine"]
    with open(os.path.join(tmp_path, "coverage_test.md")) as f:
        assert "| loop_in_if | script | 7/7 |" in f.read()


def test_totals_count_pairs_and_nodes() -> None:
    rows = [
        {"module": "a", "form": "trace", "ops": {"linear": 3, "fused": 2}, "kept": {"fused": 2},
         "lift": "ok", "torch": "ok", "ort": "n/a: aten nodes left (fused)",
         "onnx_ts": "export: UnsupportedOperatorError: fused", "onnx_dynamo": "ok"},
        {"module": "b", "form": "script", "ops": {"linear": 1}, "kept": {"linear": 1},
         "lift": "FrontendError: x", "torch": None, "ort": None, "onnx_ts": "ok",
         "onnx_dynamo": "ok"},
    ]  # fmt: skip
    total = bench.summarize(rows)
    assert (total["op_pairs"], total["op_pairs_mapped"]) == (3, 1)
    assert (total["op_nodes"], total["op_nodes_mapped"]) == (6, 3)
    assert total["round_trip"] == {"torch": 1, "ort": 0, "onnx_ts": 1, "onnx_dynamo": 2}
    text = bench.markdown(rows, total, "t")
    assert "| a | trace | 1/2 | 3/5 | fused | ok |" in text
    assert "| b | script | 0/1 | 0/1 | linear | lift failed: FrontendError: x |" in text
