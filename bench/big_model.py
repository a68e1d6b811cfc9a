"""Bench: peak memory of neffkit on a model with large external weights.

Builds (in a temporary folder) a chain of ``MatMul -> Add -> Tanh`` layers whose float32
weights, about ``--gb`` GB in all, live in one external data file; every fourth weight is a
byte copy of an earlier one, so ``dedup`` has work. Each step runs in a fresh subprocess and
its peak resident memory is read from the kernel (``os.wait4`` rusage of that child):

- ``neffkit inspect``, ``neffkit optimize`` (verified, the default, and ``--no-verify``),
  ``neffkit convert`` (TorchScript, verified);
- the baseline: ``onnx.load`` + ``onnx.save`` with external data.

Run: ``python bench/big_model.py [--gb 2]``. Target: ``neffkit optimize`` with verification
peaks at no more than 1.5x the weight bytes, and its output keeps external data. Writes
``bench/results/big_model.{md,json}`` (``--gb`` below 1 writes ``big_model_small``) and
removes every file it made.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import write_results  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_RATIO = 1.5
DIM = 4096

_BASELINE = """
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.save(m, sys.argv[2], save_as_external_data=True, location="baseline.onnx.data")
"""


def build(folder: str, gb: float, dim: int = DIM) -> tuple[str, int, int]:
    """Writes the model and its weights file; returns (path, weight bytes, duplicated bytes)."""
    w_bytes = dim * dim * 4
    layers = max(2, round(gb * 1e9 / w_bytes))
    rng = np.random.default_rng(0)
    data_name = "weights.bin"
    inits: list[TensorProto] = []
    nodes = []
    offset = 0
    dup = 0
    kept: list[bytes] = []
    scale = np.float32(1.0 / np.sqrt(dim))
    with open(os.path.join(folder, data_name), "wb") as f:

        def external(name: str, dims: list[int], blob: bytes) -> None:
            nonlocal offset
            tp = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
            tp.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", offset), ("length", len(blob))):
                e = tp.external_data.add()
                e.key, e.value = k, str(v)
            f.write(blob)
            offset += len(blob)
            inits.append(tp)

        x = "x"
        for i in range(layers):
            if i % 4 == 3 and kept:
                blob = kept[-1]  # a byte copy of an earlier weight: dedup merges them
                dup += len(blob)
            else:
                w = rng.standard_normal((dim, dim), dtype=np.float32) * scale
                blob = w.tobytes()
                kept[:] = [blob]
            external(f"w{i}", [dim, dim], blob)
            external(f"b{i}", [dim], (rng.standard_normal(dim, dtype=np.float32) * 0.1).tobytes())
            nodes += [
                helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]),
                helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                helper.make_node("Tanh", [f"a{i}"], [f"h{i}"]),
            ]
            x = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = os.path.join(folder, "big.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path, offset, dup


def peak(cmd: list[str], cwd: str) -> dict:
    """Runs ``cmd`` in a fresh process; its exit code, wall time and peak RSS (bytes)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = proc.stdout.read() if proc.stdout is not None else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return {"rc": proc.returncode, "seconds": round(wall, 1), "peak_rss": usage.ru_maxrss * 1024,
            "last_line": last[:200]}  # fmt: skip


def _outputs(folder: str, name: str) -> dict:
    path = os.path.join(folder, name)
    data = path + ".data"
    return {
        "model_bytes": os.path.getsize(path) if os.path.exists(path) else None,
        "data_bytes": os.path.getsize(data) if os.path.exists(data) else None,
    }


def run(gb: float) -> dict:
    """Builds the model, measures every step, returns the results (files removed)."""
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="neffkit-big-") as d:
        t = time.perf_counter()
        path, weights, dup = build(d, gb)
        print(f"built {path}: {weights / 1e9:.2f} GB of weights ({dup / 1e9:.2f} GB duplicated) "
              f"in {time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
        neffkit = [py, "-m", "neffkit"]
        steps = [
            ("onnx.load + onnx.save (external data)", [py, "-c", _BASELINE, path, "baseline.onnx"],
             "baseline.onnx"),
            ("neffkit inspect", neffkit + ["inspect", path], None),
            ("neffkit optimize (verified)", neffkit + ["optimize", path, "-o", "opt.onnx"],
             "opt.onnx"),
            ("neffkit optimize --no-verify",
             neffkit + ["optimize", path, "-o", "opt_nv.onnx", "--no-verify"], "opt_nv.onnx"),
            ("neffkit convert (verified)", neffkit + ["convert", path, "-o", "model.pt"], None),
        ]  # fmt: skip
        rows = []
        for label, cmd, out in steps:
            r = peak(cmd, d)
            r["step"] = label
            r["ratio"] = round(r["peak_rss"] / weights, 2)
            if out is not None:
                r.update(_outputs(d, out))
            for made in (out, out and out + ".data", "model.pt"):
                if made and os.path.exists(os.path.join(d, made)):
                    os.unlink(os.path.join(d, made))  # keep the disk use to one copy
            rows.append(r)
            gbs = r["peak_rss"] / 1e9
            print(f"{label:<40} rc {r['rc']}  {r['seconds']:7.1f} s  peak {gbs:6.2f} GB  "
                  f"{r['ratio']:.2f}x weights", flush=True)  # fmt: skip
            if r["rc"] != 0:
                print(f"  {r['last_line']}", flush=True)
    return {"gb": gb, "weight_bytes": weights, "duplicated_bytes": dup, "rows": rows}


def markdown(res: dict) -> str:
    """The results as a Markdown table."""
    w = res["weight_bytes"]
    lines = [
        "# Peak memory on a model with external weights",
        "",
        f"Weights: {w / 1e9:.2f} GB float32 in one external file "
        f"({res['duplicated_bytes'] / 1e9:.2f} GB of them byte copies); `MatMul -> Add -> Tanh`"
        " layers of 4096x4096. Each step in a"
        " fresh process; peak RSS from the kernel. Target: `optimize` (verified) <= "
        f"{TARGET_RATIO}x the weights, output with external data. `python bench/big_model.py"
        f" --gb {res['gb']:g}`.",
        "",
        "| step | exit | seconds | peak RSS (GB) | x weights | output model / data (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        out = "-"
        if r.get("model_bytes") is not None:
            data = r.get("data_bytes")
            data_s = f"{data / 1e6:.0f}" if data is not None else "none"
            out = f"{r['model_bytes'] / 1e6:.2f} / {data_s}"
        lines.append(
            f"| {r['step']} | {r['rc']} | {r['seconds']} | {r['peak_rss'] / 1e9:.2f} | "
            f"{r['ratio']:.2f} | {out} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gb", type=float, default=2.0, help="weight size in GB (default 2)")
    a = p.parse_args(argv)
    res = run(a.gb)
    name = "big_model" if a.gb >= 1 else "big_model_small"
    md = markdown(res)
    jpath, mpath = write_results(name, res, md)
    print(md)
    print(f"wrote {jpath} and {mpath}")
    opt = next(r for r in res["rows"] if r["step"] == "neffkit optimize (verified)")
    ok = opt["rc"] == 0 and opt["ratio"] <= TARGET_RATIO and opt.get("data_bytes")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
