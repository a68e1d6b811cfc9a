"""Bench: how much of the TorchScript zoo neffkit's frontend lifts, beside torch.onnx.export.

Run: ``python bench/torchscript_coverage.py [--quick] [--only a,b]``. For every module of
``neffkit.testing.torchscript_zoo`` in every form it is meant for (scripted, traced):

- op coverage: the aten ops of the prepared TorchScript graph (frozen, inference context
  folded, raise branches left out) that lift to ONNX ops rather than staying ``aten`` nodes,
  by distinct (module, op kind) pairs and weighted by node count;
- round trips: the lifted graph on neffkit's torch backend, and exported with ``to_onnx`` on
  onnxruntime, give the module's outputs;
- the same modules through ``torch.onnx.export(dynamo=False)`` (TorchScript-based) and through
  ``TS2EPConverter`` + ``torch.onnx.export(dynamo=True)`` (``dynamo=True`` refuses a
  ScriptModule): export succeeds AND onnxruntime gives the module's outputs; each failure is
  recorded with its reason in one line.

Writes ``bench/results/torchscript_coverage{,_quick}.{json,md}``. ``--quick`` uses the zoo's small
sizes everywhere; the full run uses the real sizes of the named models (ResNet-50 at 224,
BERT-base, the Conformer at width 128..).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import logging
import os
import re
import sys
import time
import warnings
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import write_results  # noqa: E402

RTOL, ATOL = 1e-3, 1e-4
#: The zoo modules with a real size that differs from the small one.
REAL_SIZED = ("conformer_ocr", "bert_encoder", "torch_transformer_encoder", "resnet50",
              "lstm_decoder", "gru_decoder")  # fmt: skip


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ADDRESS = re.compile(r" (?:object )?at 0x[0-9a-f]+")


def _line(e: BaseException) -> str:
    """An exception as one line: its type and the first non-empty line of its message, with
    the root cause's when it has one (an exporter's wrapper names only the step that failed)."""
    text = next((s.strip() for s in _ANSI.sub("", str(e)).splitlines() if s.strip()), "")
    text = _ADDRESS.sub("", text)  # object addresses change from run to run
    root = e
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    if root is e:
        return f"{type(e).__name__}: {text}"[:240]
    if len(text) > 100:
        text = text[:100] + "..."
    return f"{type(e).__name__}: {text} (cause: {_line(root)})"[:300]


def _flat(out: Any) -> list[np.ndarray]:
    import torch  # noqa: PLC0415

    if isinstance(out, list | tuple):
        return [x for item in out for x in _flat(item)]
    return [out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)]


def _compare(got: list[Any], want: list[np.ndarray]) -> str:
    """'ok', or why the outputs differ."""
    if len(got) != len(want):
        return f"mismatch: {len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        g = np.asarray(g)
        if g.shape != w.shape:
            return f"mismatch: output {i} shape {g.shape}, expected {w.shape}"
        exact = w.dtype.kind in "biu"
        if (exact and not np.array_equal(g, w)) or (
            not exact and not np.allclose(g, w, rtol=RTOL, atol=ATOL)
        ):
            return f"mismatch: output {i} values differ"
    return "ok"


def aten_ops(ts_module: Any) -> collections.Counter[str]:
    """Counts of the aten op kinds of the prepared TorchScript graph (as the frontend sees it
    before lifting), nested blocks included, raise branches left out."""
    from neffkit.frontends.torchscript.prepare import (  # noqa: PLC0415
        _walk,
        fold_inference_context,
        freeze,
    )

    frozen = freeze(ts_module)
    fold_inference_context(frozen.graph)
    counts: collections.Counter[str] = collections.Counter()
    for node, in_raise in _walk(frozen.graph):
        if node.kind().startswith("aten::") and not in_raise:
            counts[node.kind()[len("aten::") :]] += 1
    return counts


def _ours(ts: Any, example: tuple[Any, ...], want: list[np.ndarray]) -> dict[str, Any]:
    """neffkit's frontend: op coverage and the two round trips."""
    from neffkit.execution import Runner  # noqa: PLC0415
    from neffkit.frontends.torchscript import load_torchscript  # noqa: PLC0415
    from neffkit.ir.serde import to_onnx  # noqa: PLC0415

    ops = aten_ops(ts)
    row: dict[str, Any] = {"ops": dict(ops)}
    feeds = [x.numpy() if hasattr(x, "numpy") else np.asarray(x) for x in example]
    try:
        graph = load_torchscript(ts, example_inputs=example)
    except Exception as e:  # noqa: BLE001 - recorded, the bench goes on
        row.update(lift=_line(e), kept={k: n for k, n in ops.items()}, torch=None, ort=None)
        return row
    kept = collections.Counter(n.op_type for n in graph.all_nodes() if n.domain == "aten")
    row["lift"] = "ok"
    row["kept"] = {k: min(kept[k], n) for k, n in ops.items() if kept[k]}
    try:
        row["torch"] = _compare(Runner(graph, "torch", check=False)(feeds), want)
    except Exception as e:  # noqa: BLE001
        row["torch"] = _line(e)
    if kept:
        row["ort"] = "n/a: aten nodes left (" + ", ".join(sorted(kept)) + ")"
        return row
    try:
        row["ort"] = _compare(Runner(to_onnx(graph), "onnxruntime")(feeds), want)
    except Exception as e:  # noqa: BLE001
        row["ort"] = _line(e)
    return row


def _ort_run(proto: bytes, example: tuple[Any, ...]) -> list[Any]:
    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    sess = ort.InferenceSession(proto, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    items = list(example)
    if len(inputs) != len(items):  # Python numbers baked in as constants: feed the tensors
        items = [x for x in example if isinstance(x, torch.Tensor)]
    if len(inputs) != len(items):
        raise RuntimeError(f"the ONNX model takes {len(inputs)} inputs, the module "
                           f"{len(example)}")  # fmt: skip
    feeds = {}
    for i, x in zip(inputs, items, strict=True):
        if isinstance(x, torch.Tensor):
            feeds[i.name] = x.numpy()
        else:  # a Python number the exporter made an input: the input's element type
            feeds[i.name] = np.asarray(x, dtype=_ORT_TYPES.get(i.type, np.float32))
    return sess.run(None, feeds)


_ORT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
              "tensor(double)": np.float64, "tensor(bool)": np.bool_}  # fmt: skip


@contextlib.contextmanager
def _quiet() -> Any:
    """Sends stdout and stderr to /dev/null, file descriptors included: the exporters print
    whole graphs from C++ on failure, and the converter logs them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    log = logging.getLogger("torch._export.converter")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
        log.setLevel(level)


def _export_ts(ts: Any, example: tuple[Any, ...], want: list[np.ndarray]) -> str:
    """torch.onnx.export(dynamo=False) of the ScriptModule, run on onnxruntime."""
    import torch  # noqa: PLC0415

    buf = io.BytesIO()
    try:
        with _quiet():
            torch.onnx.export(ts, example, buf, dynamo=False, opset_version=18)
    except Exception as e:  # noqa: BLE001
        return "export: " + _line(e)
    try:
        return _compare(_ort_run(buf.getvalue(), example), want)
    except Exception as e:  # noqa: BLE001
        return "onnxruntime: " + _line(e)


def _export_dynamo(ts: Any, example: tuple[Any, ...], want: list[np.ndarray]) -> str:
    """TS2EPConverter(ScriptModule) -> ExportedProgram -> torch.onnx.export(dynamo=True)."""
    with _quiet():
        return _dynamo_steps(ts, example, want)


def _dynamo_steps(ts: Any, example: tuple[Any, ...], want: list[np.ndarray]) -> str:
    import torch  # noqa: PLC0415
    from torch._export.converter import TS2EPConverter  # noqa: PLC0415

    try:
        ep = TS2EPConverter(ts, example).convert()
    except Exception as e:  # noqa: BLE001
        return "TS2EPConverter: " + _line(e)
    try:
        program = torch.onnx.export(ep, example, dynamo=True, verbose=False)
        proto = program.model_proto.SerializeToString()
    except Exception as e:  # noqa: BLE001
        return "export: " + _line(e)
    try:
        return _compare(_ort_run(proto, example), want)
    except Exception as e:  # noqa: BLE001
        return "onnxruntime: " + _line(e)


def run_case(name: str, form: str, size: str) -> dict[str, Any]:
    """One zoo module in one form through neffkit and the two exporters."""
    import torch  # noqa: PLC0415

    from neffkit.testing.torchscript_zoo import ZOO, convert  # noqa: PLC0415

    t0 = time.perf_counter()
    module, example = ZOO[name].build(size)
    with torch.no_grad():
        want = _flat(module(*example))
    row: dict[str, Any] = {"module": name, "form": form, "size": size}
    try:
        ts = convert(module, form, example)
    except Exception as e:  # noqa: BLE001
        row.update(lift="convert: " + _line(e), ops={}, kept={}, torch=None, ort=None,
                   onnx_ts=None, onnx_dynamo=None)  # fmt: skip
        return row
    row.update(_ours(ts, example, want))
    with torch.no_grad():
        row["onnx_ts"] = _export_ts(ts, example, want)
        row["onnx_dynamo"] = _export_dynamo(ts, example, want)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals: op coverage by (module, op kind) pair and by node, round-trip counts."""
    pairs = mapped_pairs = nodes = mapped_nodes = 0
    for r in rows:
        for op, n in r["ops"].items():
            kept = r["kept"].get(op, 0)
            pairs += 1
            mapped_pairs += kept == 0
            nodes += n
            mapped_nodes += n - kept
    ok = {k: sum(r.get(k) == "ok" for r in rows) for k in ("torch", "ort", "onnx_ts",
                                                             "onnx_dynamo")}  # fmt: skip
    return {
        "cases": len(rows),
        "modules": len({r["module"] for r in rows}),
        "op_pairs": pairs,
        "op_pairs_mapped": mapped_pairs,
        "op_nodes": nodes,
        "op_nodes_mapped": mapped_nodes,
        "lifted": sum(r["lift"] == "ok" for r in rows),
        "round_trip": ok,
    }


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "-"


def _cell(v: Any) -> str:
    return "—" if v is None else "ok" if v == "ok" else str(v).replace("|", "/")


def markdown(rows: list[dict[str, Any]], total: dict[str, Any], title: str) -> str:
    """The results table."""
    n = total["cases"]
    rt = total["round_trip"]
    out = [f"# {title}", "",
           f"{total['modules']} modules, {n} (module, form) cases; tolerance rtol {RTOL}, "
           f"atol {ATOL} (integer outputs exact).", "",
           "| | neffkit | torch.onnx (TorchScript) | torch.onnx (dynamo, via TS2EP) |",
           "|---|---:|---:|---:|",
           f"| aten ops mapped to ONNX, by (module, op) pair | "
           f"{total['op_pairs_mapped']}/{total['op_pairs']} "
           f"({_pct(total['op_pairs_mapped'], total['op_pairs'])}) | | |",
           f"| aten ops mapped to ONNX, by node | {total['op_nodes_mapped']}/{total['op_nodes']} "
           f"({_pct(total['op_nodes_mapped'], total['op_nodes'])}) | | |",
           f"| lifted / exported, onnxruntime matches | {rt['ort']}/{n} ({_pct(rt['ort'], n)}) | "
           f"{rt['onnx_ts']}/{n} ({_pct(rt['onnx_ts'], n)}) | "
           f"{rt['onnx_dynamo']}/{n} ({_pct(rt['onnx_dynamo'], n)}) |",
           f"| lifted, torch backend matches | {rt['torch']}/{n} ({_pct(rt['torch'], n)}) | | |",
           "", "| module | form | ops mapped (kinds) | nodes mapped | kept as aten "
           "| neffkit → torch | neffkit → ONNX → ORT | torch.onnx TS | torch.onnx dynamo |",
           "|---|---|---:|---:|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        kinds = len(r["ops"])
        kept_kinds = sum(1 for k in r["ops"] if r["kept"].get(k))
        nodes = sum(r["ops"].values())
        kept_nodes = sum(r["kept"].values())
        lift = r["lift"]
        ours_torch = _cell(r["torch"]) if lift == "ok" else "lift failed: " + _cell(lift)
        out.append(f"| {r['module']} | {r['form']} | {kinds - kept_kinds}/{kinds} | "
                   f"{nodes - kept_nodes}/{nodes} | {', '.join(sorted(r['kept'])) or '—'} | "
                   f"{ours_torch} | {_cell(r['ort'])} | {_cell(r['onnx_ts'])} | "
                   f"{_cell(r['onnx_dynamo'])} |")  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the bench, writes the results, prints the table; returns the results."""
    from neffkit.testing.torchscript_zoo import ZOO  # noqa: PLC0415

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes for every module")
    p.add_argument("--only", default="", help="comma-separated zoo names (default: all)")
    p.add_argument("--name", default="", help="results file name (default from --quick)")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(ZOO)
    unknown = sorted(set(names) - set(ZOO))
    if unknown:
        p.error(f"not in the zoo: {', '.join(unknown)}")
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            size = "real" if name in REAL_SIZED and not args.quick else "small"
            for form in ZOO[name].forms:
                row = run_case(name, form, size)
                rows.append(row)
                print(f"{name}/{form}: lift {row['lift']}; torch {row['torch']}; "
                      f"ort {row['ort']}; ts {row['onnx_ts']}; dynamo {row['onnx_dynamo']}",
                      flush=True)  # fmt: skip
    total = summarize(rows)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    title = "TorchScript coverage" + (" (quick: small sizes)" if args.quick else "")
    md = markdown(rows, total, title)
    if load is not None:
        md += f"\n\nLoad average at the end (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} " \
              f"{load[2]:.2f} (a shared machine).\n"  # fmt: skip
    name = args.name or ("torchscript_coverage_quick" if args.quick else "torchscript_coverage")
    data = {"total": total, "rows": rows, "tolerance": {"rtol": RTOL, "atol": ATOL},
            "quick": args.quick, "load_average": load}  # fmt: skip
    write_results(name, data, md)
    print(md)
    return data


if __name__ == "__main__":
    main()
