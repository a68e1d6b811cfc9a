"""``neffkit verify`` (:mod:`neffkit.cli.verify`)."""

from __future__ import annotations

import json

import numpy as np

from neffkit.cli import main
from tests.helpers import MODEL, save_model


def test_verify_exit_status_and_json(model, tmp_path, capsys) -> None:
    assert main(["verify", model, model]) == 0
    assert "OK" in capsys.readouterr().out
    changed = save_model(
        tmp_path / "changed.onnx", MODEL.replace("{1.0, 2.0, 3.0}", "{1.0, 2.0, 3.5}")
    )
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


def test_a_torchscript_candidate_is_checked_before_torch_loads_it(model, tmp_path, capsys) -> None:
    import torch

    pickled = tmp_path / "m.pt"
    torch.save(torch.nn.Linear(2, 2), str(pickled), _use_new_zipfile_serialization=False)
    assert main(["verify", model, str(pickled)]) != 0
    err = capsys.readouterr().err
    assert "a pickle" in err and "does not unpickle" in err
