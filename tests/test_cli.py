"""The ``neffkit`` command, called in process through ``main([...])``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import TensorProto, helper

from neffkit.cli import main

MODEL = """
<ir_version: 8, opset_import: ["" : 18]>
agraph (float[2,3] x) => (float[2,4] y, float[2,3] z) {
    w = Constant<value = float[3,4] {1.0, 0.5, -1.0, 2.0, 0.0, 1.0,
                                     1.5, -0.5, 2.0, -2.0, 0.5, 1.0}>()
    m = MatMul(x, w)
    y = Relu(m)
    c = Constant<value = float[3] {1.0, 2.0, 3.0}>()
    s = Add(x, c)
    z = Mul(s, x)
}
"""


def _save(path, text: str = MODEL) -> str:
    onnx.save(onnx.parser.parse_model(text), path)
    return str(path)


@pytest.fixture
def model(tmp_path) -> str:
    return _save(tmp_path / "model.onnx")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("neffkit: error: ")
    return err[0]


@pytest.mark.parametrize("command", [[], ["inspect"], ["convert"], ["verify"], ["run"]])
def test_help_exits_0_and_shows_an_example(command, capsys) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example:" in out and "neffkit " in out.split("example:")[1]


def test_python_dash_m_neffkit() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "neffkit", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "inspect" in r.stdout and "convert" in r.stdout


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "usage: neffkit" in capsys.readouterr().err


# -- inspect ----------------------------------------------------------------------------------


def test_inspect_lists_ops_inputs_and_constants(model, capsys) -> None:
    assert main(["inspect", model]) == 0
    out = capsys.readouterr().out
    for text in ("x: float[2,3]", "y: float[2,4]", "ai.onnx 18", "MatMul", "Relu", "Constant"):
        assert text in out
    assert "6 top level, 6 including subgraphs" in out
    assert "2 Constant nodes (60 B)" in out


def test_inspect_json_with_subgraphs_and_external_data(tmp_path, capsys) -> None:
    then = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"]), helper.make_node("Identity", ["t"], ["o1"])],
        "then",
        [],
        [helper.make_tensor_value_info("o1", TensorProto.FLOAT, [64])],
    )
    other = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["o2"])],
        "else",
        [],
        [helper.make_tensor_value_info("o2", TensorProto.FLOAT, [64])],
    )
    node = helper.make_node(
        "If", ["cond"], ["y"], name="branch", then_branch=then, else_branch=other
    )
    w = onnx.numpy_helper.from_array(np.arange(64, dtype=np.float32), "w")
    g = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [64]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], producer_name="test")
    path = tmp_path / "if.onnx"
    onnx.save(m, path, save_as_external_data=True, location="if.weights", size_threshold=0)
    assert main(["inspect", str(path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["producer"] == "test" and s["opset_imports"] == {"ai.onnx": 18}
    assert (s["nodes"], s["nodes_total"]) == (1, 4)
    assert s["ops"] == {"Add": 1, "Identity": 1, "If": 1, "Relu": 1}
    assert s["initializers"] == 1 and s["initializer_bytes"] == 256
    assert {(x["node"], x["attribute"], x["nodes"]) for x in s["subgraphs"]} == {
        ("branch", "then_branch", 2),
        ("branch", "else_branch", 1),
    }
    assert s["external_data"] == [{"file": "if.weights", "bytes": 256}]
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "subgraphs:" in out and "if.weights" in out


# -- convert ----------------------------------------------------------------------------------


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
    line = _error_line(capsys)
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
    assert "--no-check" in _error_line(capsys)
    assert main(["convert", path, "-o", out, "--no-check"]) == 0
    assert os.path.exists(out)
    assert main(["verify", path, path]) == 2
    capsys.readouterr()
    assert main(["verify", path, path, "--no-check"]) == 0


def test_convert_no_verify(model, tmp_path, capsys) -> None:
    out = tmp_path / "m.pt"
    assert main(["convert", model, "-o", str(out), "--no-verify"]) == 0
    assert out.exists() and "max abs" not in capsys.readouterr().out


# -- verify / run -----------------------------------------------------------------------------


def test_verify_exit_status_and_json(model, tmp_path, capsys) -> None:
    assert main(["verify", model, model]) == 0
    assert "OK" in capsys.readouterr().out
    changed = _save(tmp_path / "changed.onnx", MODEL.replace("{1.0, 2.0, 3.0}", "{1.0, 2.0, 3.5}"))
    assert main(["verify", model, changed, "--json", "--seed", "3"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["seed"] == 3
    assert [o["ok"] for o in report["outputs"]] == [True, False]
    assert main(["verify", model, changed, "--atol", "10", "--backend", "onnxruntime"]) == 0
    capsys.readouterr()


def test_verify_and_run_with_npz_inputs(model, tmp_path, capsys) -> None:
    inputs = tmp_path / "in.npz"
    np.savez(inputs, x=np.ones((2, 3), np.float32))
    assert main(["verify", model, model, "--inputs", str(inputs)]) == 0
    capsys.readouterr()
    out = tmp_path / "out.npz"
    assert main(["run", model, "--inputs", str(inputs), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "y" in text and "[2, 4]" in text and "float32" in text and f"wrote {out}" in text
    with np.load(out, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["y", "z"]
        np.testing.assert_allclose(saved["z"], [[2, 3, 4], [2, 3, 4]])


def test_run_on_onnxruntime_with_a_seed(model, capsys) -> None:
    assert main(["run", model, "--backend", "onnxruntime", "--seed", "7"]) == 0
    assert "onnxruntime (inputs: random, seed 7, dims" in capsys.readouterr().out


# -- bad input --------------------------------------------------------------------------------


def test_nonexistent_model(tmp_path, capsys) -> None:
    missing = str(tmp_path / "nope.onnx")
    assert main(["run", missing]) == 2
    assert missing in _error_line(capsys)


def test_directory_as_model(tmp_path, capsys) -> None:
    assert main(["inspect", str(tmp_path)]) == 2
    assert "is a directory" in _error_line(capsys)


def test_truncated_model(model, tmp_path, capsys) -> None:
    data = open(model, "rb").read()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    assert main(["verify", str(bad), model]) == 2
    line = _error_line(capsys)
    assert str(bad) in line and "truncated" in line


def test_random_bytes(tmp_path, capsys) -> None:
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(200))
    assert main(["convert", str(bad), "-o", str(tmp_path / "x.pt")]) == 2
    assert str(bad) in _error_line(capsys)
    assert not (tmp_path / "x.pt").exists()


def test_op_the_backend_cannot_lower(tmp_path, capsys) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    node = helper.make_node("Frobnicate", ["x"], ["y"], name="frob1", domain="com.example")
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)]
    path = tmp_path / "custom.onnx"
    onnx.save(
        helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets), path
    )
    assert main(["run", str(path)]) == 2
    line = _error_line(capsys)
    assert str(path) in line and "frob1" in line and "com.example::Frobnicate" in line


def test_npz_with_the_wrong_shape(model, tmp_path, capsys) -> None:
    inputs = tmp_path / "wrong.npz"
    np.savez(inputs, x=np.ones((3, 2), np.float32))
    assert main(["run", model, "--inputs", str(inputs)]) == 2
    line = _error_line(capsys)
    assert str(inputs) in line and "input 'x'" in line and "[3, 2]" in line


def test_npz_that_is_not_an_npz(model, tmp_path, capsys) -> None:
    inputs = tmp_path / "fake.npz"
    inputs.write_bytes(b"not numpy at all")
    assert main(["verify", model, model, "--inputs", str(inputs)]) == 2
    line = _error_line(capsys)
    assert str(inputs) in line and "never loads" in line


def test_debug_shows_a_traceback(tmp_path, capsys) -> None:
    missing = str(tmp_path / "nope.onnx")
    assert main(["--debug", "inspect", missing]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "FrontendError" in err
    assert err.strip().splitlines()[-1].startswith("neffkit: error: ")
    assert main(["inspect", missing, "--debug"]) == 2  # also after the subcommand
    assert "Traceback" in capsys.readouterr().err
