"""Bench: N replicas of a BERT-base-sized encoder serving from N threads, with one copy of the
weights or N copies: throughput (requests/s) and peak memory, torch backend on the CPU.

The model is ``bench.models.bert_base_encoder`` (12 layers, hidden 768, vocabulary 30522:
110M float32 parameters, 438 MB; random weights), input ``[1, seq]`` ids and mask. It is
lowered by the torch backend and saved as TorchScript the way ``neffkit convert`` does
(``to_torchscript``). Each configuration runs ``neffkit.execution.ReplicaRunner``:

- ``one-module``: every serving thread calls one module (shared weights);
- ``aliased``: one module object per replica over the same tensors (shared weights);
- ``copies``: N independent copies (``shared_weights=False``), the baseline;
- ``direct``: no runner, the module called in a loop on the main thread with every core.

Source ``pt`` loads the TorchScript file through the safe loader; source ``graph`` loads the
ONNX file and lowers it in the process (the graph's constants and the module's buffers are both
held: that path's floor is higher). Each serving thread gets ``cores // N`` intra-op threads
(at least one), so on 2 cores N=4 runs 4 threads on 2 cores: that row measures contention, not
scaling.

Why a fresh process per configuration: the peak is the kernel's high-water mark of resident
memory (``VmHWM`` in ``/proc/self/status``), which never goes down in a process, so one process
per configuration is the only way each gets its own; and torch's allocations are invisible to
``tracemalloc``. Each process also reports ``VmRSS`` once loaded and once served. Outputs of
every request are checked against the parent's single-module outputs.

Run: ``python bench/replicas.py [--seq 32] [--requests 12] [--quick]``. Writes
``bench/results/replicas.{json,md}`` (``--quick``: a tiny model, ``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.common import RESULTS, machine  # noqa: E402

#: (source, replicas, layout) of a full run.
CONFIGS = [
    ("pt", 1, "direct"),
    ("pt", 1, "one-module"),
    ("pt", 2, "one-module"),
    ("pt", 2, "aliased"),
    ("pt", 2, "copies"),
    ("pt", 4, "one-module"),
    ("pt", 4, "aliased"),
    ("pt", 4, "copies"),
    ("graph", 1, "one-module"),
    ("graph", 4, "one-module"),
    ("graph", 4, "copies"),
]
QUICK_CONFIGS = [("pt", 1, "one-module"), ("pt", 2, "copies"), ("graph", 2, "aliased")]
#: Direct calls of each distinct module before timing (TorchScript optimizes after its first).
WARM_CALLS = 3
#: Timed rounds of ``--requests`` requests each; a row reports the median round.
ROUNDS = 3
FULL = {"layers": 12, "hidden": 768, "heads": 12, "vocab": 30522}
TINY = {"layers": 1, "hidden": 32, "heads": 2, "vocab": 500}
INPUTS = ("input_ids", "attention_mask")


def status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


# -- one configuration, in its own process -----------------------------------------------------


def worker(folder: str, source: str, replicas: int, layout: str, requests: int) -> dict[str, Any]:
    """Loads the model as ``layout`` says, serves ``requests`` requests, measures."""
    import torch

    from neffkit.backends.torch.replicas import storage_pointers, weight_bytes
    from neffkit.execution import ReplicaRunner
    from neffkit.frontends.torchscript_archive import load_archive

    feeds = np.load(os.path.join(folder, "inputs.npz"))
    want = np.load(os.path.join(folder, "want.npz"))
    args = [feeds[k] for k in INPUTS]
    imported = status()["VmRSS"]
    t = time.perf_counter()
    path = os.path.join(folder, "model.pt" if source == "pt" else "model.onnx")
    if layout == "direct":
        module: Any = load_archive(path)
        modules: list[Any] = [module]
        tensors = [torch.from_numpy(a) for a in args]

        def serve(n: int) -> list[list[np.ndarray]]:
            with torch.inference_mode():
                return [[o.numpy() for o in module(*tensors)] for _ in range(n)]

        runner = None
    else:
        shared = layout != "copies"
        runner = ReplicaRunner(path, replicas, shared_weights=shared,
                               layout=layout if shared else "one-module", check=False)  # fmt: skip
        modules = runner.modules
        request = args if source == "pt" else dict(zip(INPUTS, args))

        def serve(n: int) -> list[list[np.ndarray]]:
            assert runner is not None
            return runner.map([request] * n)

    load_s = time.perf_counter() - t
    loaded = status()["VmRSS"]
    # Warm-up: TorchScript profiles a module's first calls and optimizes it after them; each
    # distinct module gets its calls, then the runner runs 2N requests.
    warm = [torch.from_numpy(a) for a in args]
    with torch.inference_mode():
        for m in {id(m): m for m in modules}.values():
            for _ in range(WARM_CALLS):
                m(*warm)
    serve(2 * replicas)
    # Timed in rounds: on a shared machine a burst of someone else's work stalls a round (an
    # OpenMP barrier waits for a descheduled thread); the median round is the row's number.
    rates, outs = [], []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        got = serve(requests)
        rates.append(requests / (time.perf_counter() - t))
        outs.extend(got)
    worst = max(
        float(np.max(np.abs(o[i].astype(np.float64) - want[f"out{i}"])))
        for o in outs
        for i in range(len(want.files))
    )
    if runner is not None:
        runner.close()
    storages = set().union(*(storage_pointers(m) for m in modules))
    end = status()
    return {
        "source": source,
        "replicas": replicas,
        "layout": layout,
        "requests": requests,
        "rounds": [round(x, 3) for x in rates],
        "requests_per_s": round(statistics.median(rates), 3),
        "load_s": round(load_s, 2),
        "threads_per_replica": max(1, len(os.sched_getaffinity(0)) // replicas),
        "distinct_storages": len(storages),
        "weight_bytes_held": weight_bytes(torch.nn.ModuleList(modules)),
        "rss_imported": imported,
        "rss_loaded": loaded,
        "rss_served": end["VmRSS"],
        "peak_rss": end["VmHWM"],
        "max_abs_diff": worst,
    }


# -- the parent: build once, one process per configuration ------------------------------------


def prepare(folder: str, sizes: dict[str, int], seq: int) -> dict[str, Any]:
    """Builds the model, writes ``model.onnx``, ``model.pt``, the inputs and the outputs one
    module gives (what every replica must give)."""
    import torch

    from bench.models import bert_base_encoder, inputs_for
    from neffkit.backends.torch import to_torchscript
    from neffkit.backends.torch.replicas import weight_bytes
    from neffkit.frontends.onnx import load

    t = time.perf_counter()
    model = bert_base_encoder(seq=seq, **sizes)
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    feeds = inputs_for(model)
    graph = load(model)
    module, how = to_torchscript(graph, feeds)
    torch.jit.save(module, os.path.join(folder, "model.pt"))
    with torch.inference_mode():
        outs = module(*[torch.from_numpy(feeds[k]) for k in INPUTS])
    np.savez(os.path.join(folder, "inputs.npz"), **{k: feeds[k] for k in INPUTS})
    np.savez(os.path.join(folder, "want.npz"),
             **{f"out{i}": o.numpy().astype(np.float64) for i, o in enumerate(outs)})  # fmt: skip
    return {"seq": seq, **sizes, "weight_bytes": weight_bytes(module), "scripted": how,
            "build_s": round(time.perf_counter() - t, 1)}  # fmt: skip


def run_config(folder: str, config: tuple[str, int, str], requests: int) -> dict[str, Any]:
    """One configuration in a fresh Python process; its measurements."""
    source, replicas, layout = config
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", folder, source, str(replicas),
           layout, str(requests)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{config} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(data: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    m, model = data["machine"], data["model"]
    mb = 1e6
    lines = [
        "# Replicas: one copy of the weights vs N copies (torch backend, CPU)",
        "",
        f"Model: BERT-like encoder, {model['layers']} layers, hidden {model['hidden']}, "
        f"vocabulary {model['vocab']}, input [1, {model['seq']}]: "
        f"{model['weight_bytes'] / mb:.0f} MB of float32 weights. Requests/s: the median of "
        f"{ROUNDS} rounds of {data['requests']} requests (range in `rounds`), after "
        f"{WARM_CALLS} direct warm-up calls of each distinct module and 2N warm-up requests; "
        "one fresh process per row.",
        f"Machine: {m['cpus']} cores, shared (load average {data['load_start']:.2f} at the "
        f"start, {data['load_end']:.2f} at the end); torch {m['torch']}, Python {m['python']}, "
        f"{m['date']}." + (" Quick mode (tiny model): not a measurement." if data["quick"] else ""),
        "",
        "| source | N | layout | threads/replica | requests/s | rounds | x N=1 "
        "| weights held (MB) | RSS loaded (MB) | peak RSS (MB) | peak - N=1 peak (MB) "
        "| max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base: dict[str, dict[str, Any]] = {}
    for r in data["rows"]:
        if r["replicas"] == 1 and r["layout"] != "direct":
            base.setdefault(r["source"], r)
    for r in data["rows"]:
        b = base.get(r["source"], r)
        lines.append(
            f"| {r['source']} | {r['replicas']} | {r['layout']} | {r['threads_per_replica']} "
            f"| {r['requests_per_s']:.2f} | {min(r['rounds']):.2f}-{max(r['rounds']):.2f} "
            f"| {r['requests_per_s'] / b['requests_per_s']:.2f} "
            f"| {r['weight_bytes_held'] / mb:.0f} | {r['rss_loaded'] / mb:.0f} "
            f"| {r['peak_rss'] / mb:.0f} | {(r['peak_rss'] - b['peak_rss']) / mb:+.0f} "
            f"| {r['max_abs_diff']:.1e} |"
        )
    return "\n".join(lines)


def write(out: str, data: dict[str, Any]) -> tuple[str, str]:
    """Writes ``<out>/replicas.json`` and ``.md`` atomically; returns both paths."""
    from neffkit.files import write_text

    os.makedirs(out, exist_ok=True)
    jpath, mpath = os.path.join(out, "replicas.json"), os.path.join(out, "replicas.md")
    write_text(jpath, json.dumps(data, indent=2, default=str) + "\n")
    write_text(mpath, markdown(data).rstrip() + "\n")
    return jpath, mpath


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=32, help="tokens per request (default 32)")
    ap.add_argument("--requests", type=int, default=12, help="timed requests per round")
    ap.add_argument("--quick", action="store_true", help="smoke check: tiny model, 3 rows")
    ap.add_argument("--out", default=RESULTS, help="folder for replicas.{json,md}")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        folder, source, n, layout, requests = a.worker
        print(json.dumps(worker(folder, source, int(n), layout, int(requests))))
        return 0
    configs = QUICK_CONFIGS if a.quick else CONFIGS
    requests = 2 if a.quick else a.requests
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="neffkit-replicas-") as folder:
        model = prepare(folder, TINY if a.quick else FULL, 8 if a.quick else a.seq)
        print(f"model: {model['weight_bytes'] / 1e6:.0f} MB of weights, built in "
              f"{model['build_s']} s", flush=True)  # fmt: skip
        rows = []
        for config in configs:
            r = run_config(folder, config, requests)
            rows.append(r)
            print(f"{r['source']:<6} N={r['replicas']} {r['layout']:<11} "
                  f"{r['requests_per_s']:8.2f} req/s  peak {r['peak_rss'] / 1e6:7.0f} MB  "
                  f"held {r['weight_bytes_held'] / 1e6:6.0f} MB", flush=True)  # fmt: skip
    data = {"machine": machine(), "model": model, "requests": requests, "quick": a.quick,
            "load_start": load_start, "load_end": os.getloadavg()[0], "rows": rows}  # fmt: skip
    jpath, mpath = write(a.out, data)
    print(markdown(data))
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
