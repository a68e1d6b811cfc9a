"""Bench: neffkit.load + neffkit.save against onnx.load + onnx.save on synthetic models.

Run: ``python bench/load_save.py [--sizes 10000 100000] [--repeat 3]``. Target (issue 2):
at 100k nodes neffkit takes at most 6x the time of onnx's own load + save.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import timed, write_results  # noqa: E402

import neffkit  # noqa: E402
from neffkit.testing.synthetic import synthetic_model  # noqa: E402

TARGET_RATIO = 6.0


def measure(n: int, folder: str, repeat: int) -> dict:
    """Times both tools on one synthetic model of about ``n`` nodes and prints the row."""
    path = os.path.join(folder, f"m{n}.onnx")
    onnx.save(synthetic_model(n), path)
    nodes = len(onnx.load(path).graph.node)
    size_mb = os.path.getsize(path) / 1e6
    t_onnx, s_onnx = timed(lambda: onnx.save(onnx.load(path), path + ".onnx.out"), repeat)
    t_load, _ = timed(lambda: neffkit.load(path), repeat)
    g = neffkit.load(path)
    t_save, _ = timed(lambda: neffkit.save(g, path + ".neffkit.out"), repeat)
    t_both, s_both = timed(lambda: neffkit.save(neffkit.load(path), path + ".neffkit.out"), repeat)
    ratio = t_both / t_onnx
    print(
        f"{nodes:>7} nodes {size_mb:6.1f} MB  onnx {t_onnx:.3f}s  neffkit {t_both:.3f}s "
        f"(load {t_load:.3f}s, save {t_save:.3f}s)  ratio {ratio:.2f}x",
        flush=True,
    )
    return {
        "nodes": nodes,
        "file_mb": round(size_mb, 2),
        "onnx_load_save_s": round(t_onnx, 4),
        "neffkit_load_s": round(t_load, 4),
        "neffkit_save_s": round(t_save, 4),
        "neffkit_load_save_s": round(t_both, 4),
        "ratio": round(ratio, 2),
        "samples_onnx": [round(x, 4) for x in s_onnx],
        "samples_neffkit": [round(x, 4) for x in s_both],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in a.sizes:
            rows.append(measure(n, d, a.repeat))
    lines = [
        "# load + save: neffkit vs onnx",
        "",
        "`python bench/load_save.py` — median of "
        f"{a.repeat} runs, synthetic residual-MLP models (`neffkit.testing.synthetic`).",
        f"Target: ratio <= {TARGET_RATIO} at 100k nodes.",
        "",
        "| nodes | file MB | onnx load+save s | neffkit load s | neffkit save s "
        "| neffkit load+save s | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['nodes']} | {r['file_mb']} | {r['onnx_load_save_s']} | {r['neffkit_load_s']} "
            f"| {r['neffkit_save_s']} | {r['neffkit_load_save_s']} | {r['ratio']} |"
        )
    jpath, _ = write_results(
        "load_save", {"target_ratio": TARGET_RATIO, "rows": rows}, "\n".join(lines)
    )
    print(f"results: {jpath}")
    worst = (
        max(r["ratio"] for r in rows if r["nodes"] >= 100_000)
        if any(r["nodes"] >= 100_000 for r in rows)
        else None
    )
    return 0 if worst is None or worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
