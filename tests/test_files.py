"""How neffkit writes files: collisions refused before any work, the model + external data pair
replaced so that either pair stays whole, temporary files removed, modes from the umask."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import neffkit
from neffkit import files
from neffkit.backends.onnx import referenced_files
from neffkit.cli import main
from tests.helpers import error_line, save_model


def _model(scale: float = 1.0, n: int = 512) -> onnx.ModelProto:
    """y = relu(x @ w1) @ w2 + c, with c a Constant node (a tensor attribute)."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((8, n)) * scale).astype(np.float32)
    w2 = (rng.standard_normal((n, 4)) * scale).astype(np.float32)
    c = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "c")
    const = helper.make_node("Constant", [], ["c"], value=c)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["z"]),
        const,
        helper.make_node("Add", ["z", "c"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _snapshot(folder) -> dict[str, str]:
    """Every file in ``folder`` (hidden ones too) with the hash of its bytes."""
    out = {}
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def _temps(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(files.TEMP_PREFIX)]


@pytest.fixture
def ext_model(tmp_path) -> str:
    """m.onnx with its weights (initializers and the Constant's tensor) in m.onnx.data."""
    return save_model(tmp_path / "m.onnx", _model(), external="m.onnx.data")


# -- CLI: collisions are refused before any work ------------------------------------------------


def _refused(capsys, tmp_path, argv: list[str], *names: str) -> str:
    before = _snapshot(tmp_path)
    assert main(argv) == 2
    line = error_line(capsys)
    assert "refusing to overwrite" in line
    for name in names:
        assert name in line
    assert _snapshot(tmp_path) == before  # nothing written, the inputs intact
    return line


def test_optimize_output_onto_the_inputs_external_data(ext_model, tmp_path, capsys) -> None:
    data = str(tmp_path / "m.onnx.data")
    line = _refused(capsys, tmp_path, ["optimize", ext_model, "-o", data, "--no-verify"], data)
    assert "the output model" in line and "the input model's external data" in line


def test_run_output_onto_the_inputs_external_data(ext_model, tmp_path, capsys) -> None:
    data = str(tmp_path / "m.onnx.data")
    argv = ["run", ext_model, "--backend", "onnxruntime", "-o", data]
    line = _refused(capsys, tmp_path, argv, data)
    assert "the outputs file" in line


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_run_refuses_before_preparing_the_model(ext_model, tmp_path, capsys, monkeypatch, backend):
    # the collision with the external data is found before the model is lowered or loaded
    # into onnxruntime (the work a refused run must not do)
    import neffkit.backends.onnxruntime as ort_backend
    import neffkit.backends.torch as torch_backend

    def prepared(*args, **kwargs):
        raise AssertionError("the model was prepared before the collision was refused")

    monkeypatch.setattr(torch_backend, "compile", prepared)
    monkeypatch.setattr(ort_backend, "session", prepared)
    data = str(tmp_path / "m.onnx.data")
    _refused(capsys, tmp_path, ["run", ext_model, "--backend", backend, "-o", data], data)


def test_optimize_output_whose_data_name_the_input_uses(tmp_path, capsys) -> None:
    # The input keeps its weights in opt.onnx.data: a name the output's data may take.
    model = save_model(tmp_path / "in.onnx", _model(), external="opt.onnx.data")
    out = str(tmp_path / "opt.onnx")
    argv = ["optimize", model, "-o", out, "--external-data", "--no-verify"]
    line = _refused(capsys, tmp_path, argv, "opt.onnx.data", out)
    assert "the input model's external data" in line
    # A neffkit-style unique data name of the output counts too.
    model = save_model(tmp_path / "in2.onnx", _model(), external="opt.onnx.0123456789abcdef.data")
    _refused(capsys, tmp_path, ["optimize", model, "-o", out, "--no-verify"], out)


def test_output_through_a_hard_link_or_symlink_to_an_input(ext_model, tmp_path, capsys) -> None:
    os.link(tmp_path / "m.onnx.data", tmp_path / "hard.bin")
    os.symlink("m.onnx", tmp_path / "soft.onnx")
    os.link(tmp_path / "m.onnx", tmp_path / "hard.onnx")
    # --no-check: the ONNX checker refuses a data file with several hard links on its own
    # (a possible hard-link attack); this is about the collision check, which comes first
    for out, src in (("hard.bin", "m.onnx.data"), ("soft.onnx", "m.onnx"), ("hard.onnx", "m.onnx")):
        argv = ["optimize", ext_model, "-o", str(tmp_path / out), "--no-verify", "--no-check"]
        _refused(capsys, tmp_path, argv, out, src)


def test_tensor_attribute_data_in_a_subgraph_is_an_input_too(tmp_path, capsys) -> None:
    # An If whose then-branch holds a Constant whose tensor is external data.
    big = numpy_helper.from_array(np.ones(1024, np.float32), "k")
    (tmp_path / "branch.bin").write_bytes(big.raw_data)
    onnx.external_data_helper.set_external_data(big, "branch.bin", 0, 4096)
    big.ClearField("raw_data")
    big.data_location = TensorProto.EXTERNAL
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["t"], value=big)],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1024])],
    )
    other = helper.make_graph(
        [helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(
            np.zeros(1024, np.float32), "z"))],  # fmt: skip
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1024])],
    )
    g = helper.make_graph(
        [helper.make_node("If", ["b"], ["y"], then_branch=then, else_branch=other)],
        "g",
        [helper.make_tensor_value_info("b", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1024])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model = str(tmp_path / "if.onnx")
    onnx.save(m, model)
    assert neffkit.run(model, {"b": np.array(True)}, "onnxruntime")[0].sum() == 1024
    assert referenced_files(model) == [str(tmp_path / "branch.bin")]
    out = str(tmp_path / "branch.bin")
    _refused(capsys, tmp_path, ["optimize", model, "-o", out, "--no-verify"], out)


def test_report_collisions(ext_model, tmp_path, capsys) -> None:
    out = str(tmp_path / "x.onnx")
    argv = ["optimize", ext_model, "-o", out, "--report", out, "--no-verify"]
    line = _refused(capsys, tmp_path, argv, out)
    assert "the report" in line and "the output model" in line
    # The report at the name of the output's external data file.
    argv = ["optimize", ext_model, "-o", out, "--report", out + ".data", "--no-verify"]
    _refused(capsys, tmp_path, argv, out + ".data", "the report")
    # The report over the input's data.
    data = str(tmp_path / "m.onnx.data")
    argv = ["optimize", ext_model, "-o", out, "--report", data, "--no-verify"]
    _refused(capsys, tmp_path, argv, data, "the report")


def test_inputs_file_and_convert_and_reduce_collisions(ext_model, tmp_path, capsys) -> None:
    feeds = tmp_path / "in.npz"
    np.savez(feeds, x=np.ones((1, 8), np.float32))
    argv = ["run", ext_model, "--backend", "onnxruntime", "--inputs", str(feeds), "-o", str(feeds)]
    _refused(capsys, tmp_path, argv, str(feeds), "the inputs file")
    data = str(tmp_path / "m.onnx.data")
    _refused(capsys, tmp_path, ["convert", ext_model, "-o", data, "--no-verify"], data)
    # reduce writes <stem>-inputs.npz beside its output: here that is the --inputs file.
    feeds2 = tmp_path / "r-inputs.npz"
    os.replace(feeds, feeds2)
    argv = ["reduce", ext_model, "--check", "false {model}", "-o", str(tmp_path / "r.onnx"),
            "--inputs", str(feeds2)]  # fmt: skip
    _refused(capsys, tmp_path, argv, str(feeds2), "an inputs file")
    _refused(capsys, tmp_path, ["reduce", ext_model, "--check", "false {model}", "-o", data], data)


# -- the library's save ----------------------------------------------------------------------


def test_save_refuses_the_graphs_own_external_data(ext_model, tmp_path) -> None:
    g = neffkit.load(ext_model)
    os.link(tmp_path / "m.onnx.data", tmp_path / "alias.data")
    before = _snapshot(tmp_path)
    for target in ("m.onnx.data", "alias.data"):
        with pytest.raises(neffkit.NeffkitError, match="refusing to overwrite") as e:
            neffkit.save(g, tmp_path / target, external_data=True)
        assert isinstance(e.value, files.FileCollisionError)
        assert target in str(e.value) and "external data the graph reads" in str(e.value)
    assert _snapshot(tmp_path) == before  # nothing written, no temporary file left
    np.testing.assert_array_equal(g.initializers["w1"].const.numpy().shape, (8, 512))


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_save_modes_follow_the_umask(ext_model, tmp_path, umask) -> None:
    g = neffkit.load(ext_model)
    old = os.umask(umask)
    try:
        neffkit.save(g, tmp_path / "out" / "a.onnx", external_data=True)
        files.write_text(tmp_path / "out" / "r.json", "{}")
    finally:
        os.umask(old)
    for name in ("a.onnx", "a.onnx.data", "r.json"):
        assert os.stat(tmp_path / "out" / name).st_mode & 0o777 == 0o666 & ~umask, name


def test_save_replaces_the_pair_and_removes_only_the_old_data(ext_model, tmp_path) -> None:
    g = neffkit.load(ext_model)
    x = {"x": np.ones((1, 8), np.float32)}
    want = neffkit.run(ext_model, x, "onnxruntime")[0]
    out = tmp_path / "o" / "o.onnx"
    names = []
    for _ in range(4):
        neffkit.save(g, out, external_data=True)
        refs = referenced_files(out)
        assert len(refs) == 1 and os.path.dirname(refs[0]) == str(out.parent)
        names.append(os.path.basename(refs[0]))
        # Only the model and the one data file it references are there.
        assert sorted(os.listdir(out.parent)) == sorted(["o.onnx", names[-1]])
        np.testing.assert_allclose(neffkit.run(str(out), x, "onnxruntime")[0], want, rtol=1e-6)
    # Each write used a name the old model did not reference.
    assert all(a != b for a, b in zip(names, names[1:]))
    assert names[0] == "o.onnx.data"
    # Without external data the old data file goes too.
    neffkit.save(g, out, external_data=False)
    assert os.listdir(out.parent) == ["o.onnx"]


def test_save_keeps_data_it_does_not_own(ext_model, tmp_path) -> None:
    g = neffkit.load(ext_model)
    # Back over its own model: the data it reads stays (the graph still needs it).
    neffkit.save(g, ext_model, external_data=True)
    assert os.path.exists(tmp_path / "m.onnx.data")
    assert referenced_files(ext_model) != [str(tmp_path / "m.onnx.data")]
    assert g.initializers["w1"].const.numpy().shape == (8, 512)
    # A <model>.data that the old model did not reference is not neffkit's to remove.
    other = tmp_path / "n"
    other.mkdir()
    (other / "k.onnx.data").write_bytes(b"somebody else's")
    neffkit.save(g, other / "k.onnx", external_data=False)
    neffkit.save(g, other / "k.onnx", external_data=True)
    assert (other / "k.onnx.data").read_bytes() == b"somebody else's"
    assert len(os.listdir(other)) == 3


# -- temporary files -------------------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temps_of_dead_writers_are_removed_live_ones_kept(tmp_path) -> None:
    dead = tmp_path / f".neffkit-{_dead_pid()}-abc123.tmp"
    live = tmp_path / f".neffkit-{os.getppid()}-abc123.tmp"
    mine = tmp_path / f".neffkit-{os.getpid()}-abc123.tmp"
    other = tmp_path / ".neffkit-notapid.tmp"
    for p in (dead, live, mine, other):
        p.write_bytes(b"x")
    files.write_bytes(tmp_path / "out.bin", b"data")
    assert not dead.exists()
    assert live.exists() and mine.exists() and other.exists()
    assert (tmp_path / "out.bin").read_bytes() == b"data"


@pytest.mark.parametrize("how", ["error", "interrupt", "sigterm"])
def test_temps_are_removed_when_a_write_fails(tmp_path, how) -> None:
    (tmp_path / "out.bin").write_bytes(b"old")
    seen = []

    def write(tmp: str) -> None:
        seen.append(tmp)
        with open(tmp, "wb") as f:
            f.write(b"new, half")
        if how == "error":
            raise OSError("disk full")
        if how == "interrupt":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises out of the sleep
        raise AssertionError("SIGTERM did not interrupt the write")

    expected = {"error": OSError, "interrupt": KeyboardInterrupt, "sigterm": files.Terminated}
    with pytest.raises(expected[how]):
        files.atomic_write(tmp_path / "out.bin", write)
    assert os.path.basename(seen[0]).startswith(f".neffkit-{os.getpid()}-")
    assert _temps(tmp_path) == []
    assert (tmp_path / "out.bin").read_bytes() == b"old"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler put back


def test_cli_sigterm_exit_status(ext_model, tmp_path) -> None:
    """The real command turns SIGTERM into exit 143 and one line, leaving no temp file."""
    code = (
        "import os, signal, sys, time\n"
        "from neffkit import files\n"
        "from neffkit.cli import main\n"
        "real = files.atomic_write\n"
        "def atomic_write(path, write):\n"
        "    def slow(tmp):\n"
        "        write(tmp)\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(10)\n"
        "    real(path, slow)\n"
        "files.atomic_write = atomic_write\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "out.npz"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    argv = [sys.executable, "-c", code, "run", ext_model, "--backend", "onnxruntime", "-o", out]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "neffkit: terminated"
    assert not out.exists() and _temps(tmp_path) == []
