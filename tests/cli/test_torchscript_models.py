"""Every ``neffkit`` command that reads a model takes a TorchScript file (told by its bytes),
typed by ``--input-shape`` or ``--inputs``; a graph keeping ``aten`` ops is verified on the
torch backend and written as ONNX that declares the ``aten`` domain and loads back."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest

from neffkit.cli import main
from neffkit.cli.io import read_model

torch = pytest.importorskip("torch")


class Special(torch.nn.Module):
    """Ops with no ONNX form (kept as aten ops) around ONNX ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.i0e(x) * 2.0 + torch.special.xlogy(x, 2.0)


class Plain(torch.nn.Module):
    """Lifts to ONNX ops only."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x)) + ids.to(torch.float32).unsqueeze(-1)


@pytest.fixture
def special(tmp_path) -> str:
    path = str(tmp_path / "special.pt")
    torch.jit.save(torch.jit.script(Special()), path)
    return path


@pytest.fixture
def plain(tmp_path) -> str:
    path = str(tmp_path / "plain.ts")  # any name: the bytes tell
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(Plain()), path)
    return path


@pytest.mark.parametrize("command", ["inspect", "run", "optimize", "convert", "verify"])
def test_missing_input_shape_is_one_error_naming_input_and_option(
    command: str, special: str, tmp_path, capsys
) -> None:
    argv = {
        "inspect": ["inspect", special],
        "run": ["run", special],
        "optimize": ["optimize", special, "-o", str(tmp_path / "o.onnx")],
        "convert": ["convert", special, "-o", str(tmp_path / "o.pt")],
        "verify": ["verify", special, special],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{special}: input 'x' of the TorchScript module has no recorded dtype" in err
    assert "--input-shape x=" in err
    assert sorted(os.listdir(tmp_path)) == ["special.pt"]


def test_optimize_keeps_aten_ops_and_verifies_on_torch(special: str, tmp_path, capsys) -> None:
    out = tmp_path / "special.onnx"
    assert main(["optimize", special, "-o", str(out), "--input-shape", "x=2x5"]) == 0
    text = capsys.readouterr().out
    assert "keeps aten ops with no ONNX form (special_i0e, xlogy)" in text
    assert "verified on the torch backend" in text
    assert f"reference: {special} on torch" in text
    written = onnx.load(str(out))
    assert {o.domain: o.version for o in written.opset_import} == {"": 18, "aten": 1}
    assert {n.domain for n in written.graph.node} == {"", "aten"}
    # it loads back, runs on torch, and converts to TorchScript that matches it
    x = np.random.default_rng(0).random((2, 5), dtype=np.float32) + 0.1
    np.savez(tmp_path / "in.npz", x=x)
    ran = tmp_path / "ran.npz"
    assert main(["run", str(out), "--inputs", str(tmp_path / "in.npz"), "-o", str(ran)]) == 0
    with np.load(ran) as z:
        np.testing.assert_allclose(z["output_0"], Special()(torch.from_numpy(x)).numpy(),
                                   rtol=1e-6)  # fmt: skip
    pt = tmp_path / "special.converted.pt"
    assert main(["convert", str(out), "-o", str(pt)]) == 0
    assert "checked against the model on the torch backend" in capsys.readouterr().out
    assert torch.jit.load(str(pt))(torch.from_numpy(x))[0].shape == (2, 5)


def test_without_aten_ops_the_reference_is_onnxruntime(plain: str, tmp_path, capsys) -> None:
    out = tmp_path / "plain.onnx"
    argv = ["optimize", plain, "-o", str(out), "--input-shape", "x=3x4",
            "--input-shape", "ids=3:int64"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"reference: {plain} on onnxruntime" in text and "aten ops" not in text
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_inputs_file_states_the_shapes(plain: str, tmp_path, capsys) -> None:
    feeds = tmp_path / "in.npz"
    np.savez(feeds, x=np.ones((2, 4), np.float32), ids=np.array([1, 2], np.int64))
    assert main(["run", plain, "--inputs", str(feeds)]) == 0
    assert "output_0  float32  [2, 3]" in capsys.readouterr().out
    assert main(["verify", plain, plain, "--inputs", str(feeds)]) == 0
    assert main(["inspect", plain, "--input-shape", "x=1x4", "--input-shape", "ids=1:int64"]) == 0
    assert "x: float[1,4]" in capsys.readouterr().out


def test_run_on_onnxruntime_refuses_aten_ops_naming_the_backend(special: str, capsys) -> None:
    assert main(["run", special, "--input-shape", "x=2", "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert "keeps aten ops with no ONNX form (special_i0e, xlogy)" in err
    assert "run it with --backend torch" in err


def test_read_model_takes_onnx_as_before(tmp_path, model: str) -> None:
    class Args:
        check = True

    assert [n.op_type for n in read_model(Args(), model)]  # no TorchScript options needed


def _masked(text: str, folder: str) -> list[str]:
    """Lines with every number as ``#``, runs of spaces as one, table rules as ``--``, the
    session's folder as DIR."""
    text = text.replace(folder, "DIR").replace("/home/me", "DIR")
    text = re.sub(r"[+-]?\d+(\.\d+)?(e[+-]?\d+)?", "#", text)
    text = re.sub(r"-{2,}", "--", text)  # table rules as wide as their columns
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def test_the_user_guide_conformer_session_is_real(tmp_path, monkeypatch, capsys) -> None:
    from neffkit.examples import conformer

    guide = (Path(__file__).resolve().parents[2] / "docs" / "user-guide.md").read_text()
    session = guide[guide.index("The Conformer example, scripted with its greedy loop") :]
    session = session[session.index("```console\n") + 11 :]
    session = session[: session.index("\n```")]
    # the same commands on a narrower model (the output's form, not its numbers, is checked)
    build = conformer.build_conformer_ocr
    small = {"d_model": 32, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "max_len": 8}
    monkeypatch.setattr(conformer, "build_conformer_ocr", lambda **kw: build(**kw, **small))
    monkeypatch.chdir(tmp_path)
    commands = [line[2:] for line in session.splitlines() if line.startswith("$ ")]
    assert commands[0].startswith("neffkit example conformer --torchscript")
    got = ""
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0
        got += capsys.readouterr().out
    want = [line for line in session.splitlines() if not line.startswith("$ ")]
    assert _masked(got, str(tmp_path)) == _masked("\n".join(want), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["conformer.opt.onnx", "conformer.pt"]


@pytest.mark.parametrize("other", [["--batched"], ["--part", "encoder"]])
def test_example_torchscript_is_the_whole_model_only(other: list[str], tmp_path, capsys) -> None:
    out = tmp_path / "c.pt"
    assert main(["example", "conformer", "--torchscript", *other, "-o", str(out)]) == 2
    assert f"--torchscript writes the whole model; it cannot go with {' '.join(other)}" in (
        capsys.readouterr().err
    )
    assert not out.exists()


# -- constructs the frontend cannot lift: one line naming the op and its line, nothing written --


@torch.jit.script
class Pair:
    def __init__(self, a: torch.Tensor) -> None:
        self.a = a


class UsesObject(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Pair(x * 2).a


class UsesDict(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": x + 1}


class GrowsList(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []
        for i in range(x.size(0)):
            out.append(x[i])
        return torch.stack(out)


class MakesComplex(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.view_as_real(torch.view_as_complex(x) * 2)


class Quantizes(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.quantize_per_tensor(x, 0.1, 0, torch.quint8).dequantize()


@pytest.mark.parametrize(
    ("cls", "op"),
    [
        (UsesObject, "prim::CreateObject"),
        (UsesDict, "prim::DictConstruct"),
        (GrowsList, "aten::append"),
        (MakesComplex, "aten::view_as_complex"),
        (Quantizes, "aten::quantize_per_tensor"),
    ],
)
@pytest.mark.parametrize("command", ["optimize", "run"])
def test_unliftable_construct_is_one_line(cls: type, op: str, command: str, tmp_path,
                                          capsys) -> None:  # fmt: skip
    path = str(tmp_path / "model.pt")
    torch.jit.save(torch.jit.script(cls()), path)
    argv = [command, path, "--input-shape", "x=3x2"]
    if command == "optimize":
        argv += ["-o", str(tmp_path / "out.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neffkit: error: {path}: {op} ") and err.count("\n") == 1, err
    assert f"{os.path.basename(__file__)}:" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == ["model.pt"]
