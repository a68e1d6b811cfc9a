"""The options several commands share (:mod:`neffkit.cli.options`, read by
:func:`neffkit.cli.io.requested_dims`): ``--dims`` on the commands that make inputs, the per-set
report lines, and ``neffkit verify`` on a model with a sequence output."""

from __future__ import annotations

import json

import pytest

from neffkit.cli import main
from neffkit.testing.text import model_text
from tests.helpers import error_line, save_model

MODEL = model_text("g (float[batch, seq] x) => (float[batch, seq] y) { y = Relu(x) }", opset=18)
SEQ_MODEL = model_text(
    "g (float[batch, 4] x) => (seq(float) s) {\n"
    "  s = SplitToSequence<axis = 1, keepdims = 0>(x)\n"
    "}",
    opset=18,
)


@pytest.mark.parametrize("command", ["run", "verify", "convert", "optimize"])
def test_help_mentions_dims_with_an_example(command: str, capsys) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--dims NAME=SIZE,..." in out
    assert "--dims batch=" in out.split("example:")[1]


def test_verify_reports_two_sets_and_their_sizes(tmp_path, capsys) -> None:
    m = save_model(tmp_path / "m.onnx", MODEL)
    assert main(["verify", m, m]) == 0
    out = capsys.readouterr().out
    assert "inputs:    2 set(s), random from seed 0" in out
    assert "set 0: random seed 0, dims batch=3,seq=3: ok" in out
    assert "set 1: random seed 1, dims batch=7,seq=7: ok" in out


def test_verify_dims_sets_the_sizes_text_and_json(tmp_path, capsys) -> None:
    m = save_model(tmp_path / "m.onnx", MODEL)
    assert main(["verify", m, m, "--dims", "batch=2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [s["dims"] for s in d["sets"]] == [{"batch": 2, "seq": 3}, {"batch": 2, "seq": 7}]


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ("batch", "'batch' is not name=value"),
        ("batch=0", "the size of 'batch' must be positive, got 0"),
        ("batch=x", "not an integer"),
        ("beam=2", "no dim named 'beam' (symbolic dims: batch, seq)"),
    ],
)
@pytest.mark.parametrize("command", ["run", "verify", "convert", "optimize"])
def test_bad_dims_exit_2_naming_the_problem(tmp_path, capsys, command, dims, message) -> None:
    m = save_model(tmp_path / "m.onnx", MODEL)
    args = {
        "run": ["run", m],
        "verify": ["verify", m, m],
        "convert": ["convert", m, "-o", str(tmp_path / "o.pt")],
        "optimize": ["optimize", m, "-o", str(tmp_path / "o.onnx")],
    }[command]
    assert main([*args, "--dims", dims]) == 2
    assert message in error_line(capsys)


def test_dims_with_inputs_is_an_error(tmp_path, capsys) -> None:
    import numpy as np

    m = save_model(tmp_path / "m.onnx", MODEL)
    npz = tmp_path / "in.npz"
    np.savez(npz, x=np.zeros((1, 2), np.float32))
    assert main(["run", m, "--inputs", str(npz), "--dims", "batch=2"]) == 2
    assert "cannot go with --inputs" in error_line(capsys)


def test_run_uses_and_shows_the_dims(tmp_path, capsys) -> None:
    m = save_model(tmp_path / "m.onnx", MODEL)
    assert main(["run", m, "--dims", "batch=2,seq=5"]) == 0
    out = capsys.readouterr().out
    assert "dims batch=2,seq=5" in out and "[2, 5]" in out.replace("(", "[").replace(")", "]")


def test_convert_and_optimize_verify_with_the_dims(tmp_path, capsys) -> None:
    m = save_model(tmp_path / "m.onnx", MODEL)
    assert main(["convert", m, "-o", str(tmp_path / "o.pt"), "--dims", "seq=4"]) == 0
    out = capsys.readouterr().out
    assert "dims batch=3,seq=4: ok" in out and "dims batch=7,seq=4: ok" in out
    assert main(["optimize", m, "-o", str(tmp_path / "o.onnx"), "--dims", "seq=4"]) == 0
    out = capsys.readouterr().out
    assert "dims batch=3,seq=4: ok" in out and "dims batch=7,seq=4: ok" in out


def test_verify_a_sequence_output_model_with_itself_is_ok(tmp_path, capsys) -> None:
    m = save_model(tmp_path / "m.onnx", SEQ_MODEL)
    assert main(["verify", m, m]) == 0
    out = capsys.readouterr().out
    assert "OK:" in out and "seq(float32)[4]" in out
    assert main(["verify", m, m, "--backend", "onnxruntime"]) == 0


def test_convert_a_sequence_output_model_verifies_the_loaded_module(tmp_path, capsys) -> None:
    m = save_model(tmp_path / "m.onnx", SEQ_MODEL)
    assert main(["convert", m, "-o", str(tmp_path / "s.pt")]) == 0
    out = capsys.readouterr().out
    assert "scripted" in out and "seq(float32)[4]" in out and "OK:" in out
