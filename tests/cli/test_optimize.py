"""``neffkit passes`` and ``neffkit example`` (:mod:`neffkit.cli.optimize`); ``neffkit optimize``
itself is tested with the library function in tests/test_optimize.py."""

from __future__ import annotations

import json
import os

import onnx
import pytest

from neffkit.cli import main
from neffkit.optimize import DEFAULT_PIPELINES
from neffkit.passes.registry import all_passes


def test_passes_json_lists_every_pass_and_the_default_pipelines(capsys) -> None:
    assert main(["passes", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed["passes"]] == [cls.name for cls in all_passes()]
    assert listed["default_pipelines"] == DEFAULT_PIPELINES
    fold = next(p for p in listed["passes"] if p["name"] == "fold")
    assert "max-bytes" in {o["name"] for o in fold["options"]}


def test_example_writes_a_valid_model(tmp_path, capsys) -> None:
    out = tmp_path / "dec.onnx"
    assert (
        main(["example", "conformer", "--part", "decoder-step", "--width", "32", "-o", str(out)])
        == 0
    )
    assert f"wrote {out}: Conformer OCR (decoder-step, width 32, seed 0)" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert os.listdir(tmp_path) == ["dec.onnx"]  # no temporary file left


def test_example_batched_writes_the_batched_model(tmp_path, capsys) -> None:
    out = tmp_path / "batch.onnx"
    assert main(["example", "conformer", "--batched", "--width", "32", "-o", str(out)]) == 0
    assert "Conformer OCR (full, batched, width 32, seed 0)" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["image", "max_tokens"]
    assert [n.op_type for n in model.graph.node].count("Loop") == 1
    assert main(["example", "conformer", "--batched", "--part", "encoder", "-o", str(out)]) == 2
    assert "--batched writes the whole model" in capsys.readouterr().err


@pytest.mark.parametrize("width", ["30", "0", "-4"])
def test_example_refuses_a_width_that_is_not_a_positive_multiple_of_4(
    width: str, tmp_path, capsys
) -> None:
    out = tmp_path / "x.onnx"
    assert main(["example", "conformer", "--width", width, "-o", str(out)]) == 2
    assert "--width must be a positive multiple of 4" in capsys.readouterr().err
    assert not out.exists()


def test_example_refuses_a_directory_as_output(tmp_path, capsys) -> None:
    assert main(["example", "conformer", "--width", "32", "-o", str(tmp_path)]) == 2
    assert "directory" in capsys.readouterr().err
