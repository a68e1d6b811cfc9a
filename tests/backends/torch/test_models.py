"""Whole models through the torch backend: the onnx package's light_* models and the Conformer
example (with its greedy Loop), eager and as TorchScript."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import neffkit
from neffkit.backends import onnxruntime as ort_backend
from neffkit.backends.torch import compile, to_torchscript
from neffkit.examples import example_input, export_conformer_onnx
from neffkit.testing.conformance import neffkit_torch_runner, run_case
from neffkit.testing.onnx_cases import light_cases


@pytest.mark.parametrize("case", light_cases(), ids=lambda c: c.name)
def test_light_model_matches_its_shipped_output(case) -> None:
    outcome = run_case(case, neffkit_torch_runner)
    assert outcome.status == "passed", outcome.message


@pytest.fixture(scope="module")
def conformer() -> neffkit.Graph:
    return neffkit.load(export_conformer_onnx(width=32))


def test_conformer_runs_on_torch_like_onnxruntime(conformer) -> None:
    x = example_input(width=32)
    want = ort_backend.run(conformer, [x])
    got = neffkit.run(conformer, [x], backend="torch")
    np.testing.assert_array_equal(got[0], want[0])


def test_conformer_scripts_with_its_loop_kept_dynamic(conformer) -> None:
    x = example_input(width=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module, how = to_torchscript(conformer)
    assert how == "script"
    assert "while" in module.loop.code or "loop" in str(type(module.loop)).lower()
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    np.testing.assert_array_equal(got[0].numpy(), ort_backend.run(conformer, [x])[0])


def test_generated_code_is_readable(conformer) -> None:
    code = compile(conformer).code
    assert "torch.conv1d" in code  # the depthwise convolution, as one call
    assert "self.loop" in code
