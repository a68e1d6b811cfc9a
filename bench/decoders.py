"""Bench: the decoder-loop forms of issue 10 on the batched Conformer, torch backend on the CPU.

The model is ``neffkit example conformer --batched`` (``export_conformer_batch_onnx``: the
embedded Conformer, d_model 144, image [b,1,32,128], up to 75 tokens, with a ``max_tokens``
input so that a request decodes exactly the length asked for), its batch dim fixed to the batch
size served. Variants (pipelines below), each converted the way ``neffkit convert`` does
(``to_torchscript``: one TorchScript module, the host loops scripted around their traced or
scripted step, the rest scripted) and run on one thread after warm-up calls that take every
path:

- ``host-loop``: the default pipeline, then ``split`` (the step sees tokens grow every step);
- ``host-loop-padded``: the default pipeline, ``pad-loop{max-len=75}``, the default pipeline
  again, then ``split`` (one static step shape);
- ``unroll``: ``unroll`` then the default pipeline (one graph, all 75 steps computed);
- ``partitions-tuned``: ``partition-unroll`` at the boundaries ``neffkit.tune`` picks (costs
  measured on the torch backend at that batch size, objective mean) for the lengths of a
  separate "observed" set of requests; ``partitions-25+50+75`` for reference.

Requests: output lengths round(exp(N(ln 6, 0.9))) clipped to 1..75 (median 6, a tail to 75),
seeded; each with its own random image. Batch 1 serves them one by one, batch 8 eight at a
time (a batch runs to its longest). Every variant's tokens are checked against the exported
model on onnxruntime for every request. See docs/benchmarks.md for what each column counts.

Run: ``python bench/decoders.py [--requests 600] [--quick]``. Writes
``bench/results/decoders.{json,md}`` and ``docs/decoders_latency.svg``,
``docs/decoders_length.svg``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import decoders_report as report  # noqa: E402
from bench.common import write_results  # noqa: E402
from bench.decoders_units import UnitSizes, unit_sizes  # noqa: E402

MAX_LEN = 75
WIDTH = 128
BATCHES = (1, 8)
VARIANTS = ("host-loop", "host-loop-padded", "unroll", "partitions-tuned", "partitions-25+50+75")
REFERENCE_BOUNDS = (25, 50, 75)
#: the lengths distribution: log-normal, median 6 steps, clipped to 1..MAX_LEN
MEDIAN, SIGMA = 6.0, 0.9


def sample_lengths(n: int, seed: int) -> list[int]:
    """``n`` output lengths from the skewed distribution (seeded)."""
    rng = np.random.default_rng(seed)
    raw = np.exp(rng.normal(math.log(MEDIAN), SIGMA, size=n))
    return [int(x) for x in np.clip(np.rint(raw), 1, MAX_LEN)]


def pipelines(rest: str) -> dict[str, str]:
    """The pipeline of each variant except the tuned one (its boundaries come from tune)."""
    parts = "+".join(map(str, REFERENCE_BOUNDS))
    return {
        "host-loop": f"{rest},split",
        "host-loop-padded": f"{rest},pad-loop{{max-len={MAX_LEN}}},{rest},split",
        "unroll": f"unroll,{rest}",
        "partitions-25+50+75": f"partition-unroll{{boundaries={parts}}},{rest}",
    }


def static_batch(proto: Any, batch: int) -> Any:
    """A copy of the batched model with its ``batch`` dim fixed (in the loop body too): each
    variant is built for one batch size, with static shapes, as a compiler for a fixed-shape
    accelerator needs (``pad-loop`` on the Conformer needs them too)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    stack = [out.graph]
    while stack:
        g = stack.pop()
        for vi in [*g.input, *g.output, *g.value_info]:
            for d in vi.type.tensor_type.shape.dim:
                if d.dim_param == "batch":
                    d.Clear()
                    d.dim_value = batch
        stack.extend(a.g for n in g.node for a in n.attribute if a.HasField("g"))
    return out


def tune_boundaries(
    proto: Any, batch: int, train: list[int], positions: int | None
) -> dict[str, Any]:
    """The boundaries ``neffkit.tune`` picks at ``batch`` for the observed ``train`` lengths
    (a batch's length is its longest request's), costs measured on the torch backend."""
    from neffkit.optimize import DEFAULT_PIPELINES
    from neffkit.tune import Objective, tune
    from neffkit.tune.measure import find_loop, measure_costs, positions_to_measure

    feeds = _feeds(np.random.default_rng(7), [MAX_LEN] * batch)
    t = time.perf_counter()
    loop = find_loop(proto, feeds)
    costs = measure_costs(
        loop,
        "torch",
        MAX_LEN,
        positions=positions_to_measure(MAX_LEN, positions),
        pipeline=DEFAULT_PIPELINES["torch"],
    )
    lengths = [max(train[i : i + batch]) for i in range(0, len(train) - batch + 1, batch)]
    result = tune(costs, lengths, Objective(), "torch")
    return {
        "boundaries": list(result.chosen.boundaries),
        "pipeline": result.pipeline,
        "costs_source": costs.source,
        "overhead_ms": costs.overhead * 1e3,
        "step_ms": [s * 1e3 for s in costs.steps],
        "expected_calls": result.chosen.calls,
        "expected_mean_ms": result.chosen.mean * 1e3,
        "tune_s": time.perf_counter() - t,
        "train_lengths": len(lengths),
    }


def _feeds(rng: np.random.Generator, limits: list[int]) -> dict[str, np.ndarray]:
    image = rng.random((len(limits), 1, 32, WIDTH), dtype=np.float32)
    return {"image": image, "max_tokens": np.array(limits, dtype=np.int64)}


def build(proto: Any, pipeline: str, batch: int, warm: list[list[int]]) -> dict[str, Any]:
    """The variant's graph, its TorchScript module for ``batch`` rows, warmed up on ``warm``."""
    import torch

    from neffkit.backends.torch import prepare_inputs, to_torchscript
    from neffkit.optimize import optimize
    from neffkit.report import model_summary

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, _ = optimize(proto, pipeline, target="torch", verify=False)
        optimize_s = time.perf_counter() - t
        rng = np.random.default_rng(3)
        module, how = to_torchscript(graph, _feeds(rng, [MAX_LEN] * batch))
        convert_s = time.perf_counter() - t - optimize_s
        with torch.no_grad():
            for limits in warm:
                module(*prepare_inputs(graph, _feeds(rng, limits)))
    summary = model_summary(graph)
    return {
        "graph": graph,
        "module": module,
        "how": how,
        "nodes": summary["nodes_total"],
        "constant_bytes": summary["initializer_bytes"] + summary["constant_node_bytes"],
        "optimize_s": optimize_s,
        "convert_s": convert_s,
        "warm_s": time.perf_counter() - t - optimize_s - convert_s,
    }


def warm_lengths(batch: int, bounds: list[int]) -> list[list[int]]:
    """Warm-up calls: three at the longest (TorchScript profiles twice, then optimizes), then
    one stopping at each boundary and after one step (the exits' paths)."""
    stops = sorted({1, *(b for b in bounds if b < MAX_LEN)})
    return [[MAX_LEN] * batch] * 3 + [[s] * batch for s in stops]


def serve(
    built: dict[str, dict[str, Any]],
    sess: Any,
    batches: list[list[int]],
    lengths: list[int],
    seed: int,
) -> dict[str, Any]:
    """Runs every batch through every variant (order rotated per batch) and onnxruntime;
    returns per-batch times, steps run and tokens checks."""
    import torch

    from neffkit.backends.torch import prepare_inputs

    names = list(built)
    times: dict[str, list[float]] = {n: [] for n in names}
    mismatches: list[str] = []
    steps, out_bytes = [], []
    for k, rows in enumerate(batches):
        rng = np.random.default_rng(seed + rows[0])
        feeds = _feeds(rng, [lengths[i] for i in rows])
        want = sess.run(None, feeds)[0]
        steps.append(int(want.shape[1]))
        out_bytes.append(int(want.nbytes))
        order = names[k % len(names) :] + names[: k % len(names)]
        for name in order:
            v = built[name]
            args = prepare_inputs(v["graph"], feeds)
            with torch.no_grad():
                start = time.perf_counter()
                out = v["module"](*args)
                times[name].append(time.perf_counter() - start)
            got = (out[0] if isinstance(out, list | tuple) else out).numpy()
            if got.shape != want.shape or not np.array_equal(got, want):
                mismatches.append(
                    f"{name}: batch {k} (requests {rows}) {got.shape} vs {want.shape}"
                )
    return {"times": times, "steps": steps, "out_bytes": out_bytes, "mismatches": mismatches}


def accounting(
    name: str, bounds: list[int] | None, sizes: UnitSizes, n: int, out_bytes: int
) -> tuple[int, int, int]:
    """(position-steps, backend calls, bytes in and out of the units) of one batch that runs
    ``n`` steps under variant ``name`` (see docs/benchmarks.md for the definitions)."""
    if name.startswith("host-loop"):
        per_step = MAX_LEN + 1 if name.endswith("padded") else None
        positions = sum(per_step or t for t in range(1, n + 1))
        moved = sizes.inputs + sizes.handed_to_loop
        moved += sum(sizes.step_in(t) + sizes.step_out(t) for t in range(1, n + 1))
        return positions, 1 + n, moved
    ends = bounds or [MAX_LEN]
    p = next(j for j, b in enumerate(ends) if b >= n)  # the partition holding step n
    positions = sum(range(1, ends[p] + 1))
    moved = 0
    for j in range(p + 1):
        moved += sizes.inputs if j == 0 else sizes.state_in(ends[j - 1] + 1)
        moved += out_bytes if j == p else sizes.state_out(ends[j] + 1)
    return positions, p + 1, moved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=600, help="requests (a multiple of 8)")
    ap.add_argument(
        "--positions", type=int, default=None, help="step positions tune measures (default: all)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke check: 48 requests, 3 positions")
    ap.add_argument("--name", default="decoders", help="results name under bench/results")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.positions = 48, 3
    import onnxruntime as ort
    import torch

    from neffkit.examples import export_conformer_batch_onnx
    from neffkit.optimize import DEFAULT_PIPELINES

    torch.set_num_threads(1)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    rest = DEFAULT_PIPELINES["torch"]
    proto = export_conformer_batch_onnx(width=WIDTH)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    n_req = max(8, args.requests // 8 * 8)
    lengths = sample_lengths(n_req, seed=0)
    train = sample_lengths(4000, seed=1)
    data: dict[str, Any] = {
        "requests": n_req,
        "lengths": {"median": MEDIAN, "sigma": SIGMA, "max_len": MAX_LEN, "values": lengths},
        "load_average_start": load,
        "quick": args.quick,
        "batches": {},
    }
    per_length: dict[str, list[tuple[int, float]]] = {}
    for batch in BATCHES:
        print(f"== batch {batch}: tuning", flush=True)
        fixed = static_batch(proto, batch)
        tuned = tune_boundaries(fixed, batch, train, args.positions)
        print(f"   tuned boundaries {tuned['boundaries']} ({tuned['tune_s']:.0f} s)", flush=True)
        pipes = pipelines(rest)
        pipes["partitions-tuned"] = tuned["pipeline"]
        bounds = {"partitions-tuned": tuned["boundaries"]}
        bounds["partitions-25+50+75"] = list(REFERENCE_BOUNDS)
        built: dict[str, dict[str, Any]] = {}
        missing: dict[str, str] = {}
        for name in VARIANTS:
            warm = warm_lengths(batch, bounds.get(name, []))
            try:
                built[name] = build(fixed, pipes[name], batch, warm)
            except Exception as e:  # noqa: BLE001 - a variant that cannot be built is a result
                missing[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                print(f"   {name}: NOT BUILT: {missing[name]}", flush=True)
                continue
            b = built[name]
            print(
                f"   {name}: {b['nodes']} nodes, optimize {b['optimize_s']:.1f} s, convert "
                f"{b['convert_s']:.1f} s, warm-up {b['warm_s']:.1f} s ({b['how']})",
                flush=True,
            )
        rolled = {"host-loop": built.get("host-loop"), "padded": built.get("host-loop-padded")}
        feeds = _feeds(np.random.default_rng(7), [MAX_LEN] * batch)
        sizes = {k: unit_sizes(v["graph"], feeds, MAX_LEN) for k, v in rolled.items() if v}
        groups = [list(range(i, i + batch)) for i in range(0, n_req, batch)]
        print(f"   serving {n_req} requests in {len(groups)} batches", flush=True)
        served = serve(built, sess, groups, lengths, seed=1000)
        rows = []
        for name in VARIANTS:
            row: dict[str, Any] = {"variant": name, "pipeline": pipes[name]}
            if name in bounds:
                row["boundaries"] = bounds[name]
            if name in missing:
                rows.append({**row, "missing": missing[name]})
                continue
            v = built[name]
            unit = sizes.get("padded" if name == "host-loop-padded" else "host-loop")
            per_req = [t for t in served["times"][name] for _ in range(batch)]
            counts = [
                accounting(name, bounds.get(name), unit, n, ob) if unit else (0, 0, 0)
                for n, ob in zip(served["steps"], served["out_bytes"])
            ]
            row.update(
                avg_ms=statistics.fmean(per_req) * 1e3,
                p99_ms=report.nearest_rank(per_req, 99) * 1e3,
                positions=statistics.fmean(c[0] for c in counts) / batch,
                calls=statistics.fmean(c[1] for c in counts) / batch,
                bytes=statistics.fmean(c[2] for c in counts) / batch,
                nodes=v["nodes"],
                constant_bytes=v["constant_bytes"],
                build_s=v["optimize_s"] + v["convert_s"],
                how=v["how"],
            )
            rows.append(row)
            if batch == 1:
                per_length[name] = [(lengths[g[0]], t) for g, t in zip(groups, per_req)]
        data["batches"][str(batch)] = {
            "tuned": tuned,
            "rows": rows,
            "mismatches": served["mismatches"],
            "steps_per_batch": served["steps"],
        }
        for line in served["mismatches"]:
            print(f"   MISMATCH {line}", flush=True)
    data["simulated"] = report.simulated(lengths, train, MAX_LEN, REFERENCE_BOUNDS)
    data["load_average_end"] = os.getloadavg()[0]
    data["wall_s"] = time.perf_counter() - started
    data["checks"] = report.checks(data)
    text = report.markdown(data)
    print(text)
    write_results(args.name, data, text)
    report.plots(data, per_length)
    return 1 if any(b["mismatches"] for b in data["batches"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
