"""What every command shares (:mod:`neffkit.cli.io`): bad input ends in one error line and exit
status 2; the public helpers on their own."""

from __future__ import annotations

import argparse
import os

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import TensorProto, helper

from neffkit.cli import main
from neffkit.cli.io import (
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_MISMATCH,
    EXIT_OK,
    dims_used,
    error_line,
    files_read,
    refuse_overwrite,
    requested_dims,
    run_reporting_errors,
    save_npz,
)
from neffkit.errors import NeffkitError
from neffkit.testing.text import model_text
from tests.helpers import error_line as one_error_line


def test_nonexistent_model(tmp_path, capsys) -> None:
    missing = str(tmp_path / "nope.onnx")
    assert main(["run", missing]) == 2
    assert missing in one_error_line(capsys)


def test_directory_as_model(tmp_path, capsys) -> None:
    assert main(["inspect", str(tmp_path)]) == 2
    assert "is a directory" in one_error_line(capsys)


def test_truncated_model(model, tmp_path, capsys) -> None:
    data = open(model, "rb").read()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    assert main(["verify", str(bad), model]) == 2
    line = one_error_line(capsys)
    assert str(bad) in line and "truncated" in line


def test_random_bytes(tmp_path, capsys) -> None:
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(200))
    assert main(["convert", str(bad), "-o", str(tmp_path / "x.pt")]) == 2
    assert str(bad) in one_error_line(capsys)
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
    line = one_error_line(capsys)
    assert str(path) in line and "frob1" in line and "com.example::Frobnicate" in line


def test_npz_with_the_wrong_shape(model, tmp_path, capsys) -> None:
    inputs = tmp_path / "wrong.npz"
    np.savez(inputs, x=np.ones((3, 2), np.float32))
    assert main(["run", model, "--inputs", str(inputs)]) == 2
    line = one_error_line(capsys)
    assert str(inputs) in line and "input 'x'" in line and "[3, 2]" in line


def test_npz_that_is_not_an_npz(model, tmp_path, capsys) -> None:
    inputs = tmp_path / "fake.npz"
    inputs.write_bytes(b"not numpy at all")
    assert main(["verify", model, model, "--inputs", str(inputs)]) == 2
    line = one_error_line(capsys)
    assert str(inputs) in line and "never loads" in line


# -- the helpers on their own -----------------------------------------------------------------


def test_refuse_overwrite_names_the_file_and_its_role(model, tmp_path) -> None:
    sources = {model: "the input model", None: "the inputs file"}  # None: no --inputs given
    with pytest.raises(NeffkitError, match="refusing to overwrite") as e:
        refuse_overwrite(model, sources, "the outputs file")
    assert model in str(e.value) and "the input model" in str(e.value)
    refuse_overwrite(str(tmp_path / "new.npz"), sources, "the outputs file")  # a new path is fine
    with pytest.raises(NeffkitError, match="directory"):
        refuse_overwrite(str(tmp_path), sources)


def test_files_read_lists_the_external_data(tmp_path) -> None:
    from neffkit.frontends.onnx import load

    w = onnx.numpy_helper.from_array(np.arange(64, dtype=np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
        [w],
    )
    path = str(tmp_path / "ext.onnx")
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(m, path, save_as_external_data=True, location="ext.weights", size_threshold=0)
    reads = files_read(path, load(path), "in.npz")
    assert reads[path] == "the input model" and reads["in.npz"] == "the inputs file"
    assert reads[str(tmp_path / "ext.weights")] == "the input model's external data"
    with pytest.raises(NeffkitError, match="refusing to overwrite"):
        refuse_overwrite(str(tmp_path / "ext.weights"), reads)


def test_save_npz_round_trips_without_pickle_and_refuses_sequences(tmp_path) -> None:
    path = str(tmp_path / "out.npz")
    arrays = {"y:0": np.arange(6, dtype=np.int64).reshape(2, 3), "z": np.float32(1.5)}
    save_npz(path, arrays)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["y:0", "z"]
        np.testing.assert_array_equal(z["y:0"], arrays["y:0"])
        assert z["z"] == np.float32(1.5)
    with pytest.raises(NeffkitError, match="'s' is not a numeric tensor"):
        save_npz(str(tmp_path / "seq.npz"), {"s": [np.zeros(2)]})
    assert sorted(os.listdir(tmp_path)) == ["out.npz"]  # nothing written, no temp file left


def test_requested_dims_parses_checks_and_refuses_inputs(model) -> None:
    from neffkit.frontends.onnx import load

    seq = load(
        onnx.parser.parse_model(
            model_text("g (float[batch, seq] x) => (float[batch, seq] y) { y = Relu(x) }", opset=18)
        )
    )
    ns = argparse.Namespace
    assert requested_dims(ns(dims=None, inputs=None)) is None
    assert requested_dims(ns(dims="batch=2,seq=5", inputs=None), seq) == {"batch": 2, "seq": 5}
    with pytest.raises(NeffkitError, match="cannot go with --inputs"):
        requested_dims(ns(dims="batch=2", inputs="in.npz"))
    with pytest.raises(NeffkitError, match="nope"):
        requested_dims(ns(dims="nope=2", inputs=None), seq)
    feeds = {"x": np.zeros((2, 5), np.float32)}
    assert dims_used(seq, feeds) == "dims batch=2,seq=5"


def test_error_line_is_one_line() -> None:
    assert error_line(FileNotFoundError(2, "No such file or directory", "m.onnx")) == (
        "m.onnx: No such file or directory"
    )
    assert error_line(NeffkitError("first\n  second\n")) == "first second"
    assert error_line(NeffkitError("")) == "NeffkitError"


@pytest.mark.parametrize(
    ("raised", "status", "line"),
    [
        (
            NeffkitError("bad model\nsecond line"),
            EXIT_ERROR,
            "neffkit: error: bad model second line",
        ),
        (OSError(13, "Permission denied", "out.onnx"), EXIT_ERROR, "out.onnx: Permission denied"),
        (MemoryError("huge"), EXIT_ERROR, "neffkit: error: out of memory (huge)"),
        (RecursionError("deep"), EXIT_ERROR, "input nested too deeply"),
        (KeyboardInterrupt(), 130, "neffkit: interrupted"),
        (ValueError("oops"), EXIT_INTERNAL, "internal error: ValueError: oops"),
    ],
)
def test_run_reporting_errors_maps_each_error_to_a_status(raised, status, line, capsys) -> None:
    def command(args: argparse.Namespace) -> int:
        raise raised

    assert run_reporting_errors(command, argparse.Namespace(debug=False)) == status
    err = capsys.readouterr().err
    assert line in err.strip().splitlines()[-1]


def test_run_reporting_errors_passes_the_status_through(capsys) -> None:
    assert run_reporting_errors(lambda args: EXIT_MISMATCH, argparse.Namespace(debug=False)) == 1
    assert run_reporting_errors(lambda args: EXIT_OK, argparse.Namespace(debug=False)) == 0
    assert capsys.readouterr().err == ""
