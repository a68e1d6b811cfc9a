"""Bench: neffkit's default pipeline file to file on 10k- and 100k-node models, against onnx's
own load + save and against the peer optimizers.

Run: ``python bench/scaling.py [--sizes 10000 100000] [--timeout 600] [--tools NAME...]``.

Each tool optimizes a synthetic model (``neffkit.testing.synthetic``) from file to file in its
own subprocess: neffkit as ``neffkit optimize`` does it (load, the default target's pipeline,
save; no verification; median of ``--repeat``), each peer once (onnx.load, optimize,
onnx.save). A tool that does not finish within ``--timeout`` seconds is reported as "> timeout"
and not run on larger sizes. Targets (issue 3): at 100k nodes neffkit takes <= 20x onnx's
load + save, its time grows <= 12x from 10k to 100k nodes, and it is faster than every peer
that finishes.
Results: ``bench/results/scaling.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import timed, write_results  # noqa: E402
from optimizers import PEERS, count_nodes, run_worker  # noqa: E402

from neffkit.testing.synthetic import synthetic_model  # noqa: E402

TARGET_RATIO = 20.0
TARGET_GROWTH = 12.0


def measure(n: int, folder: str, tools: list[str], a: argparse.Namespace, gave_up: dict) -> dict:
    """All tools on one synthetic model of about ``n`` nodes; prints a line per tool."""
    path = os.path.join(folder, f"m{n}.onnx")
    onnx.save(synthetic_model(n), path)
    nodes = count_nodes(onnx.load(path))
    t_onnx, _ = timed(lambda: onnx.save(onnx.load(path), path + ".copy.onnx"), a.repeat)
    print(f"{nodes} nodes: onnx load+save {t_onnx:.3f}s", flush=True)
    row: dict[str, Any] = {"nodes": nodes, "onnx_load_save_s": t_onnx, "tools": {}}
    for tool in tools:
        if tool in gave_up:
            r = {"timeout": True, "skipped": f"timed out at {gave_up[tool]} nodes"}
            row["tools"][tool] = r
            print(f"  {tool:14} > {a.timeout:.0f} s (skipped: {r['skipped']})", flush=True)
            continue
        dst = os.path.join(folder, f"m{n}.{tool}.onnx")
        res = os.path.join(folder, f"m{n}.{tool}.json")
        opts = ["--file-mode", "--target", "torch", "--repeat", str(a.repeat)]
        opts = opts if tool == "neffkit" else []
        r = run_worker(tool, path, dst, res, opts, a.timeout)
        r.pop("traceback", None)
        if r.get("timeout"):
            gave_up[tool] = nodes
        elif "error" not in r and os.path.exists(dst):
            r["nodes_after"] = count_nodes(onnx.load(dst))
        for p in (dst, dst + ".data"):
            if os.path.exists(p):
                os.unlink(p)
        row["tools"][tool] = r
        print(f"  {tool:14} {_cell(r, a.timeout)}", flush=True)
    return row


def _cell(r: dict[str, Any], timeout: float) -> str:
    if r.get("timeout"):
        return f"> {timeout:.0f} s"
    if "error" in r:
        return f"error: {r['error'][:100]}"
    return (
        f"{r['total_s']:.2f}s (load {r['load_s']:.2f}, optimize {r['optimize_s']:.2f}, "
        f"save {r['save_s']:.2f}) -> {r.get('nodes_after', '?')} nodes"
    )


def _time(r: dict[str, Any] | None) -> float | None:
    if r is None or r.get("timeout") or "error" in r:
        return None
    return r["total_s"]


def summarize(rows: list[dict], tools: list[str]) -> dict[str, Any]:
    """Ratio to onnx load+save, growth between the smallest and largest size, peer speed-ups."""
    out: dict[str, Any] = {"per_size": [], "growth": {}}
    for row in rows:
        nk = _time(row["tools"].get("neffkit"))
        entry: dict[str, Any] = {"nodes": row["nodes"]}
        if nk is not None:
            entry["neffkit_ratio_to_onnx"] = nk / row["onnx_load_save_s"]
            entry["neffkit_faster_than"] = {
                t: nk < _time(row["tools"][t])
                for t in tools
                if t != "neffkit" and _time(row["tools"].get(t)) is not None
            }
            entry["peer_speedup"] = {
                t: _time(row["tools"][t]) / nk for t in entry["neffkit_faster_than"]
            }
        out["per_size"].append(entry)
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        for t in tools:
            a, b = _time(lo["tools"].get(t)), _time(hi["tools"].get(t))
            if a and b:
                out["growth"][t] = b / a
        out["growth"]["onnx"] = hi["onnx_load_save_s"] / lo["onnx_load_save_s"]
        out["growth_sizes"] = [lo["nodes"], hi["nodes"]]
    return out


def markdown(rows: list[dict], summary: dict, tools: list[str], a: argparse.Namespace) -> str:
    md = [
        "# Optimizer scaling: file to file on synthetic models",
        "",
        "`python bench/scaling.py` — seconds for load + optimize + save (neffkit: default "
        f"pipeline, no verification, median of {a.repeat}; peers: one run; onnx: load + save "
        f"only). '> {a.timeout:.0f} s': did not finish within the timeout. Targets: neffkit <= "
        f"{TARGET_RATIO:.0f}x onnx load+save at 100k nodes, growth <= {TARGET_GROWTH:.0f}x "
        "from 10k to 100k, faster than every peer that finishes.",
        "",
        "| nodes | onnx load+save | " + " | ".join(tools) + " | neffkit / onnx |",
        "|---:|---:|" + "---:|" * len(tools) + "---:|",
    ]
    for row, s in zip(rows, summary["per_size"], strict=True):
        cells = []
        for t in tools:
            r = row["tools"][t]
            v = _time(r)
            cells.append(
                f"> {a.timeout:.0f} s" if r.get("timeout") else "error" if v is None else f"{v:.2f}"
            )
        ratio = s.get("neffkit_ratio_to_onnx")
        md.append(
            f"| {row['nodes']} | {row['onnx_load_save_s']:.3f} | "
            + " | ".join(cells)
            + f" | {'' if ratio is None else f'{ratio:.1f}x'} |"
        )
    if summary["growth"]:
        lo, hi = summary["growth_sizes"]
        md += ["", f"Growth {lo} -> {hi} nodes (time ratio):", ""]
        md += [f"- {t}: {g:.1f}x" for t, g in summary["growth"].items()]
    md += ["", "neffkit faster than each peer that finished (peer time / neffkit time):", ""]
    for s in summary["per_size"]:
        pairs = ", ".join(
            f"{t} {'yes' if ok else 'NO'} ({s['peer_speedup'][t]:.1f}x)"
            for t, ok in s.get("neffkit_faster_than", {}).items()
        )
        md.append(f"- {s['nodes']} nodes: {pairs or 'no peer finished'}")
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per tool and size")
    p.add_argument("--repeat", type=int, default=3, help="neffkit and onnx: median of this many")
    p.add_argument("--tools", nargs="+", choices=["neffkit", *PEERS], help="default: all")
    a = p.parse_args(argv)
    tools = a.tools or ["neffkit", *PEERS]
    rows: list[dict] = []
    gave_up: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="neffkit-scaling-") as d:
        for n in sorted(a.sizes):
            rows.append(measure(n, d, tools, a, gave_up))
    summary = summarize(rows, tools)
    data = {
        "timeout_s": a.timeout,
        "target_ratio": TARGET_RATIO,
        "target_growth": TARGET_GROWTH,
        "rows": rows,
        "summary": summary,
    }
    jpath, _ = write_results("scaling", data, markdown(rows, summary, tools, a))
    print(f"results: {jpath}")
    ok = True
    big = [s for s in summary["per_size"] if s["nodes"] >= 100_000]
    if any(s.get("neffkit_ratio_to_onnx", float("inf")) > TARGET_RATIO for s in big):
        ok = False
    lo, hi = summary.get("growth_sizes", [1, 1])
    tenfold = 8 <= hi / lo <= 12  # the growth target is for 10k -> 100k
    if tenfold and summary["growth"].get("neffkit", 0.0) > TARGET_GROWTH:
        ok = False
    if any(not all(s.get("neffkit_faster_than", {}).values()) for s in summary["per_size"]):
        ok = False
    print(f"targets {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
