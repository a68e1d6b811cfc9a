"""The torch backend's modules through PyTorch's compilers: per model and compiler, compile time,
latency (median and p99) against the eager module and onnxruntime, and max error.

    python bench/compilers.py [--models a,b] [--compilers trace,export,compile] [--size small]
                              [--runs 50] [--name compilers]

Each model is optimized for torch (``neffkit.optimize(..., target="torch")``), lowered, and handed
to ``torch.jit.trace``, ``torch.export.export`` (run through ``.module()``) and
``torch.compile(fullgraph=True)`` (inductor on the CPU). Compile time includes the first call
(when inductor builds its kernels). Latencies are on one thread for torch and onnxruntime alike
(onnxruntime with its default graph optimizations); errors are max |compiled - onnxruntime| over
all outputs. Results go to bench/results/compilers.{json,md}, written after every model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import models  # noqa: E402
from bench.common import write_results  # noqa: E402

COMPILERS = ("trace", "export", "compile")

#: Sizes: "full" is the bench models as built; "small" shrinks the torch-exported ones so that
#: inductor's kernel builds fit a shared 2-core machine (the light_* models have fixed sizes).
SIZES: dict[str, dict[str, Callable[[], onnx.ModelProto]]] = {
    "small": {
        "conformer_encoder": lambda: models.conformer_encoder(),
        "conformer_decoder_step": lambda: models.conformer_decoder_step(),
        "bert_base": lambda: models.bert_base_encoder(layers=2, hidden=256, heads=4, seq=64),
        **{n: (lambda n=n: models.light_model(n)) for n in models.LIGHT},
    },
    "full": {
        n: models.BUILDERS[n]
        for n in ("conformer_encoder", "conformer_decoder_step", "bert_base", *models.LIGHT)
    },
}
SIZE_NOTES = {
    "small": "Conformer encoder and decoder step as built (d_model 144); BERT 2 layers, hidden "
    "256, 4 heads, sequence 64 (bert_base is 12 x 768 x 128); light_* models as shipped",
    "full": "the bench models as built",
}


def _latency(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median and p99 of ``runs`` calls, in milliseconds (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(round(0.99 * (len(samples) - 1))))]
    return statistics.median(samples), p99


def _max_error(want: list[np.ndarray], got: list[Any]) -> float:
    import torch

    err = 0.0
    for w, g in zip(want, got):
        g = g.detach().numpy() if isinstance(g, torch.Tensor) else np.asarray(g)
        w = np.asarray(w)
        if w.size:
            err = max(err, float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))))
    return err


def _compile(compiler: str, gm: Any, args: tuple) -> Callable[..., Any]:
    import torch

    if compiler == "trace":
        return torch.jit.trace(gm, args, check_trace=False)
    if compiler == "export":
        return torch.export.export(gm, args).module()
    torch._dynamo.reset()
    return torch.compile(gm, fullgraph=True)


def bench_model(name: str, build: Callable[[], onnx.ModelProto], compilers: list[str], runs: int):
    """One model: onnxruntime and eager torch baselines, then each compiler."""
    import onnxruntime as ort
    import torch

    import neffkit
    from neffkit.backends.torch import compile as lower
    from neffkit.backends.torch import prepare_inputs

    model = build()
    feeds = models.inputs_for(model)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    row: dict[str, Any] = {"model": name, "load_average": load, "cpus": os.cpu_count()}
    row["ort_ms"], row["ort_p99_ms"] = _latency(lambda: sess.run(None, feeds), runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, _ = neffkit.optimize(model, target="torch", verify=False)
    t = time.perf_counter()
    gm = lower(graph)
    row["lower_s"] = time.perf_counter() - t
    args = tuple(prepare_inputs(graph, feeds))
    with torch.no_grad():
        row["eager_ms"], row["eager_p99_ms"] = _latency(lambda: gm(*args), runs)
        row["eager_err"] = _max_error(want, list(gm(*args)))
        for compiler in compilers:
            res: dict[str, Any] = {}
            row[compiler] = res
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t = time.perf_counter()
                    fn = _compile(compiler, gm, args)
                    outs = fn(*args)
                    res["compile_s"] = time.perf_counter() - t
                    res["ms"], res["p99_ms"] = _latency(lambda fn=fn: fn(*args), runs)
                res["err"] = _max_error(want, list(outs))
                res["ok"] = True
            except Exception as e:  # noqa: BLE001 - a failing compiler is a result
                res["ok"] = False
                res["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                traceback.print_exc()
    return row


def _cell(res: dict[str, Any] | None) -> str:
    if res is None:
        return "-"
    if not res.get("ok"):
        return "FAIL"
    return f"{res['compile_s']:.1f} s / {res['ms']:.2f} ({res['p99_ms']:.2f}) ms / {res['err']:.1e}"


def markdown(rows: list[dict[str, Any]], compilers: list[str], size: str, runs: int) -> str:
    """The results table and the failures, as Markdown."""
    lines = [
        "# The torch backend through PyTorch's compilers",
        "",
        f"`python bench/compilers.py --size {size}` ({SIZE_NOTES[size]}). CPU, one thread for "
        f"torch and onnxruntime; latencies over {runs} runs after a warm-up. A compiler cell is "
        "compile time (first call included) / median (p99) latency / max |error| against "
        "onnxruntime.",
        "",
        "| model | onnxruntime ms | eager torch ms | " + " | ".join(compilers) + " |",
        "|---|---:|---:|" + "---:|" * len(compilers),
    ]
    for r in rows:
        cells = [_cell(r.get(c)) for c in compilers]
        lines.append(
            f"| {r['model']} | {r['ort_ms']:.2f} ({r['ort_p99_ms']:.2f}) | "
            f"{r['eager_ms']:.2f} ({r['eager_p99_ms']:.2f}) | " + " | ".join(cells) + " |"
        )
    loads = [r["load_average"] for r in rows if r.get("load_average") is not None]
    if loads:
        lines += [
            "",
            f"Load average when each model started: {min(loads):.1f} to {max(loads):.1f} on "
            f"{rows[0]['cpus']} CPUs; on a shared machine the latencies are upper bounds and a "
            "row's columns were measured minutes apart.",
        ]
    fails = [(r["model"], c, r[c]["error"]) for r in rows for c in compilers if "error" in r[c]]
    if fails:
        lines += ["", "Failures:", ""]
        lines += [f"- {m} / {c}: {e}" for m, c, e in fails]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated (default: all of --size)")
    p.add_argument("--compilers", default=",".join(COMPILERS))
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--name", default="compilers", help="results file name under bench/results")
    a = p.parse_args()
    import torch

    torch.set_num_threads(1)
    builders = SIZES[a.size]
    names = a.models.split(",") if a.models else list(builders)
    compilers = a.compilers.split(",")
    rows: list[dict[str, Any]] = []
    for name in names:
        print(f"== {name}", flush=True)
        rows.append(bench_model(name, builders[name], compilers, a.runs))
        md = markdown(rows, compilers, a.size, a.runs)
        write_results(a.name, {"size": a.size, "runs": a.runs, "rows": rows}, md)
    print(markdown(rows, compilers, a.size, a.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
