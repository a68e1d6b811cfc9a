"""``neffkit convert`` (:mod:`neffkit.cli.convert`): TorchScript written atomically and checked."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx.parser
from onnx import TensorProto, helper

from neffkit.cli import main
from tests.helpers import error_line


def test_convert_writes_torchscript_that_matches_onnxruntime(model, tmp_path, capsys) -> None:
    import torch

    from neffkit.api import random_inputs, run

    out = tmp_path / "model.pt"
    assert main(["convert", model, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scripted" in text and f"wrote {out}" in text and "OK" in text
    assert sorted(os.listdir(tmp_path)) == ["model.onnx", "model.pt"]  # no temp files left
    module = torch.jit.load(str(out))
    feeds = random_inputs(model, seed=5)
    got = module(torch.from_numpy(feeds["x"]))
    want = run(model, feeds, "onnxruntime")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-6)
    # and `neffkit verify` accepts the .pt as the candidate
    assert main(["verify", model, str(out)]) == 0
    assert "torch.jit" in capsys.readouterr().out


def test_convert_falls_back_to_tracing(model, tmp_path, capsys, monkeypatch) -> None:
    import torch

    def no_script(*args, **kwargs):
        raise RuntimeError("cannot script this")

    monkeypatch.setattr(torch.jit, "script", no_script)
    assert main(["convert", model, "-o", str(tmp_path / "traced.pt"), "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "traced with torch.jit.trace" in out and "OK" in out


def test_convert_refuses_to_overwrite_its_input(model, capsys) -> None:
    before = open(model, "rb").read()
    assert main(["convert", model, "-o", model, "--no-verify"]) == 2
    line = error_line(capsys)
    assert model in line and "refusing to overwrite" in line
    assert open(model, "rb").read() == before


def test_convert_keeps_what_was_there_when_the_module_does_not_match(
    model, tmp_path, capsys, monkeypatch
) -> None:
    # the file is verified under a temporary name: a mismatch leaves the old output in place
    import importlib

    verify_module = importlib.import_module("neffkit.verify")  # the package exports a function

    real = verify_module.verify

    def mismatching(*args, **kwargs):
        report = real(*args, **kwargs)
        report.outputs[0].mismatches = 1  # as if one element were off
        return report

    out = tmp_path / "m.pt"
    out.write_bytes(b"the old file")
    monkeypatch.setattr(verify_module, "verify", mismatching)
    assert main(["convert", model, "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"{out} not written" in captured.err and "MISMATCH" in captured.out
    assert out.read_bytes() == b"the old file"
    assert sorted(os.listdir(tmp_path)) == ["m.pt", "model.onnx"]  # no temp file left


def test_no_check_reaches_convert_verification_and_verify(tmp_path, capsys) -> None:
    # a model the checker refuses (nodes out of order) runs with --no-check in every command
    nodes = [helper.make_node("Relu", ["t"], ["y"]), helper.make_node("Neg", ["x"], ["t"])]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    path = str(tmp_path / "unsorted.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = str(tmp_path / "u.pt")
    assert main(["convert", path, "-o", out]) == 2
    assert "--no-check" in error_line(capsys)
    assert main(["convert", path, "-o", out, "--no-check"]) == 0
    assert os.path.exists(out)
    assert main(["verify", path, path]) == 2
    capsys.readouterr()
    assert main(["verify", path, path, "--no-check"]) == 0


def test_convert_no_verify(model, tmp_path, capsys) -> None:
    out = tmp_path / "m.pt"
    assert main(["convert", model, "-o", str(out), "--no-verify"]) == 0
    assert out.exists() and "max abs" not in capsys.readouterr().out
