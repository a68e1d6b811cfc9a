"""Fuzz: mutated ONNX models through ``neffkit.load``, ``neffkit inspect`` and ``neffkit run``
(with and without the validity check, so the backend sees the invalid models too), and on
request through ``verify``, ``optimize --no-check`` and ``convert --no-check``.

Run: ``python bench/fuzz_loaders.py [--cases 3000] [--seed 0] [--time-limit 10]
[--targets load inspect run "run --no-check" verify "optimize --no-check" ...]``.

Seeds are a few small valid models: node test models of the onnx package (If, Loop, Scan,
Conv, Gather, Reshape, ...) and one model whose weights live in an external data file. Each
case takes a seed, applies one to three mutations and feeds the result to every target:

- protobuf mutations (parse, mutate, serialize): dims, data_type, attribute types and values,
  value names, node inputs and outputs, opset imports, ir_version, external-data entries;
- byte mutations: flips and truncations of tensor data, and of the serialized file.

A target's outcome is ``ok`` (read or ran), ``error`` (a ``NeffkitError``; for the CLI exit
status 2 with one ``neffkit: error:`` line on stderr and no output file), ``foreign`` (any
other exception, exit status 3, a traceback, more than one line on stderr, stderr output on
success, or an output file left by a failed command) or ``hang`` (past the per-case time
limit, found with ``signal.setitimer``). The goal is no foreign outcome and no hang. The
address space is capped (``--memory-gb``) so that a model asking for terabytes fails with
MemoryError instead of taking the machine. Results: ``bench/results/fuzz_loaders.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto, TensorProto
from onnx import helper as h

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import write_results  # noqa: E402
from fuzz_mutations import PROTO_MUTATORS, mutate_file_bytes  # noqa: E402

SEED_CASES = (
    "test_add",
    "test_conv_with_strides_padding",
    "test_if",
    "test_loop11",
    "test_scan9_sum",
    "test_gather_0",
    "test_reshape_extended_dims",
    "test_matmul_2d",
    "test_layer_normalization_2d_axis0",
    "test_slice",
    "test_cast_FLOAT_to_FLOAT16",
    "test_constant",
)
TARGETS = ("load", "inspect", "run", "run --no-check")
#: More commands a campaign can take (``--targets``): slower, and they reach the passes, the
#: TorchScript export and the verification on the same mutated models.
MORE_TARGETS = ("verify", "optimize --no-check", "convert --no-check")
OUTCOMES = ("ok", "error", "foreign", "hang")


class _Hang(BaseException):
    """Raised by the interval timer in the middle of a case that ran too long."""


# -- seeds ------------------------------------------------------------------------------------


def seed_models() -> list[tuple[str, ModelProto]]:
    """The onnx node test models named in ``SEED_CASES`` plus an external-data model."""
    from neffkit.testing.onnx_cases import node_cases

    by_name = {c.name: c for c in node_cases()}
    out = [(n, by_name[n].model) for n in SEED_CASES if n in by_name]
    out.append(("external_data", external_data_model()))
    return out


def external_data_model() -> ModelProto:
    """``y = x @ w + b`` with ``w`` and ``b`` marked for an external data file."""
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")
    b = onnx.numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["m", "b"], ["y"])]
    g = h.make_graph(
        nodes,
        "ext",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [w, b],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.external_data_helper.convert_model_to_external_data(
        m, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0
    )
    return m


def write_model(m: ModelProto, folder: str, data: bytes | None = None) -> str:
    """Writes ``m`` (or the raw ``data``) as ``model.onnx`` in ``folder``; external tensors
    (still holding their bytes in ``raw_data``) go to the file their entries name."""
    path = os.path.join(folder, "model.onnx")
    if data is None:
        m = _write_external(m, folder)
        data = m.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    return path


def _write_external(m: ModelProto, folder: str) -> ModelProto:
    if not any(t.data_location == TensorProto.EXTERNAL for t in m.graph.initializer):
        return m
    m = ModelProto.FromString(m.SerializeToString())
    with open(os.path.join(folder, "weights.bin"), "wb") as f:
        for t in m.graph.initializer:
            if t.data_location != TensorProto.EXTERNAL or not t.HasField("raw_data"):
                continue
            offset = f.tell()
            f.write(t.raw_data)
            entries = {e.key: e for e in t.external_data}
            # Keep a mutated entry as mutated; set only what is missing.
            if "offset" not in entries:
                e = t.external_data.add()
                e.key, e.value = "offset", str(offset)
            if "length" not in entries:
                e = t.external_data.add()
                e.key, e.value = "length", str(len(t.raw_data))
            t.ClearField("raw_data")
    return m


# -- targets ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _stderr_to(buf: list[str]):
    """Captures stderr at the file-descriptor level (C++ libraries write there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        text = io.StringIO()
        try:
            with contextlib.redirect_stderr(text):
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            buf.append(tmp.read().decode("utf-8", "replace") + text.getvalue())


def _cli(argv: list[str]) -> tuple[str, str]:
    from neffkit.cli import main

    err: list[str] = []
    with _stderr_to(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    text = err[0].strip()
    lines = text.splitlines()
    if rc == 0:
        return ("ok", "") if not text else ("foreign", f"exit 0 but stderr: {text[:300]}")
    clean = rc == 2 and len(lines) == 1 and lines[0].startswith("neffkit: error: ")
    if clean and "Traceback" not in text:
        return "error", lines[0]
    return "foreign", f"exit {rc}: {text[-600:]}"


def _load(path: str) -> tuple[str, str]:
    import neffkit

    err: list[str] = []
    try:
        with _stderr_to(err):
            neffkit.load(path)
    except neffkit.NeffkitError as e:
        return ("error", str(e)) if not err[0] else ("foreign", f"stderr: {err[0][:300]}")
    if err[0]:
        return "foreign", f"stderr: {err[0][:300]}"
    return "ok", ""


def run_target(target: str, path: str, limit: float) -> tuple[str, str]:
    """One target on one file: (outcome, detail), never raising."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Hang()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        if target == "load":
            return _load(path)
        command, *flags = target.split()
        if command == "verify":
            return _cli([command, path, path, *flags])
        if command in ("optimize", "convert"):
            out = os.path.join(
                os.path.dirname(path), "out.onnx" if command == "optimize" else "out.pt"
            )
            outcome, detail = _cli([command, path, "-o", out, *flags])
            if outcome == "error" and os.path.exists(out):
                return "foreign", f"exit 2 but {os.path.basename(out)} was written: {detail}"
            return outcome, detail
        return _cli([command, path, *flags])
    except _Hang:
        return "hang", f"over {limit:.0f} s"
    except Exception as e:  # noqa: BLE001 - counting these is the point
        return "foreign", f"{type(e).__name__}: {str(e)[:300]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- the campaign -----------------------------------------------------------------------------


def make_case(
    seeds: list[tuple[str, ModelProto]], rng: random.Random, folder: str
) -> tuple[str, str | None, str]:
    """Writes one mutated model into ``folder``: (seed name, its path or None, what was done).

    The path is None when the mutated proto cannot even be serialized.
    """
    name, seed = rng.choice(seeds)
    m = ModelProto.FromString(seed.SerializeToString())
    if rng.random() < 0.15:  # mutate the file as written
        path = write_model(m, folder)
        with open(path, "rb") as f:
            data, what = mutate_file_bytes(f.read(), rng)
        return name, write_model(m, folder, data=data), what
    done = []
    try:
        for _ in range(rng.randrange(1, 4)):
            done.append(PROTO_MUTATORS[rng.choice(list(PROTO_MUTATORS))](m, rng))
    except ValueError as e:  # protobuf refuses the value (a closed enum)
        return name, None, "; ".join([*done, str(e)])
    what = "; ".join(done)
    try:
        return name, write_model(m, folder), what
    except (ValueError, TypeError, OSError, OverflowError):
        return name, None, what


@contextlib.contextmanager
def capped_memory(extra_gb: float):
    """Caps the address space at what the process maps now plus ``extra_gb`` (0: no cap), so a
    model asking for terabytes fails with MemoryError instead of swapping; restored after."""
    import resource

    if extra_gb <= 0:
        yield
        return
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    old = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + int(extra_gb * 2**30)
    if old[1] != resource.RLIM_INFINITY:
        cap = min(cap, old[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def campaign(
    cases: int,
    seed: int = 0,
    targets: tuple[str, ...] = TARGETS,
    limit: float = 10.0,
    on_case: Callable[[int, dict], None] | None = None,
    memory_gb: float = 4.0,
) -> dict[str, Any]:
    """Runs ``cases`` mutated models through ``targets``; returns counts and the bad cases.

    ``memory_gb`` is how much address space the cases may map beyond what is mapped already.
    """
    with capped_memory(memory_gb):
        return _campaign(cases, seed, targets, limit, on_case)


def _campaign(
    cases: int,
    seed: int,
    targets: tuple[str, ...],
    limit: float,
    on_case: Callable[[int, dict], None] | None,
) -> dict[str, Any]:
    import logging

    logging.getLogger("neffkit").setLevel(logging.WARNING)
    rng = random.Random(seed)
    seeds = seed_models()
    counts = {t: collections.Counter() for t in targets}
    by_mutator: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    bad: list[dict[str, Any]] = []
    unwritable = 0
    start = time.perf_counter()
    for i in range(cases):
        with tempfile.TemporaryDirectory(prefix="neffkit-fuzz-") as folder:
            name, path, what = make_case(seeds, rng, folder)
            kind = what.split(":")[0].split(" ")[0]
            if path is None:  # protobuf refuses to serialize it: nothing to feed
                unwritable += 1
                by_mutator[kind]["unwritable"] += 1
                continue
            results = {}
            for t in targets:
                outcome, detail = run_target(t, path, limit)
                counts[t][outcome] += 1
                by_mutator[kind][outcome] += 1
                results[t] = outcome
                if outcome in ("foreign", "hang"):
                    bad.append(
                        {"case": i, "seed": name, "mutation": what, "target": t,
                         "outcome": outcome, "detail": detail}
                    )  # fmt: skip
            if on_case:
                on_case(i, results)
    return {
        "cases": cases,
        "seed": seed,
        "time_limit_s": limit,
        "seconds": time.perf_counter() - start,
        "seeds": [n for n, _ in seeds],
        "unwritable": unwritable,
        "counts": {t: {o: counts[t][o] for o in OUTCOMES} for t in targets},
        "by_mutation": {k: dict(v) for k, v in sorted(by_mutator.items())},
        "bad": bad,
    }


def markdown(r: dict[str, Any], memory_gb: float) -> str:
    lines = [
        "# Loader fuzzing: mutated models through neffkit's readers and commands",
        "",
        f"{r['cases']} mutated models (seed {r['seed']}), from {len(r['seeds'])} seed models "
        f"({', '.join(r['seeds'])}); per-case limit {r['time_limit_s']:.0f} s, address "
        f"space capped at {memory_gb:g} GiB beyond the start's; {r['seconds']:.0f} s in all. "
        f"{r['unwritable']} mutated protos could not be serialized and were skipped.",
        "",
        "| target | ok | NeffkitError (exit 2) | foreign | hang |",
        "|---|---|---|---|---|",
    ]
    for t, c in r["counts"].items():
        lines.append(f"| {t} | {c['ok']} | {c['error']} | {c['foreign']} | {c['hang']} |")
    lines += [
        "",
        "Outcomes by the case's first mutation (all targets):",
        "",
        "| mutation | outcomes |",
        "|---|---|",
    ]
    for k, v in r["by_mutation"].items():
        lines.append(f"| {k} | {', '.join(f'{o} {n}' for o, n in sorted(v.items()))} |")
    lines += ["", f"Foreign exceptions and hangs: {len(r['bad'])}."]
    for b in r["bad"][:20]:
        lines.append(f"- case {b['case']} ({b['seed']}, {b['mutation']}) {b['target']}: "
                     f"{b['outcome']}: {b['detail'][:200]}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--targets",
        nargs="+",
        default=list(TARGETS),
        choices=[*TARGETS, *MORE_TARGETS],
        metavar="TARGET",
        help=f"what each case goes through (default: {', '.join(TARGETS)}; "
        f"also: {', '.join(MORE_TARGETS)})",
    )
    p.add_argument("--time-limit", type=float, default=10.0, help="seconds per case and target")
    p.add_argument(
        "--memory-gb", type=float, default=4.0, help="address space beyond the start's (0: no cap)"
    )
    a = p.parse_args(argv)

    def progress(i: int, results: dict) -> None:
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{a.cases}", flush=True)

    r = campaign(
        a.cases,
        a.seed,
        tuple(a.targets),
        limit=a.time_limit,
        on_case=progress,
        memory_gb=a.memory_gb,
    )
    paths = write_results("fuzz_loaders", r, markdown(r, a.memory_gb))
    print(markdown(r, a.memory_gb))
    print("wrote", *paths)
    return 0 if not r["bad"] else 1


if __name__ == "__main__":
    sys.exit(main())
