"""Bench: the torch backend on CUDA — whole models against onnxruntime, eager and scripted.

Run on a machine with a CUDA GPU: ``python bench/gpu_check.py [--models DIR] [--out FILE]``.
Checks that the lowered modules run with weights and inputs on the GPU and give the same
outputs as onnxruntime on the CPU, and times eager CPU against eager CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import neffkit  # noqa: E402
from neffkit.backends import onnxruntime as ort_backend  # noqa: E402
from neffkit.backends.torch import compile, prepare_inputs, to_numpy  # noqa: E402
from neffkit.testing.onnx_cases import light_cases  # noqa: E402


def _time(fn, runs: int = 20) -> float:
    fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


DEVICES = ["cpu", "cuda"]


def check_model(name: str, graph: neffkit.Graph, feeds, expected=None) -> dict:
    row: dict = {"model": name}
    want = expected if expected is not None else ort_backend.run(graph, feeds)
    for device in DEVICES:
        module = compile(graph, device)
        args = prepare_inputs(graph, feeds, device)
        with torch.no_grad():
            outs = [to_numpy(o) for o in module(*args)]
            row[f"{device}_s"] = _time(lambda m=module, a=args: m(*a))
        err = max(
            float(np.max(np.abs(o.astype(np.float64) - w.astype(np.float64)))) if o.size else 0.0
            for o, w in zip(outs, want)
        )
        row[f"{device}_max_abs_err"] = err
        if device == DEVICES[-1]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.script(module)
            with torch.no_grad():
                souts = [to_numpy(o) for o in scripted(*args)]
            row[f"{device}_scripted_max_abs_err"] = max(
                float(np.max(np.abs(o.astype(np.float64) - w.astype(np.float64))))
                if o.size
                else 0.0
                for o, w in zip(souts, want)
            )
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", default=".gpu", help="folder with conformer.onnx, encoder.onnx")
    p.add_argument("--out", default="bench/results/gpu_check.json")
    p.add_argument("--devices", default="cpu,cuda", help="devices to run on (default cpu,cuda)")
    a = p.parse_args()
    DEVICES[:] = a.devices.split(",")
    if "cuda" in DEVICES and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    rows = []
    for fname in ("conformer.onnx", "encoder.onnx"):
        path = os.path.join(a.models, fname)
        if os.path.exists(path):
            g = neffkit.load(path)
            feeds = neffkit.api.random_inputs(g, seed=0)
            rows.append(check_model(fname, g, feeds))
            opt, _ = neffkit.optimize(g, verify=False)
            rows.append(check_model(fname + " (optimized)", opt, feeds, ort_backend.run(g, feeds)))
    for case in light_cases():
        inputs, outputs = case.data_sets[0]
        g = neffkit.load(case.load_model())
        rows.append(check_model(case.name, g, inputs, outputs))
    info = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "rows": rows,
    }
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(info, f, indent=2)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
