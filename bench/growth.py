"""Bench: what folding the run-time weights of the onnx package's ``light_*`` models costs.

Run: ``python bench/growth.py [--models light_bvlc_alexnet light_vgg19 light_resnet50]
[--runs 10]``. These IR v3 models build every weight at run time with ``ConstantOfShape`` from
shape inputs that have initializers. Per model, four files: the original, ``neffkit
optimize``'s default pipeline (folds the weights: the file grows, and optimize warns), the
pipeline its warning suggests (``fold{max-growth=1}``), and ``--keep-overridable-inputs``. For
each: file size, constant bytes, node count, onnxruntime latency (its own optimizations off,
1 thread; median and p99 of ``--runs`` runs, the files taking turns in shuffled order),
session creation time and the largest difference from the original's outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import write_results  # noqa: E402
from models import ramp_inputs  # noqa: E402
from optimizers import constant_bytes, count_nodes, latency, session  # noqa: E402

import neffkit  # noqa: E402
from neffkit.report import format_bytes  # noqa: E402
from neffkit.testing.onnx_cases import data_dir  # noqa: E402

MODELS = ("light_bvlc_alexnet", "light_vgg19", "light_resnet50")
VARIANTS = ("original", "default", "nogrow", "keep-inputs")


def optimize_variants(src: str, folder: str) -> dict[str, dict[str, Any]]:
    """Writes the three optimized files; returns per variant its path and optimize facts."""
    out: dict[str, dict[str, Any]] = {"original": {"path": src}}
    graph, report = neffkit.optimize(src, verify=False)
    suggested = report.growth.nogrow_pipeline if report.growth is not None else None
    runs: list[tuple[str, Any, Any]] = [("default", graph, report)]
    for name, kwargs in (
        ("nogrow", {"passes": suggested}),
        ("keep-inputs", {"keep_overridable_inputs": True}),
    ):
        g, r = neffkit.optimize(src, verify=False, **kwargs)
        runs.append((name, g, r))
    for name, g, r in runs:
        path = os.path.join(folder, f"{name}.onnx")
        neffkit.save(g, path)
        growth = r.growth
        out[name] = {
            "path": path,
            "pipeline": r.pipeline,
            "optimize_s": round(r.seconds, 3),
            "warned": bool(growth is not None and growth.warn),
        }
    return out


def measure(name: str, runs: int, folder: str) -> dict[str, Any]:
    """All four files of one model, measured and printed."""
    src = os.path.join(data_dir(), "light", f"{name}.onnx")
    variants = optimize_variants(src, folder)
    feeds = ramp_inputs(onnx.load(src))
    feeds_path = os.path.join(folder, "feeds.npz")
    np.savez(feeds_path, **feeds)
    ref = session(src).run(None, feeds)
    for v in variants.values():
        path = v["path"]
        model = onnx.load(path)
        v["file_bytes"] = os.path.getsize(path)
        v["constant_bytes"] = constant_bytes(model)
        v["nodes"] = count_nodes(model)
        t = time.perf_counter()
        sess = session(path)
        v["session_s"] = round(time.perf_counter() - t, 3)
        got = sess.run(None, {k: a for k, a in feeds.items() if k in _input_names(sess)})
        v["max_abs_error"] = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, got))
    times = latency({k: v["path"] for k, v in variants.items()}, feeds_path, runs, 0.0)
    for k, v in variants.items():
        v["latency_ms"] = round(times[k]["median_s"] * 1e3, 2)
        v["latency_p99_ms"] = round(times[k]["p99_s"] * 1e3, 2)
        v["runs"] = times[k]["runs"]
        del v["path"]
        print(
            f"{name:<20} {k:<12} {format_bytes(v['file_bytes']):>10} {v['nodes']:>5} nodes "
            f"{v['latency_ms']:>9.2f} ms  warned={v.get('warned', '-')}",
            flush=True,
        )
    return variants


def _input_names(sess: Any) -> set[str]:
    return {i.name for i in sess.get_inputs()}


def markdown(rows: dict[str, dict[str, dict[str, Any]]], runs: int) -> str:
    lines = [
        "# Folding run-time weights: file size against latency",
        "",
        f"`python bench/growth.py --runs {runs}` — the onnx package's IR v3 `light_*` models, "
        "whose weights are `ConstantOfShape` of shape inputs that have initializers. "
        "default: `neffkit optimize` (folds them, warns); nogrow: the pipeline the warning "
        "suggests (`fold{max-growth=1.0}`); keep-inputs: `--keep-overridable-inputs`. "
        "Latency: onnxruntime, its optimizations off, 1 thread, median / p99 of the runs, "
        "files taking turns. session: time to create the onnxruntime session. max abs err: "
        "against the original's outputs.",
        "",
        "| model | variant | file | constants | nodes | latency ms (median) | p99 ms "
        "| session s | optimize s | warned | max abs err |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, variants in rows.items():
        for k, v in variants.items():
            lines.append(
                f"| {name} | {k} | {format_bytes(v['file_bytes'])} | "
                f"{format_bytes(v['constant_bytes'])} | {v['nodes']} | {v['latency_ms']} | "
                f"{v['latency_p99_ms']} | {v['session_s']} | {v.get('optimize_s', '-')} | "
                f"{v.get('warned', '-')} | {v['max_abs_error']:.1e} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--runs", type=int, default=10)
    a = p.parse_args(argv)
    rows = {}
    for name in a.models:
        with tempfile.TemporaryDirectory() as d:
            rows[name] = measure(name, a.runs, d)
    jpath, _ = write_results("growth", {"runs": a.runs, "models": rows}, markdown(rows, a.runs))
    print(f"results: {jpath}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
