"""Bench: ``dwconv`` strategies against the original depthwise Conv, per shape and backend.

Workloads (after the target's default pipeline, which folds BatchNorm into the convs):

- the Conformer convolution module (LayerNorm, pointwise + GLU, depthwise Conv1d kernel 15,
  BatchNorm, SiLU, pointwise) with 256 channels, sequence 64 / 128 / 256 / 512, batch 1 and 8;
- a MobileNet-style block (depthwise 3x3 + BatchNorm + ReLU6 + pointwise), stride 1 and 2;
- the whole Conformer encoder (the example's, sequence 128), original against ``auto``.

Variants: the original, each strategy forced (``dense`` without its channel limit), and
``auto`` (its measurements in a fresh cache folder, so it measures here). Each variant's output
must match the original's; the variants are timed in interleaved rounds through
``neffkit.execution`` (the backends as ``auto`` sees them: onnxruntime CPU with its graph
optimizations off and one thread, torch eager), median per variant. Targets checked per shape:
``auto`` at most 2% slower than the original and within 5% of the fastest variant.

Run: ``python bench/dwconv.py [--device cuda] [--quick] [--out DIR]``. Writes
``bench/results/dwconv.{json,md}`` (``--out``: another folder).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import RESULTS, machine  # noqa: E402

STRATEGIES = ("shift-mac", "dense", "unfold-matmul")
VARIANTS = ("original", *STRATEGIES, "auto")
#: auto may be this much slower than the original, and this much slower than the fastest
TOL_ORIGINAL = 0.02
TOL_FASTEST = 0.05


def _export(module: Any, example: Any) -> Any:
    """``module`` (eval) as an ONNX model with static shapes."""
    import io

    import onnx
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), buf, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])  # fmt: skip
    return onnx.load_from_string(buf.getvalue())


def conformer_module(channels: int, seq: int, batch: int) -> tuple[Any, np.ndarray]:
    """The convolution module of the example Conformer's first block, ``channels`` wide
    (depthwise kernel 15; the example's random weights and BatchNorm statistics)."""
    import torch

    from neffkit.examples.conformer import build_conformer_encoder

    module = build_conformer_encoder(d_model=channels, num_heads=4, encoder_layers=1)
    x = np.random.default_rng(0).standard_normal([batch, seq, channels]).astype(np.float32)
    return _export(module.blocks[0].conv, torch.from_numpy(x)), x


def mobilenet_block(channels: int, size: int, stride: int, batch: int) -> tuple[Any, np.ndarray]:
    """Depthwise 3x3 (stride 1 or 2) + BatchNorm + ReLU6 + pointwise, as in MobileNetV2."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU6(),
        nn.Conv2d(channels, channels, 1, bias=False),
    )
    with torch.no_grad():
        module[1].running_mean.uniform_(-0.5, 0.5)
        module[1].running_var.uniform_(0.5, 2.0)
    x = np.random.default_rng(0).standard_normal([batch, channels, size, size]).astype(np.float32)
    return _export(module, torch.from_numpy(x)), x


def variants(
    proto: Any, target: str, device: str | None, names: tuple[str, ...], budget: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The graph of each variant (after the target's default pipeline), and auto's stats."""
    from neffkit.execution import as_graph
    from neffkit.ir.clone import clone_graph
    from neffkit.optimize import DEFAULT_PIPELINES
    from neffkit.passes import PassContext, PassManager

    ctx = PassContext(target=target, options={"device": device} if device else {})
    base = as_graph(proto)
    PassManager(DEFAULT_PIPELINES[target], ctx=ctx).run(base)
    graphs: dict[str, Any] = {}
    auto: dict[str, Any] = {}
    for name in names:
        g = clone_graph(base)
        if name == "auto":
            spec = f"dwconv{{budget={budget}}},dce"
        elif name != "original":
            spec = f"dwconv{{strategy={name},dense-max-channels=100000}},dce"
        else:
            spec = ""
        if spec:
            start = time.perf_counter()
            report = PassManager(spec, ctx=ctx).run(g)
            if name == "auto":
                auto = dict(report.records[0].stats)
                auto["pass_seconds"] = round(time.perf_counter() - start, 3)
        graphs[name] = g
    return graphs, auto


def time_variants(
    graphs: dict[str, Any], x: np.ndarray, target: str, device: str | None, seconds: float
) -> dict[str, float]:
    """Median ms per call of each graph, in interleaved rounds of about ``seconds`` in all;
    every output must match the original's."""
    from neffkit.execution import Runner

    runners = {k: Runner(g, target, device=device) for k, g in graphs.items()}
    (want,) = runners["original"]([x])
    first = {}
    for k, r in runners.items():
        (got,) = r([x])
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=k)
        start = time.perf_counter()
        r([x])
        first[k] = time.perf_counter() - start
    rounds = max(5, min(500, int(seconds / max(sum(first.values()), 1e-9))))
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for k, r in runners.items():
            start = time.perf_counter()
            r([x])
            samples[k].append(time.perf_counter() - start)
    return {k: statistics.median(s) * 1e3 for k, s in samples.items()}


def same_graph(graphs: dict[str, Any]) -> str | None:
    """The variant whose graph is auto's, printed alike (None: auto's is a mix of forms)."""
    from neffkit.ir.text import print_body

    text = print_body(graphs["auto"])
    return next((k for k, g in graphs.items() if k != "auto" and print_body(g) == text), None)


def verdict(ms: dict[str, float], same: str | None) -> dict[str, Any]:
    """Auto against the original and the fastest variant. Where auto's graph is one of the
    other variants' (printed alike), that variant's time is auto's: timing the same graph
    twice measures only noise (kept in ``ms["auto"]``)."""
    fastest = min((k for k in ms if k != "auto"), key=lambda k: ms[k])
    auto = ms[same] if same is not None else ms["auto"]
    vs_original = auto / ms["original"] - 1
    vs_fastest = auto / ms[fastest] - 1
    return {
        "auto_graph": same or "mixed",
        "fastest": fastest,
        "auto_vs_original": vs_original,
        "auto_vs_fastest": vs_fastest,
        "ok": vs_original <= TOL_ORIGINAL and vs_fastest <= TOL_FASTEST,
    }


def workloads(quick: bool) -> list[tuple[str, Any]]:
    """``(label, builder)`` per shape."""
    if quick:
        return [
            ("conformer c8 k15 t16 b1", lambda: conformer_module(8, 16, 1)),
            ("mobilenet c4 8x8 s2 b1", lambda: mobilenet_block(4, 8, 2, 1)),
        ]
    out: list[tuple[str, Any]] = []
    for batch in (1, 8):
        for seq in (64, 128, 256, 512):
            label = f"conformer c256 k15 t{seq} b{batch}"
            out.append((label, lambda s=seq, b=batch: conformer_module(256, s, b)))
    out.append(("mobilenet c32 112x112 s1 b1", lambda: mobilenet_block(32, 112, 1, 1)))
    out.append(("mobilenet c96 112x112 s2 b1", lambda: mobilenet_block(96, 112, 2, 1)))
    return out


def encoder(quick: bool) -> tuple[Any, np.ndarray]:
    """The example Conformer encoder (sequence 128; tiny in quick mode)."""
    from neffkit.examples.conformer import example_input, export_encoder_onnx

    if quick:
        proto = export_encoder_onnx(width=32, d_model=16, num_heads=2, encoder_layers=1)
        return proto, example_input(32)
    return export_encoder_onnx(width=512), example_input(512)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs every workload on every backend; returns the results."""
    targets = ["torch"] if args.device == "cuda" else ["torch", "onnxruntime"]
    per_shape = 0.1 if args.quick else args.seconds
    budget = 0.02 if args.quick else 0.25
    rows = []
    for label, build in workloads(args.quick):
        proto, x = build()
        for target in targets:
            graphs, auto = variants(proto, target, args.device, VARIANTS, budget)
            ms = time_variants(graphs, x, target, args.device, per_shape)
            row = {"workload": label, "backend": target, "ms": ms, "auto_stats": auto}
            row.update(verdict(ms, same_graph(graphs)))
            rows.append(row)
            print(_row_line(row), flush=True)
    whole = []
    proto, x = encoder(args.quick)
    for target in targets:
        graphs, auto = variants(proto, target, args.device, ("original", "auto"), budget)
        ms = time_variants(graphs, x, target, args.device, 2 * per_shape)
        whole.append({"backend": target, "ms": ms, "auto_stats": auto})
        print(f"encoder {target}: original {ms['original']:.2f} ms, auto {ms['auto']:.2f} ms "
              f"{auto}", flush=True)  # fmt: skip
    return {"rows": rows, "encoder": whole}


def _row_line(r: dict[str, Any]) -> str:
    cells = " | ".join(f"{r['ms'][v]:.3f}" for v in VARIANTS)
    return (
        f"| {r['workload']} | {r['backend']} | {cells} | {r['auto_graph']} | "
        f"{r['auto_stats'].get('pass_seconds', 0):.2f} | {r['fastest']} | "
        f"{r['auto_vs_original']:+.1%} | {r['auto_vs_fastest']:+.1%} | "
        f"{'ok' if r['ok'] else 'FAIL'} |"
    )


def markdown(data: dict[str, Any]) -> str:
    """The results as a Markdown page."""
    m = data["machine"]
    lines = [
        "# dwconv: depthwise-conv strategies per shape and backend",
        "",
        f"{m['platform']}, {m['cpus']} CPUs, torch {m['torch']} ({data['torch_threads']} "
        f"thread(s)), onnxruntime {m['onnxruntime']}, device {data['device']}; "
        f"load average {data['load_before']} before, {data['load_after']} after (a shared "
        f"machine). Median ms per call, variants interleaved, outputs checked against the "
        f"original's. auto chose from its own measurements of the conv alone; *auto's graph* "
        f"names the variant whose graph it produced (printed alike), whose time then counts "
        f"as auto's in the target columns (the auto column times that same graph again: the "
        f"difference is noise).",
        "",
        "| workload | backend | "
        + " | ".join(VARIANTS)
        + " | auto's graph | auto pass s | fastest | "
        "auto vs original | auto vs fastest | target |",
        "|---|---|" + "---:|" * len(VARIANTS) + "---|---:|---|---:|---:|---|",
    ]
    lines += [_row_line(r) for r in data["rows"]]
    ok = sum(r["ok"] for r in data["rows"])
    lines += [
        "",
        f"Targets (auto at most {TOL_ORIGINAL:.0%} slower than the original and within "
        f"{TOL_FASTEST:.0%} of the fastest): {ok} of {len(data['rows'])} rows met.",
        "",
        f"Whole Conformer encoder (the example's, {data['encoder_shape']}, after the default "
        "pipeline):",
        "",
        "| backend | original ms | auto ms | auto / original | auto's stats |",
        "|---|---:|---:|---:|---|",
    ]
    for e in data["encoder"]:
        ms = e["ms"]
        lines.append(f"| {e['backend']} | {ms['original']:.2f} | {ms['auto']:.2f} | "
                     f"{ms['auto'] / ms['original']:.3f} | {e['auto_stats']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the bench, prints and writes the results; returns them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--quick", action="store_true", help="tiny shapes (the test's mode)")
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per shape")
    ap.add_argument("--out", default=RESULTS, help="folder for dwconv.{json,md}")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    import json

    import torch

    from neffkit.files import write_text

    device = "cpu"
    if args.device == "cuda":
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    load_before = [round(v, 2) for v in os.getloadavg()]
    threads, cache_env = torch.get_num_threads(), os.environ.get("NEFFKIT_CACHE_DIR")
    torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["NEFFKIT_CACHE_DIR"] = cache  # auto measures here, now
            results = run(argparse.Namespace(**{**vars(args), "device": _device(args.device)}))
    finally:
        torch.set_num_threads(threads)
        if cache_env is None:
            os.environ.pop("NEFFKIT_CACHE_DIR", None)
        else:
            os.environ["NEFFKIT_CACHE_DIR"] = cache_env
    data = {
        "machine": machine(),
        "device": device,
        "torch_threads": args.threads,
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "quick": args.quick,
        "encoder_shape": "tiny (quick mode)" if args.quick else "d_model 144, sequence 128",
        "tolerances": {"auto_vs_original": TOL_ORIGINAL, "auto_vs_fastest": TOL_FASTEST},
        **results,
    }
    text = markdown(data)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    name = "dwconv" if args.device == "cpu" else "dwconv_cuda"
    write_text(os.path.join(args.out, f"{name}.json"), json.dumps(data, indent=1) + "\n")
    write_text(os.path.join(args.out, f"{name}.md"), text)
    return data


def _device(device: str) -> str | None:
    return None if device == "cpu" else device


if __name__ == "__main__":
    main()
