"""``neffkit run`` (:mod:`neffkit.cli.run`)."""

from __future__ import annotations

from neffkit.cli import main


def test_run_on_onnxruntime_with_a_seed(model, capsys) -> None:
    assert main(["run", model, "--backend", "onnxruntime", "--seed", "7"]) == 0
    assert "onnxruntime (inputs: random, seed 7, dims" in capsys.readouterr().out


def test_run_with_replicas_serves_the_inputs_and_prints_the_throughput(model, capsys) -> None:
    assert main(["run", model, "--seed", "3"]) == 0
    single = capsys.readouterr().out
    assert main(["run", model, "--seed", "3", "--replicas", "2", "--requests", "5"]) == 0
    out = capsys.readouterr().out
    assert "on torch, 2 replicas (inputs: random, seed 3" in out
    assert single.splitlines()[1:] == out.splitlines()[1:-1]  # the same outputs
    assert "served 5 requests in" in out and "(2 replicas, one copy of the weights)" in out


def test_run_with_replicas_refuses_other_backends_and_counts(model, capsys) -> None:
    assert main(["run", model, "--replicas", "2", "--backend", "onnxruntime"]) == 2
    assert "--replicas runs on the torch backend" in capsys.readouterr().err
    assert main(["run", model, "--replicas", "0"]) == 2
    assert "positive number" in capsys.readouterr().err
