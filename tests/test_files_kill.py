"""Killing ``neffkit optimize`` at random moments never leaves a mixed model + data pair.

Processes running the CLI are killed (mostly SIGKILL, also SIGINT and SIGTERM) at random
delays while they write a model with external data over an existing pair. After each kill:
the input model and its data are byte for byte intact, the output is the old pair or the new
one (onnxruntime runs it and its outputs are the old model's or the new model's), SIGINT /
SIGTERM left no temporary file, and the next run removes whatever a SIGKILL left.

To fit the test suite, most runs are forked from a driver process that imported neffkit once
(a fresh ``neffkit`` process spends seconds importing onnx); a few are real ``python -m
neffkit`` processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import neffkit
from neffkit import files
from neffkit.backends.onnx import referenced_files

_DRIVER = """
import json, os, sys
from neffkit.cli import main
devnull = os.open(os.devnull, os.O_WRONLY)
print("ready", flush=True)
for line in sys.stdin:
    argv = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.dup2(devnull, 1)
        try:
            rc = main(argv)
        except BaseException:
            rc = 99
        sys.stderr.flush()
        os._exit(rc)
    print("pid", pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("exit", os.waitstatus_to_exitcode(status), flush=True)
"""

_UNIQUE = re.compile(r"opt\.onnx\.[0-9a-f]{16}\.data")
_X = {"x": np.random.default_rng(1).standard_normal((1, 256)).astype(np.float32)}


def _model(scale: float, act: str = "Relu") -> onnx.ModelProto:
    """About 6 MB of weights: y = act(x @ w1) @ w2, with an Identity for the passes.

    The old and the new model differ in weights and in ``act``, so a mixed pair (either model
    with the other's data file) computes neither's outputs.
    """
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((256, 2048)) * scale).astype(np.float32)
    w2 = (rng.standard_normal((2048, 512)) * scale).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node(act, ["h"], ["r"]),
            helper.make_node("Identity", ["r"], ["r2"]),
            helper.make_node("MatMul", ["r2", "w2"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _ort(path: str) -> np.ndarray:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, _X)[0]


def _hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class _Driver:
    """A process that imported neffkit and forks one child per command line."""

    def __init__(self, cwd: str) -> None:
        env = dict(os.environ, PYTHONPATH=_ROOT)
        self.p = subprocess.Popen(
            [sys.executable, "-c", _DRIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        for stream, q in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, q), daemon=True).start()
        assert self.out.get(timeout=120) == "ready"

    def start(self, argv: list[str]) -> int:
        while not self.err.empty():
            self.err.get()
        self.p.stdin.write(json.dumps(argv) + "\n")
        self.p.stdin.flush()
        word, pid = self.out.get(timeout=60).split()
        assert word == "pid"
        return int(pid)

    def wait_for(self, text: str) -> None:
        while text not in self.err.get(timeout=60):
            pass

    def exit_code(self) -> int:
        word, code = self.out.get(timeout=60).split()
        assert word == "exit"
        return int(code)

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=30)


def _pump(stream, q: queue.Queue) -> None:  # noqa: ANN001 - a text stream
    for line in stream:
        q.put(line.rstrip("\n"))


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(neffkit.__file__)))


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # it had ended already
        pass


def test_kills_leave_the_old_or_the_new_pair(tmp_path) -> None:
    rng = random.Random(20261206)
    work = tmp_path / "work"
    work.mkdir()
    model = str(work / "in.onnx")
    onnx.save(_model(0.05), model, save_as_external_data=True, location="in.onnx.data")
    inputs = {p: _hash(p) for p in (model, model + ".data")}
    new = _ort(model)
    # Old pairs to write over: one from onnx (opt.onnx.data), one from neffkit with a unique
    # data name (opt.onnx.<id>.data: its second save), and no output at all.
    pristine = {}
    old_model = _model(0.5, "Sigmoid")
    old_bytes = old_model.SerializeToString()  # onnx.save moves the weights out of old_model
    pristine["onnx"] = tmp_path / "old-onnx"
    pristine["onnx"].mkdir()
    onnx.save(old_model, str(pristine["onnx"] / "opt.onnx"), save_as_external_data=True,
              location="opt.onnx.data")  # fmt: skip
    pristine["neffkit"] = tmp_path / "old-neffkit"
    g = neffkit.load(onnx.load_from_string(old_bytes))
    for _ in range(2):
        neffkit.save(g, pristine["neffkit"] / "opt.onnx", external_data=True)
    assert len(os.listdir(pristine["neffkit"])) == 2
    assert "opt.onnx.data" not in os.listdir(pristine["neffkit"])
    old = _ort(str(pristine["onnx"] / "opt.onnx"))
    assert not np.allclose(old, new, rtol=1e-3)
    out = str(work / "opt.onnx")
    argv = ["optimize", model, "-o", out, "--external-data", "--no-verify",
            "--target", "onnxruntime", "-v"]  # fmt: skip

    def restore(variant: str) -> None:
        for name in os.listdir(work):
            if name.startswith("opt.onnx"):
                os.unlink(work / name)
        if variant != "none":
            for name in os.listdir(pristine[variant]):
                shutil.copyfile(pristine[variant] / name, work / name)

    def state(variant: str) -> str:
        for p, h in inputs.items():
            assert _hash(p) == h, f"{p} changed"
        if not os.path.exists(out):
            assert variant == "none", "the old output vanished"
            return "absent"
        y = _ort(out)  # fails when the model references a data file that is not there
        if np.allclose(y, new, rtol=1e-4, atol=1e-5):
            return "new"
        assert variant != "none" and np.allclose(y, old, rtol=1e-4, atol=1e-5), "a mixed pair"
        return "old"

    driver = _Driver(str(work))
    try:
        # A whole run first: how long it takes, and how long from "writing" to the end.
        restore("onnx")
        t0 = time.perf_counter()
        driver.start(argv)
        driver.wait_for("writing")
        t1 = time.perf_counter()
        assert driver.exit_code() == 0
        t2 = time.perf_counter()
        assert state("onnx") == "new"
        whole, writing = t2 - t0, max(t2 - t1, 0.005)
        signals = [signal.SIGKILL] * 18 + [signal.SIGINT] * 4 + [signal.SIGTERM] * 4
        rng.shuffle(signals)
        seen: dict[str, int] = {}
        kills = 0
        while kills < len(signals) or ("old" not in seen or "new" not in seen):
            assert kills < 60, f"60 kills and still not both outcomes: {seen}"
            sig = signals[kills % len(signals)]
            variant = ("onnx", "neffkit", "none")[kills % 3]
            restore(variant)
            pid = driver.start(argv)
            if kills % 2:  # anywhere in the run
                time.sleep(rng.uniform(0, whole))
            else:  # while it writes the output
                driver.wait_for("writing")
                time.sleep(rng.uniform(0, writing))
            _kill(pid, sig)
            code = driver.exit_code()
            kills += 1
            outcome = state(variant)
            seen[outcome] = seen.get(outcome, 0) + 1
            if sig != signal.SIGKILL:
                assert not _temps(work), f"signal {sig} (exit {code}) left temporary files"
            # The next run ends well and leaves no temporary file, stale ones included.
            driver.start(argv)
            assert driver.exit_code() == 0
            assert state(variant) == "new"
            assert not _temps(work)
            # Data files with neffkit's unique names that the model does not use are gone.
            used = {os.path.basename(p) for p in referenced_files(out)}
            assert {n for n in os.listdir(work) if _UNIQUE.fullmatch(n)} <= used
        assert seen.get("old", 0) and seen.get("new", 0), seen
    finally:
        driver.close()

    # A few real `neffkit` processes too (each spends seconds importing).
    env = dict(os.environ, PYTHONPATH=_ROOT)
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
        restore("onnx")
        p = subprocess.Popen(
            [sys.executable, "-m", "neffkit", *argv],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in p.stderr:
            if "writing" in line:
                break
        time.sleep(rng.uniform(0, writing))
        _kill(p.pid, sig)
        rest = p.stderr.read()
        code = p.wait(timeout=60)
        assert state("onnx") in ("old", "new")
        if sig == signal.SIGTERM:
            assert not _temps(work)
            # 143 when it was inside the command, -15 when it had just left it.
            assert code in (0, -15) or (code == 143 and "neffkit: terminated" in rest), rest


def _temps(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(files.TEMP_PREFIX)]
