"""optimize's verification message when the original model disagrees with itself: the passes
are not blamed for a nondeterministic reference or a backend that computes the original wrong."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
import torch

import neffkit
from neffkit.backends.torch import registry
from neffkit.cli import main
from neffkit.testing.text import model_text

RELU = onnx.parser.parse_model(
    model_text(
        "g (float[batch, 4] x) => (float[batch, 4] y) {\n"
        "  z = Identity(x)\n"
        "  y = Relu(z)\n"
        "}",
        opset=18,
    )
)


@pytest.fixture
def broken_relu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch backend computes Relu wrong (abs), so the original disagrees there too."""

    def wrong(ctx, node, args):  # noqa: ANN001, ANN202 - a lowering's signature
        return ctx.call(torch.abs, args[0])

    registry._ensure_loaded()
    monkeypatch.setitem(registry._REGISTRY, ("", "Relu"), wrong)


def test_a_self_consistent_original_gets_no_diagnosis() -> None:
    _, report = neffkit.optimize(RELU)
    assert report.ok and report.diagnosis == ""


def test_the_original_on_the_backend_is_blamed_not_the_passes(broken_relu: None) -> None:
    _, report = neffkit.optimize(RELU)
    assert not report.ok
    assert report.diagnosis.startswith(
        "the original model itself gives different results on onnxruntime and torch for "
        "output 'y': "
    )
    assert report.to_dict()["diagnosis"] == report.diagnosis
    assert report.diagnosis in report.table()


def test_a_nondeterministic_original_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # onnxruntime seeds its random ops the same in every session, so a session that adds
    # a different offset on each run stands in for a nondeterministic reference
    from neffkit.backends import onnxruntime as ort_backend

    real = ort_backend.session
    runs = [0]

    class Drifting:
        def __init__(self, inner) -> None:  # noqa: ANN001
            self.inner = inner

        def run(self, names, feeds, *options):  # noqa: ANN001, ANN002, ANN201
            runs[0] += 1
            return [o + np.float32(runs[0]) for o in self.inner.run(names, feeds, *options)]

    monkeypatch.setattr(ort_backend, "session", lambda m, **kw: Drifting(real(m, **kw)))
    _, report = neffkit.optimize(RELU, target="onnxruntime", passes="dce")
    assert not report.ok
    assert report.diagnosis.startswith(
        "the original model itself gives different results when onnxruntime runs it twice"
    )


def test_the_cli_message_does_not_send_the_user_to_verify_each(
    broken_relu: None, tmp_path, capsys
) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(RELU, src)
    assert main(["optimize", str(src), "-o", str(tmp_path / "o.onnx")]) == 1
    err = capsys.readouterr().err
    assert "the original model itself gives different results on onnxruntime and torch" in err
    assert "the passes are not to blame" in err
    assert "--verify-each" not in err
    assert not (tmp_path / "o.onnx").exists()
