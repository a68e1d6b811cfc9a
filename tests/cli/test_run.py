"""``neffkit run`` (:mod:`neffkit.cli.run`)."""

from __future__ import annotations

from neffkit.cli import main


def test_run_on_onnxruntime_with_a_seed(model, capsys) -> None:
    assert main(["run", model, "--backend", "onnxruntime", "--seed", "7"]) == 0
    assert "onnxruntime (inputs: random, seed 7, dims" in capsys.readouterr().out
