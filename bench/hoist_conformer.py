"""Bench: ``hoist`` on the Conformer decoder loop (``neffkit example conformer``).

Counts the nodes of the decoder ``Loop`` body (run once per decoding step) before and after
``hoist``, what moved out, and times the whole model through onnxruntime on the example image
(CPU, 1 thread, median of ``--runs`` runs, the variants interleaved so machine noise hits them
alike). Variants: the exported model as is, with ``hoist``; the default pipeline without
``hoist``, and with ``hoist`` in its group (before ``cse``). Every variant's tokens must equal the
original's.

Run: ``python bench/hoist_conformer.py [--runs 30]``. Writes
``bench/results/hoist_conformer.{md,json}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import write_results  # noqa: E402

from neffkit.examples.conformer import example_input, export_conformer_onnx  # noqa: E402
from neffkit.ir.core import Graph  # noqa: E402
from neffkit.ir.serde import to_onnx  # noqa: E402
from neffkit.optimize import DEFAULT_PIPELINES, optimize  # noqa: E402

VARIANTS = ("exported", "exported+hoist", "default", "default+hoist")


def body_nodes(g: Graph) -> int:
    """Nodes of the decoder loop's body."""
    (loop,) = [n for n in g if n.op_type == "Loop"]
    return len(loop.attr("body"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    import onnxruntime as ort

    import neffkit

    proto = export_conformer_onnx()
    image = example_input()
    # the default group without hoist, and with hoist before cse (where the default has it)
    default = DEFAULT_PIPELINES["onnxruntime"].replace("hoist,", "")
    with_hoist = default.replace(",cse,", ",hoist,cse,")
    graphs: dict[str, Graph] = {}
    for name, passes in [
        ("exported", None),
        ("exported+hoist", "hoist"),
        ("default", default),
        ("default+hoist", with_hoist),
    ]:
        if passes is None:
            graphs[name] = neffkit.load(proto)
            continue
        g, _ = optimize(proto, passes, target="onnxruntime", inputs={"image": image})
        graphs[name] = g
    # what moved, on the exported model
    g = neffkit.load(proto)
    (loop,) = [n for n in g if n.op_type == "Loop"]
    body = loop.attr("body")
    before_body = set(body)
    from neffkit.passes import PassContext, get_pass

    result = get_pass("hoist")().run(g, PassContext())
    moved_ops = Counter(n.op_type for n in g if n in before_body)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sessions = {
        k: ort.InferenceSession(
            to_onnx(v).SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        for k, v in graphs.items()
    }
    want = sessions["exported"].run(None, {"image": image})[0]
    for k, s in sessions.items():
        got = s.run(None, {"image": image})[0]
        if not np.array_equal(got, want):
            raise SystemExit(f"{k}: tokens differ from the exported model's")
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.runs):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"image": image})
            times[k].append(time.perf_counter() - t)
    steps = int(want.shape[1])
    rows = []
    for k in VARIANTS:
        med = float(np.median(times[k]) * 1e3)
        rows.append({"variant": k, "body_nodes": body_nodes(graphs[k]), "median_ms": med})
    data = {
        "runs": args.runs,
        "decoding_steps": steps,
        "hoist_stats_exported": result.stats,
        "moved_ops_exported": dict(moved_ops),
        "variants": rows,
        "pipeline_with_hoist": with_hoist,
    }
    md = [
        "# hoist on the Conformer decoder loop",
        "",
        f"onnxruntime CPU, 1 thread, median of {args.runs} interleaved runs, example image "
        f"[1,1,32,128], {steps} tokens out (tokens equal in every variant).",
        f"`hoist` on the exported model: {result.stats}; moved ops: {dict(moved_ops)}.",
        "",
        "| variant | body nodes (per step) | median ms |",
        "|---|---:|---:|",
    ]
    md += [f"| {r['variant']} | {r['body_nodes']} | {r['median_ms']:.1f} |" for r in rows]
    md.append("")
    md.append(f"`default+hoist` pipeline: `{with_hoist}`")
    text = "\n".join(md)
    print(text)
    write_results("hoist_conformer", data, text)


if __name__ == "__main__":
    main()
