"""Bench: neffkit's default pipeline against peer ONNX optimizers, all models x tools in one run.

Run: ``python bench/peers.py [--models NAME...] [--tools NAME...] [--runs N] [--quick]``.

Tools: neffkit (default pipeline, target onnxruntime; the torch target's node count is noted
too), onnxoptimizer (default passes, ``fixed_point=True``), onnxsim, onnxslim, the onnxscript
optimizer and onnxruntime's offline basic optimization. On the light_* models neffkit also runs
with a folding policy that never grows constants (``neffkit-nogrow``: ``fold{max-growth=1}``),
the other side of the fold-or-not trade-off.

Per model and tool, each in its own subprocess (``--timeout``, 600 s by default): node count
(subgraphs included), constant bytes (initializers + Constant nodes), optimize wall time
(ModelProto to ModelProto), ``onnx.checker`` (``full_check``) and the largest error against the
original. Then onnxruntime latency of all of a model's results in one more subprocess, with
ORT's graph optimizations off on one thread, the results taking turns (one run each per round,
so drifting machine load hits all alike), in 5 fresh processes one after another (where a
session's weights land in memory can move a memory-bound model's time by several percent):
median and p99 of >= ``--runs`` runs each, pooled.

A tool that crashes, times out, fails the checker or changes the numbers gets that status and
is no "best peer". Target (issue 3): no valid peer has both fewer nodes and fewer constant
bytes than neffkit. Results: ``bench/results/peers.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import write_results  # noqa: E402
from models import BUILDERS, LIGHT, inputs_for  # noqa: E402
from optimizers import PEERS, TOOLS, float64_outputs, run_latency, run_worker  # noqa: E402

QUICK_SKIP = ("bert_base",)
#: Smaller versions for ``--quick`` so a smoke run stays short.
QUICK_ARGS: dict[str, dict[str, int]] = {"unrolled_decoder": {"steps": 10}}


def status(row: dict[str, Any], original: dict[str, Any]) -> str:
    """ok, timeout, crash (while optimizing), run-error (result does not load or run),
    checker (fails ``full_check`` where the original passes) or mismatch (numbers changed)."""
    if row.get("timeout"):
        return "timeout"
    if "error" in row:
        return "run-error" if row.get("phase") == "evaluate" else "crash"
    if row.get("checker") != "ok" and original.get("checker") == "ok":
        return "checker"
    if not row.get("numerics", {}).get("agree", False):
        return "mismatch"
    return "ok"


def bench_model(name: str, tools: list[str], folder: str, a: argparse.Namespace) -> dict:
    """All tools on one model; prints a line per tool and returns the rows and the summary."""
    kwargs = QUICK_ARGS.get(name, {}) if a.quick else {}
    model = BUILDERS[name](**kwargs)
    src = os.path.join(folder, f"{name}.onnx")
    onnx.save(model, src)
    feeds_path, ref_path = os.path.join(folder, "feeds.npz"), os.path.join(folder, "ref.npz")
    np.savez(feeds_path, **inputs_for(model))
    del model
    # the float64 run of the original: how far float32 itself is from the exact values
    truth_path = os.path.join(folder, f"{name}.float64.npz")
    truth_error = float64_outputs(src, feeds_path, truth_path)
    truth = [] if truth_error else ["--truth", truth_path]
    rows: dict[str, dict[str, Any]] = {}
    outputs: dict[str, str] = {}
    for tool in ["original", *tools]:
        if tool == "neffkit-nogrow" and name not in LIGHT:
            continue
        dst = os.path.join(folder, f"{name}.{tool}.onnx")
        res = os.path.join(folder, f"{name}.{tool}.json")
        extra = ["--save-ref", ref_path] if tool == "original" else ["--ref", ref_path]
        row = run_worker(tool, src, dst, res, ["--feeds", feeds_path, *extra, *truth], a.timeout)
        rows[tool] = row
        row["status"] = "ok" if tool == "original" else status(row, rows["original"])
        if "numerics" in row or tool == "original":
            outputs[tool] = dst
        if tool == "original" and "error" in row:
            print(f"  the original does not run: {row['error']}; skipping {name}")
            break
    if "error" not in rows["original"]:
        res = os.path.join(folder, f"{name}.latency.json")
        lat = run_latency(outputs, feeds_path, a.runs, a.min_time, res, a.timeout)
        for tool in outputs:
            if tool in lat:
                rows[tool]["latency"] = lat[tool]
            elif rows[tool]["status"] == "ok":
                rows[tool]["status"] = "run-error"
                rows[tool]["error"] = f"latency run failed: {lat.get('error')}"
    for tool, row in rows.items():
        print(f"  {_line(tool, row)}", flush=True)
    for path in os.listdir(folder):
        if path.startswith(f"{name}."):
            os.unlink(os.path.join(folder, path))
    return {"rows": rows, "summary": summarize(rows), "float64_error": truth_error}


def _line(tool: str, r: dict[str, Any]) -> str:
    if "nodes" not in r:
        return f"{tool:15} {r['status']:9} {r.get('error', '')[:150]}"
    lat = r.get("latency", {})
    num = r.get("numerics", {})
    torch_nodes = f" (torch target {r['torch_target_nodes']})" if "torch_target_nodes" in r else ""
    return (
        f"{tool:15} {r['status']:9} nodes {r['nodes']:6}{torch_nodes} "
        f"const {r['constant_bytes'] / 1e6:8.2f} MB  "
        f"lat {1e3 * lat.get('median_s', float('nan')):8.3f} ms "
        f"(p99 {1e3 * lat.get('p99_s', float('nan')):8.3f})  "
        f"opt {r.get('optimize_s', 0):7.2f}s  max abs {num.get('max_abs', 0):.2g} "
        f"rel {num.get('max_rel', 0):.2g} (vs float64 {_rel64(r)})  "
        f"checker {r.get('checker', '?')[:60]}"
    )


def _rel64(r: dict[str, Any]) -> str:
    """Max rel error against the float64 run of the original ('n/a' when it could not run)."""
    v = r.get("vs_float64")
    return "n/a" if v is None else f"{v['max_rel']:.2g}"


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios of neffkit (and neffkit-nogrow) to the best valid peer per measure."""
    valid = {t: rows[t] for t in PEERS if t in rows and rows[t]["status"] == "ok"}
    out: dict[str, Any] = {"valid_peers": sorted(valid)}
    if not valid:
        return out
    best = {
        "nodes": min(valid, key=lambda t: valid[t]["nodes"]),
        "constant_bytes": min(valid, key=lambda t: valid[t]["constant_bytes"]),
        "latency": min(valid, key=lambda t: valid[t]["latency"]["median_s"]),
    }
    out["best_peer"] = best
    for tool in ("neffkit", "neffkit-nogrow"):
        r = rows.get(tool)
        if r is None or r["status"] != "ok":
            continue
        out[tool] = {
            "nodes_ratio": r["nodes"] / max(1, valid[best["nodes"]]["nodes"]),
            "bytes_ratio": r["constant_bytes"]
            / max(1, valid[best["constant_bytes"]]["constant_bytes"]),
            "latency_ratio": r["latency"]["median_s"]
            / valid[best["latency"]]["latency"]["median_s"],
            "peer_smaller_in_both": any(
                p["nodes"] < r["nodes"] and p["constant_bytes"] < r["constant_bytes"]
                for p in valid.values()
            ),
        }
    return out


def markdown(results: dict[str, dict], a: argparse.Namespace) -> str:
    """The summary table, then one table per model."""
    md = [
        "# neffkit vs peer ONNX optimizers",
        "",
        f"`python bench/peers.py{' --quick' if a.quick else ''}` — latency: onnxruntime with "
        f"its graph optimizations off, 1 thread, median / p99 of >= {a.runs} runs pooled from "
        "5 fresh processes (the models take turns in each). Ratios are "
        "neffkit / best valid peer (lower is better). A peer is valid when it finished, passed "
        "`onnx.checker` (full_check) and kept the numbers: per output, max rel error <= 1e-4 "
        "where the reference is not near zero (|ref| >= 1e-2 x max|ref| of that output), or "
        "max abs error <= 1e-5. 'max rel (1e-3 floor)' is the same error where |ref| > 1e-3. "
        "'vs float64': max rel error (same floor) against the original run in float64 "
        "(weights widened exactly; run by onnxruntime, or by onnx.reference where onnxruntime "
        "lacks a float64 kernel) - the original's own row there is what float32 rounding "
        "alone costs. `neffkit-nogrow` (light_* only): folding that never grows constants. "
        "Optimize time is ModelProto to ModelProto, except ort-basic (file to file).",
        "",
        "| model | neffkit | nodes ratio | bytes ratio | latency ratio "
        "| peer smaller in both | best peer (nodes / bytes / latency) | valid peers |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for name, res in results.items():
        s = res["summary"]
        for tool in ("neffkit", "neffkit-nogrow"):
            if tool not in res["rows"]:
                continue
            r = s.get(tool)
            peers = ", ".join(s["valid_peers"])
            best = " / ".join(s.get("best_peer", {}).values())
            if r is None:
                st = res["rows"][tool]["status"]
                md.append(f"| {name} | {tool} | {st} | | | | {best} | {peers} |")
                continue
            md.append(
                f"| {name} | {tool} | {r['nodes_ratio']:.3f} | {r['bytes_ratio']:.3f} "
                f"| {r['latency_ratio']:.3f} | {r['peer_smaller_in_both']} | {best} | {peers} |"
            )
    for name, res in results.items():
        md += [
            "",
            f"## {name}",
            "",
            "| tool | status | nodes | const MB | median ms | p99 ms | optimize s "
            "| checker | max abs | max rel | max rel (1e-3 floor) | vs float64 |",
            "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for tool, r in res["rows"].items():
            if "nodes" not in r:
                md.append(
                    f"| {tool} | {r['status']} | | | | | | {r.get('error', '')[:120]} | | | | |"
                )
                continue
            lat, num = r.get("latency", {}), r.get("numerics", {})
            nodes = str(r["nodes"])
            if "torch_target_nodes" in r:
                nodes += f" (torch {r['torch_target_nodes']})"
            md.append(
                f"| {tool} | {r['status']} | {nodes} | {r['constant_bytes'] / 1e6:.3f} "
                f"| {1e3 * lat.get('median_s', float('nan')):.3f} "
                f"| {1e3 * lat.get('p99_s', float('nan')):.3f} | {r.get('optimize_s', 0):.2f} "
                f"| {r.get('checker', '')[:60]} | {num.get('max_abs', 0):.2g} "
                f"| {num.get('max_rel', 0):.2g} | {num.get('max_rel_1e-3', 0):.2g} "
                f"| {_rel64(r)} |"
            )
        if res.get("float64_error"):
            md += ["", f"float64 run of the original: not possible ({res['float64_error']})."]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="+", choices=list(BUILDERS), help="default: all")
    p.add_argument("--tools", nargs="+", choices=[t for t in TOOLS], help="default: all")
    p.add_argument("--runs", type=int, default=50, help="latency runs per model and tool")
    p.add_argument("--min-time", type=float, default=2.0, help="latency: run at least this long")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per tool and model")
    p.add_argument("--quick", action="store_true", help="10 runs, no BERT, a shorter decoder")
    a = p.parse_args(argv)
    if a.quick:
        a.runs, a.min_time = min(a.runs, 10), 0.2
    models = a.models or [m for m in BUILDERS if not (a.quick and m in QUICK_SKIP)]
    tools = a.tools or list(TOOLS)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="neffkit-peers-") as folder:
        for name in models:
            print(f"{name}:", flush=True)
            results[name] = bench_model(name, tools, folder, a)
    data = {"runs": a.runs, "quick": a.quick, "timeout_s": a.timeout, "models": results}
    jpath, _ = write_results("peers", data, markdown(results, a))
    print(f"results: {jpath}")
    bad = [
        name
        for name, res in results.items()
        if "neffkit" in res["rows"]
        and (
            res["rows"]["neffkit"]["status"] != "ok"
            or res["summary"].get("neffkit", {}).get("peer_smaller_in_both", False)
        )
    ]
    if bad:
        print(f"neffkit failed or was beaten in both nodes and bytes on: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
