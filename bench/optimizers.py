"""Optimizers side by side, one per subprocess: neffkit and its peers behind one interface.

``bench/peers.py`` and ``bench/scaling.py`` start this file as a worker so that a crashing or
hanging tool cannot take the benchmark with it::

    python bench/optimizers.py TOOL SRC.onnx DST.onnx RESULT.json [--feeds F.npz --ref R.npz]

The worker optimizes SRC into DST (timing load, optimize and save apart), then, when asked,
measures DST: node count (subgraphs included), constant bytes, ``onnx.checker`` with
``full_check``, numeric agreement with reference outputs and onnxruntime latency with ORT's own
graph optimizations off on one thread. RESULT.json is rewritten after each phase, so a timeout
still says how far the tool got.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

#: Agreement with the original, per output: max rel error <= rtol where the reference is not
#: near zero, or max abs error <= atol, with the (rtol, atol) of the output's dtype under
#: neffkit's one tolerance policy (``neffkit.execution.compare.tolerances``: float32 1e-4, 1e-5;
#: integers and bools exact). "Near zero" is relative to the output's own scale:
#: |ref| < REL_FLOOR x max|ref|. float32 rounding error grows with the magnitude of the terms
#: summed, not with each result, so an absolute floor (1e-3) let elements a thousandth of the
#: output's scale decide: there the original float32 model itself is 2-6e-4 off its float64
#: value (bench/results/peers.md, "vs float64" column), which no rewrite can beat.
REL_FLOOR = 1e-2
#: The absolute floor the first version of this bench used; still reported (``max_rel_1e-3``).
ABS_FLOOR = 1e-3


# -- the tools --------------------------------------------------------------------------------


def _nogrow_pipeline(target: str) -> str:
    """The default pipeline with a folding policy that never makes constants bigger."""
    from neffkit.optimize import default_pipeline

    return default_pipeline(target).replace("fold,", "fold{max-growth=1},")


def _neffkit(model: onnx.ModelProto, passes: str | None = None) -> onnx.ModelProto:
    import neffkit

    graph, _ = neffkit.optimize(model, passes=passes, target="onnxruntime", verify=False)
    return neffkit.to_onnx(graph)


def _onnxoptimizer(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxoptimizer

    return onnxoptimizer.optimize(model, fixed_point=True)


def _onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    out, _ = onnxsim.simplify(model)
    return out


def _onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def _onnxscript(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxscript import optimizer

    return optimizer.optimize(model)


#: Tool name -> ModelProto -> ModelProto (``ort-basic`` works file to file, see ``_ort_basic``).
TOOLS: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto] | None] = {
    "neffkit": _neffkit,
    "neffkit-nogrow": lambda m: _neffkit(m, _nogrow_pipeline("onnxruntime")),
    "onnxoptimizer": _onnxoptimizer,
    "onnxsim": _onnxsim,
    "onnxslim": _onnxslim,
    "onnxscript": _onnxscript,
    "ort-basic": None,
}
PEERS = ("onnxoptimizer", "onnxsim", "onnxslim", "onnxscript", "ort-basic")
#: The imports each tool needs, done before any timing starts.
_IMPORTS = {
    "neffkit": ["neffkit", "onnxruntime"],
    "neffkit-nogrow": ["neffkit", "onnxruntime"],
    "onnxoptimizer": ["onnxoptimizer"],
    "onnxsim": ["onnxsim"],
    "onnxslim": ["onnxslim"],
    "onnxscript": ["onnxscript.optimizer"],
    "ort-basic": ["onnxruntime"],
    "original": [],
}


def _ort_basic(src: str, dst: str) -> None:
    """onnxruntime's offline basic optimization: load SRC, write the optimized DST."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = dst
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def optimize_file(
    tool: str, src: str, dst: str, file_mode: bool, target: str = "onnxruntime"
) -> dict[str, float]:
    """Optimizes SRC into DST with ``tool``; returns load / optimize / save seconds.

    ``file_mode`` times neffkit as its CLI works (``neffkit.optimize(path)`` for ``target``,
    then ``neffkit.save``); otherwise every tool goes ModelProto -> ModelProto (``ort-basic``
    always works on files: its optimize time includes its load and save).
    """
    t0 = time.perf_counter()
    if tool == "ort-basic":
        _ort_basic(src, dst)
        return {"load_s": 0.0, "optimize_s": time.perf_counter() - t0, "save_s": 0.0}
    if file_mode and tool.startswith("neffkit"):
        import neffkit

        passes = _nogrow_pipeline(target) if tool == "neffkit-nogrow" else None
        graph, _ = neffkit.optimize(src, passes=passes, target=target, verify=False)
        t1 = time.perf_counter()
        neffkit.save(graph, dst)
        return {"load_s": 0.0, "optimize_s": t1 - t0, "save_s": time.perf_counter() - t1}
    model = onnx.load(src)
    t1 = time.perf_counter()
    if tool == "original":
        out = model
    else:
        fn = TOOLS.get(tool)
        if fn is None:
            raise ValueError(f"unknown tool {tool!r}")
        out = fn(model)
    t2 = time.perf_counter()
    onnx.save(out, dst)
    return {"load_s": t1 - t0, "optimize_s": t2 - t1, "save_s": time.perf_counter() - t2}


# -- measuring a model ------------------------------------------------------------------------


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """The graph and all its subgraphs (explicit stack)."""
    out, stack = [], [graph]
    while stack:
        g = stack.pop()
        out.append(g)
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return out


def _tensor_bytes(t: onnx.TensorProto) -> int:
    if t.data_type == onnx.TensorProto.STRING:
        return sum(len(s) for s in t.string_data)
    size = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return int(np.prod(t.dims, dtype=np.int64)) * size


def count_nodes(model: onnx.ModelProto) -> int:
    """Nodes in the model, subgraphs included."""
    return sum(len(g.node) for g in _graphs(model.graph))


def constant_bytes(model: onnx.ModelProto) -> int:
    """Bytes of initializers and Constant-node values, subgraphs included."""
    total = 0
    for g in _graphs(model.graph):
        total += sum(_tensor_bytes(t) for t in g.initializer)
        for n in g.node:
            if n.op_type != "Constant" or n.domain not in ("", "ai.onnx"):
                continue
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    total += _tensor_bytes(a.t)
                elif a.type in (onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS):
                    total += 4 * len(a.floats) + 8 * len(a.ints)
                elif a.type in (onnx.AttributeProto.FLOAT, onnx.AttributeProto.INT):
                    total += 4 if a.type == onnx.AttributeProto.FLOAT else 8
    return total


def check(path: str) -> str:
    """``ok`` or the checker's first line of complaint (``full_check``: shapes too)."""
    try:
        onnx.checker.check_model(path, full_check=True)
        return "ok"
    except Exception as e:  # noqa: BLE001 - any checker failure is a result
        return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def session(path: str) -> Any:
    """An onnxruntime session with ORT's graph optimizations off, on one thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, Any]:
    """Max abs / rel error over all outputs (matched by name, else by position).

    An output agrees when its max rel error (where |ref| >= 1e-2 x max|ref| of that output) is
    <= rtol or its max abs error is <= atol (its dtype's tolerances: 1e-4 and 1e-5 for
    float32); the model agrees when every output does. The max rel error where |ref| > 1e-3 is
    reported too (``max_rel_1e-3``).
    """
    from neffkit.execution.compare import tolerances

    names = list(ref)
    pairs = []
    for i, name in enumerate(names):
        other = got.get(name)
        if other is None and len(got) == len(ref):
            other = list(got.values())[i]
        pairs.append((name, ref[name], other))
    worst_abs = worst_rel = worst_rel_abs_floor = 0.0
    agree, notes = True, []
    for name, r, g in pairs:
        if g is None or np.shape(g) != np.shape(r):
            agree = False
            notes.append(f"{name}: {'missing' if g is None else f'shape {np.shape(g)}'}")
            worst_abs = worst_rel = float("inf")
            continue
        r64, g64 = np.asarray(r, np.float64), np.asarray(g, np.float64)
        both_nan = np.isnan(r64) & np.isnan(g64)
        diff = np.where(both_nan, 0.0, np.abs(g64 - r64))
        diff = np.where(np.isnan(diff), np.inf, diff)
        mag = np.abs(r64)
        finite = mag[np.isfinite(mag)]
        scale = float(finite.max()) if finite.size else 0.0
        a = float(diff.max()) if diff.size else 0.0
        rel = _max_rel(diff, mag, max(REL_FLOOR * scale, np.finfo(np.float64).tiny))
        worst_rel_abs_floor = max(worst_rel_abs_floor, _max_rel(diff, mag, ABS_FLOOR))
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, rel)
        rtol, atol = tolerances(np.asarray(r).dtype)
        if not (rel <= rtol or a <= atol):
            agree = False
            notes.append(f"{name}: max abs {a:.3g}, max rel {rel:.3g}")
    return {
        "max_abs": worst_abs,
        "max_rel": worst_rel,
        "max_rel_1e-3": worst_rel_abs_floor,
        "agree": agree,
        "notes": notes,
    }


def _max_rel(diff: np.ndarray, mag: np.ndarray, floor: float) -> float:
    """Max of diff / |ref| over the elements with |ref| >= floor (0 when there are none)."""
    big = mag >= floor
    return float((diff[big] / mag[big]).max()) if big.any() else 0.0


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` computing in float64: float32 weights widened exactly, float32
    types, Cast targets and dtype attributes turned into float64 (subgraphs included)."""
    from onnx import AttributeProto, TensorProto, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    f32, f64 = TensorProto.FLOAT, TensorProto.DOUBLE

    def tensor(t: onnx.TensorProto) -> None:
        if t.data_type == f32:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))

    stack = [out.graph]
    while stack:
        g = stack.pop()
        for t in g.initializer:
            tensor(t)
        for vi in [*g.input, *g.output, *g.value_info]:
            if vi.type.tensor_type.elem_type == f32:
                vi.type.tensor_type.elem_type = f64
        for n in g.node:
            for a in n.attribute:
                if a.type == AttributeProto.TENSOR:
                    tensor(a.t)
                elif a.type == AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
                elif a.name in ("to", "dtype") and a.type == AttributeProto.INT and a.i == f32:
                    a.i = f64
    return out


def float64_outputs(src: str, feeds_path: str, dst: str) -> str | None:
    """Runs ``src`` in float64 (see ``to_float64``) on the feeds (float32 ones widened) and
    saves the outputs to ``dst``; returns None on success, else why it could not run.

    onnxruntime runs it where it has float64 kernels for every op; otherwise onnx's reference
    evaluator does (onnxruntime has no float64 Conv, for one).
    """
    import onnxruntime as ort

    model = to_float64(onnx.load(src))
    all_feeds = {
        k: v.astype(np.float64) if v.dtype == np.float32 else v
        for k, v in _load_npz(feeds_path).items()
    }
    inits = {t.name for t in model.graph.initializer}
    names = [o.name for o in model.graph.output]
    try:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so, ["CPUExecutionProvider"])
        outs = sess.run(None, _feeds_for(sess, all_feeds))
    except Exception as e:  # noqa: BLE001 - no float64 kernel for some op: the reference then
        from onnx.reference import ReferenceEvaluator

        try:
            feeds = {i.name: all_feeds[i.name] for i in model.graph.input if i.name not in inits}
            outs = ReferenceEvaluator(model).run(None, feeds)
        except Exception as e2:  # noqa: BLE001 - reported, not fatal
            return f"onnxruntime: {str(e)[:150]}; onnx.reference: {str(e2)[:150]}"
    np.savez(dst, **dict(zip(names, outs, strict=True)))
    return None


def _feeds_for(sess: Any, all_feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The session's inputs from ``all_feeds``; an input the original did not have is an error."""
    wanted = [i.name for i in sess.get_inputs()]
    missing = [n for n in wanted if n not in all_feeds]
    if missing:
        raise ValueError(
            f"the optimized model wants {len(missing)} input(s) the original did not, "
            f"e.g. {missing[:3]}"
        )
    return {n: all_feeds[n] for n in wanted}


def _load_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def latency(
    paths: dict[str, str], feeds_path: str, runs: int, min_time: float, seed: int = 0
) -> dict:
    """Per model: the run times of at least ``runs`` runs each, interleaved, plus their median
    and p99.

    The models take turns (one run each per round), so a change in machine load during the
    measurement hits them all alike, and the order of the turns is shuffled every round
    (``seed``): in a fixed order the model run right after a given one was measured 1-5%
    slower. The sessions are created in a shuffled order too. Rounds go on while under
    ``min_time`` seconds per model (at most ``20 * runs``).
    """
    order_rng = random.Random(seed)
    all_feeds = _load_npz(feeds_path)
    names = list(paths)
    order_rng.shuffle(names)
    sessions = {k: session(paths[k]) for k in names}
    feeds = {k: _feeds_for(s, all_feeds) for k, s in sessions.items()}
    slow = False
    for k, s in sessions.items():
        t = time.perf_counter()
        s.run(None, feeds[k])
        slow = slow or time.perf_counter() - t > 0.2
    for _ in range(0 if slow else 2):
        for k, s in sessions.items():
            s.run(None, feeds[k])
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    start = time.perf_counter()
    rounds = 0
    while rounds < runs or (
        time.perf_counter() - start < min_time * len(sessions) and rounds < 20 * runs
    ):
        order = list(sessions)
        order_rng.shuffle(order)
        for k in order:
            t = time.perf_counter()
            sessions[k].run(None, feeds[k])
            samples[k].append(time.perf_counter() - t)
        rounds += 1
    return {k: _stats(xs) for k, xs in samples.items()}


def _stats(xs: list[float]) -> dict[str, Any]:
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(np.ceil(0.99 * len(xs))) - 1)]
    return {"median_s": statistics.median(xs), "p99_s": p99, "runs": len(xs), "samples": xs}


def evaluate(path: str, feeds_path: str, ref_path: str | None, args: argparse.Namespace) -> dict:
    """Everything measured on an optimized model file (see the module docstring)."""
    model = onnx.load(path)
    out: dict[str, Any] = {
        "nodes": count_nodes(model),
        "constant_bytes": constant_bytes(model),
        "file_bytes": os.path.getsize(path),
    }
    del model
    out["checker"] = check(path)
    sess = session(path)
    feeds = _feeds_for(sess, _load_npz(feeds_path))
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feeds), strict=True))
    if args.save_ref:
        np.savez(args.save_ref, **got)
    if ref_path:
        out["numerics"] = compare(_load_npz(ref_path), got)
    if args.truth and os.path.exists(args.truth):
        out["vs_float64"] = compare(_load_npz(args.truth), got)
    return out


# -- the worker -------------------------------------------------------------------------------


def _extra_neffkit(src: str) -> dict[str, Any]:
    """neffkit's node count for target torch (the latency comparison uses onnxruntime)."""
    import neffkit

    graph, _ = neffkit.optimize(src, target="torch", verify=False)
    return {"torch_target_nodes": count_nodes(neffkit.to_onnx(graph))}


def latency_worker(argv: list[str]) -> int:
    """``latency RESULT.json FEEDS.npz RUNS MIN_TIME NAME=PATH...``: interleaved latency."""
    result, feeds, runs, min_time, seed, *pairs = argv
    paths = dict(p.split("=", 1) for p in pairs)
    out = latency(paths, feeds, int(runs), float(min_time), int(seed))
    with open(result, "w") as f:
        json.dump(out, f, indent=1)
    return 0


def worker(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["latency"]:
        return latency_worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("tool", choices=[*TOOLS, "original"])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("result")
    p.add_argument("--file-mode", action="store_true", help="time neffkit as its CLI runs")
    p.add_argument("--target", default="onnxruntime", help="neffkit's target in --file-mode")
    p.add_argument("--repeat", type=int, default=1, help="optimize this often, keep the median")
    p.add_argument("--feeds", help="inputs (.npz); measure the result when given")
    p.add_argument("--ref", help="reference outputs (.npz) to compare with")
    p.add_argument("--save-ref", help="write this model's outputs here (.npz)")
    p.add_argument("--truth", help="float64 outputs of the original (.npz) to compare with")
    a = p.parse_args(argv)
    result: dict[str, Any] = {"tool": a.tool, "phase": "import"}

    def write() -> None:
        with open(a.result, "w") as f:
            json.dump(result, f, indent=1, default=str)

    write()
    try:
        for mod in _IMPORTS[a.tool]:
            __import__(mod)
        result["phase"] = "optimize"
        write()
        times = [
            optimize_file(a.tool, a.src, a.dst, a.file_mode, a.target) for _ in range(a.repeat)
        ]
        times.sort(key=lambda t: sum(t.values()))
        result.update(times[len(times) // 2])
        result["total_s"] = sum(times[len(times) // 2].values())
        result["phase"] = "extra"
        write()
        if a.tool == "neffkit" and a.feeds:
            result.update(_extra_neffkit(a.src))
        if a.feeds:
            result["phase"] = "evaluate"
            write()
            result.update(evaluate(a.dst, a.feeds, a.ref, a))
        result["phase"] = "done"
    except Exception as e:  # noqa: BLE001 - a crashing tool is a result
        result["error"] = f"{type(e).__name__}: {str(e)[:500]}"
        result["traceback"] = traceback.format_exc()[-3000:]
    write()
    return 0


def run_worker(
    tool: str, src: str, dst: str, result: str, options: list[str], timeout: float
) -> dict[str, Any]:
    """Runs the worker in a fresh interpreter and returns its result JSON, plus ``wall_s`` and,
    when it hung or died, ``timeout`` / ``error``."""
    return _spawn([tool, src, dst, result, *options], result, timeout)


def run_latency(
    paths: dict[str, str],
    feeds: str,
    runs: int,
    min_time: float,
    result: str,
    timeout: float,
    processes: int = 5,
) -> dict[str, Any]:
    """Latency of several model files, measured in ``processes`` fresh interpreters one after
    another (``runs / processes`` interleaved rounds each, see ``latency``), samples pooled.

    Where a session's weights land in memory stays fixed for its life and can change its run
    time by several percent (big models are memory-bound: in one process, BERT-base results
    with the same MatMuls measured from 261 to 301 ms). Fresh processes give every model
    several draws.
    """
    pairs = [f"{k}={v}" for k, v in paths.items()]
    per = max(1, -(-runs // processes))
    pooled: dict[str, list[float]] = {k: [] for k in paths}
    for seed in range(processes):
        args = ["latency", result, feeds, str(per), str(min_time / processes), str(seed)]
        r = _spawn([*args, *pairs], result, timeout)
        if "error" in r:
            return r
        for k in paths:
            if k in r:
                pooled[k] += r[k]["samples"]
    out: dict[str, Any] = {}
    for k, xs in pooled.items():
        if xs:
            st = _stats(xs)
            del st["samples"]
            out[k] = {**st, "processes": processes}
    return out


def _spawn(args: list[str], result: str, timeout: float) -> dict[str, Any]:
    import subprocess

    if os.path.exists(result):
        os.unlink(result)
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        rc, tail = proc.returncode, (proc.stderr or "")[-1500:]
    except subprocess.TimeoutExpired:
        rc, tail = None, ""
    wall = time.perf_counter() - t
    data: dict[str, Any] = {}
    if os.path.exists(result):
        with open(result) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError:
                data = {}
    data["wall_s"] = wall
    if rc is None:
        data["timeout"] = True
        data.setdefault("error", f"timed out after {timeout:.0f} s in phase {data.get('phase')}")
    elif rc != 0 and "error" not in data:
        last = tail.strip().splitlines()[-1:] or [""]
        data["error"] = f"worker exited with {rc}: {last[0][:300]}"
    return data


if __name__ == "__main__":
    raise SystemExit(worker())
