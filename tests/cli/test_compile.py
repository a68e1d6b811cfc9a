"""``neffkit compile`` (:mod:`neffkit.cli.compile`): the Conformer after ``split`` and after
``partition-unroll`` through ``--dry-run`` (artifact checked against onnxruntime, report per
unit), and the errors a user meets first: missing packages, refused options, bad shapes."""

from __future__ import annotations

import importlib
import json
import sys
import types

import numpy as np
import pytest
import torch

import neffkit
from neffkit.cli import main
from neffkit.examples import example_input, export_conformer_onnx
from neffkit.execution import Runner
from tests.backends.neuron.conftest import PARTITIONED, SMALL, run_pipeline
from tests.helpers import error_line
from tests.passes.test_split_encoder_decoder import with_eos_bias


@pytest.fixture(scope="module")
def conformer_files(tmp_path_factory) -> dict[str, str]:
    """The small Conformer (EOS after 14 tokens) after ``split`` and after partition-unroll."""
    folder = tmp_path_factory.mktemp("conformer")
    g = with_eos_bias(neffkit.load(export_conformer_onnx(width=32, max_len=20, **SMALL)), 2.0)
    paths = {}
    for name, pipeline in (("split", "split"), ("parts", PARTITIONED)):
        paths[name] = str(folder / f"{name}.onnx")
        neffkit.save(run_pipeline(g, pipeline), paths[name])
    return paths


@pytest.fixture
def support(monkeypatch):
    """The support analysis: the real module when it is there, else a small fake of its API."""
    try:
        return importlib.import_module("neffkit.backends.neuron.support")
    except ImportError:
        pass
    fake = types.ModuleType("neffkit.backends.neuron.support")
    fake.analyze_unit = lambda name, module, target, *, trips=1, fallback=True: (name, trips)
    fake.render_report = lambda units, *, target: (
        "".join(f"- {n}: {t} trips\n" for n, t in units),
        {"target": target, "units": [n for n, _ in units]},
    )
    monkeypatch.setitem(sys.modules, "neffkit.backends.neuron.support", fake)
    return fake


def _reports(out) -> tuple[str, dict]:
    stem = str(out)[: -len(".pt")]
    with open(f"{stem}.report.json") as f:
        return open(f"{stem}.report.md").read(), json.load(f)


def test_dry_run_of_the_host_loop_writes_the_artifact_and_the_report(
    conformer_files, support, tmp_path, capsys
) -> None:
    out = tmp_path / "split.pt"
    argv = ["compile", conformer_files["split"], "--target", "trn2", "--dry-run", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "[1/2] analysing unit encoder" in text and "[2/2] analysing unit step" in text
    assert "host-loop, 2 unit(s) for trn2" in text
    assert "step: inputs" in text and "NOT static" in text  # the unpadded step grows
    assert "all 1 outputs agree" in text or "OK" in text
    markdown, report = _reports(out)
    assert "encoder" in markdown and "step" in markdown and isinstance(report, dict)
    module = torch.jit.load(str(out))
    x = example_input(32, 1)
    want = Runner(conformer_files["split"], "onnxruntime")([x])[0]
    with torch.jit.optimized_execution(False):
        np.testing.assert_array_equal(module(torch.from_numpy(x))[0].numpy(), want)


def test_dry_run_of_partitions_reports_each_partition(
    conformer_files, support, tmp_path, capsys
) -> None:
    out = tmp_path / "parts.pt"
    model = conformer_files["parts"]
    # (the stitched partitions against onnxruntime: tests/backends/neuron/test_units.py)
    argv = ["compile", model, "--target", "inf1", "--dry-run", "--no-verify", "-o", str(out)]
    argv += ["--example-shape", "image=1x1x32x32"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "partitions, 3 unit(s) for inf1" in text
    for name, steps in (("partition_0_4", "0-4"), ("partition_5_9", "5-9")):
        assert f"{name}: inputs" in text and f"steps {steps}" in text
    assert text.count("fallback=False") == 3  # decoder partitions are not cut
    markdown, _ = _reports(out)
    assert all(n in markdown for n in ("partition_0_4", "partition_5_9", "partition_10_19"))
    assert out.exists()


def test_without_the_packages_compile_says_where_they_are(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)
    out = tmp_path / "m.pt"
    assert main(["compile", model, "--target", "inf2", "-o", str(out)]) == 2
    line = error_line(capsys)
    assert "torch-neuronx" in line and "https://pip.repos.neuron.amazonaws.com" in line
    assert "--dry-run" in line and not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "inf2", "--fallback"], "--fallback/--no-fallback apply to inf1 only"),
        (["--target", "trn1", "--dynamic-batch"], "--dynamic-batch applies to inf1 only"),
        (["--target", "inf1", "--example-shape", "x=2"], "--example-shape x: 1 dims"),
        (["--target", "inf1", "--example-shape", "nope=2x3"], "has no input 'nope'"),
        (["--target", "inf1", "--compiler-args", '"open'], "compiler arguments"),
    ],
)
def test_bad_options_are_one_line_errors(model, tmp_path, capsys, extra, message) -> None:
    out = tmp_path / "m.pt"
    assert main(["compile", model, "--dry-run", "-o", str(out), *extra]) == 2
    assert message in error_line(capsys)
    assert not out.exists()


def test_help_says_what_is_needed(capsys) -> None:
    assert main(["compile", "--help"]) == 0
    text = capsys.readouterr().out
    for words in ("torch_neuron.trace", "torch_neuronx.trace", 'backend="neuron"', "--dry-run"):
        assert words in text
    assert "https://pip.repos.neuron.amazonaws.com" in text and "Inf1/Inf2/Trn host" in text


def test_dry_run_takes_a_torchscript_file(tmp_path, capsys) -> None:
    # every command that reads a model takes TorchScript (issue 11, point 1): a scripted
    # module's input shape comes from --input-shape
    class Mlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    model = tmp_path / "mlp.pt"
    torch.jit.save(torch.jit.script(Mlp().eval()), str(model))
    out = tmp_path / "mlp.neuron.pt"
    argv = ["compile", str(model), "--target", "inf1", "--dry-run", "--input-shape", "x=2x6",
            "-o", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert "whole, 1 unit(s) for inf1" in capsys.readouterr().out
    markdown, _ = _reports(out)
    assert "model" in markdown
    x = torch.randn(2, 6)
    with torch.no_grad():
        want = torch.jit.load(str(model))(x)
        got = torch.jit.load(str(out))(x)
    got = got[0] if isinstance(got, tuple | list) else got
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


class _NoCore(torch.nn.Module):
    """What a Neuron-compiled unit does on a host without a NeuronCore: fails when called."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("nrt_init: no NeuronCore found")


def test_a_compiled_model_that_cannot_run_here_is_written_unverified(
    conformer_files, tmp_path, capsys
) -> None:
    # compiling happens on build hosts without NeuronCores: the file is kept, and the note
    # says where to check it; a mismatch (tested above) is still refused
    from tests.backends.neuron.standins import neuron_packages

    calls: list = []
    out = tmp_path / "plain.neuron.pt"
    plain = tmp_path / "plain.onnx"
    neffkit.save(neffkit.load(export_conformer_onnx(width=32, max_len=20, **SMALL)), str(plain))
    with neuron_packages(calls):
        sys.modules["torch_neuron"].trace = lambda model, example_inputs, **kw: torch.jit.script(
            _NoCore()
        )
        rc = main(["compile", str(plain), "--target", "inf1", "-o", str(out)])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert out.exists()
    assert "not verified: the compiled module cannot run on this machine" in text.out
    assert f"neffkit verify {plain} {out}" in text.out
