"""Plain-text formatting shared by the CLI and the reports: tables, model summaries, arrays."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from onnx import AttributeProto

from neffkit.execution.inputs import type_str
from neffkit.ir.core import Graph, Node

if TYPE_CHECKING:
    from neffkit.passes.manager import ManagerReport
    from neffkit.passes.pipeline import Group

__all__ = [
    "ConstantGrowth",
    "constant_growth",
    "format_arrays",
    "format_bytes",
    "format_summary",
    "format_table",
    "format_verification",
    "model_summary",
]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A left-aligned text table with a rule under the headers."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_bytes(n: int) -> str:
    """``1.5 MiB``-style size."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def format_arrays(names: Sequence[str], arrays: Sequence[Any], count: int = 5) -> str:
    """One line per array: name, dtype, shape and its first ``count`` values."""
    rows = []
    for name, a in zip(names, arrays):
        if isinstance(a, list):
            rows.append([name, "sequence", f"[{len(a)}]", ""])
            continue
        arr = np.asarray(a)
        flat = arr.reshape(-1)
        head = ", ".join(_value_str(x) for x in flat[:count])
        more = ", ..." if flat.size > count else ""
        rows.append([name, arr.dtype.name, str(list(arr.shape)), f"[{head}{more}]"])
    return format_table(["output", "dtype", "shape", "values"], rows)


def _value_str(x: Any) -> str:
    if isinstance(x, np.floating | float) or type(x).__name__ in ("bfloat16",):
        return f"{float(x):.6g}"
    if isinstance(x, bytes):
        return repr(x)
    return str(x)


# -- model summary ----------------------------------------------------------------------------


def model_summary(graph: Graph, path: str | None = None) -> dict[str, Any]:
    """Facts about a model for ``neffkit inspect``, as a JSON-ready dict."""

    meta = graph.meta
    all_nodes = list(graph.all_nodes())
    ops = Counter(_op_name(n) for n in all_nodes)
    const_count = const_bytes = 0
    external: dict[str, int] = {}
    base = os.path.dirname(os.path.abspath(path)) if path else None
    for g in graph.all_graphs():
        for v in g.initializers.values():
            t = v.const
            if t is None:
                continue
            const_count += 1
            const_bytes += _nbytes(t)
            ext = t.external_path  # where external bytes live (read lazily)
            if ext is not None:
                where = os.path.relpath(ext, base) if base else ext
                external[where] = external.get(where, 0) + _nbytes(t)
    constant_nodes = [n for n in all_nodes if n.op_type == "Constant" and n.domain == ""]
    constant_node_bytes = 0
    for n in constant_nodes:
        t = n.attr("value")
        if t is not None and hasattr(t, "nbytes"):
            constant_node_bytes += _nbytes(t)
    subgraphs = []
    for n in all_nodes:
        for attr_name, sub in _subgraphs(n):
            subgraphs.append(
                {
                    "node": n.name or "<unnamed>",
                    "op": _op_name(n),
                    "attribute": attr_name,
                    "nodes": len(list(sub.all_nodes())),
                    "inputs": len(sub.inputs),
                    "outputs": len(sub.outputs),
                }
            )
    return {
        "path": path,
        "file_bytes": os.path.getsize(path) if path and os.path.isfile(path) else None,
        "ir_version": meta.ir_version,
        "producer": " ".join(x for x in (meta.producer_name, meta.producer_version) if x),
        "opset_imports": {d or "ai.onnx": v for d, v in sorted(graph.opset_imports.items())},
        "graph_name": graph.name,
        "inputs": [
            {
                "name": v.name,
                "type": type_str(v.type),
                **({"initializer": True} if v.const is not None else {}),
            }
            for v in graph.inputs
        ],
        "outputs": [{"name": v.name, "type": type_str(_out_type(v))} for v in graph.outputs],
        "nodes": len(graph),
        "nodes_total": len(all_nodes),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "initializers": const_count,
        "initializer_bytes": const_bytes,
        "constant_nodes": len(constant_nodes),
        "constant_node_bytes": constant_node_bytes,
        "subgraphs": subgraphs,
        "external_data": [{"file": f, "bytes": b} for f, b in sorted(external.items())],
    }


def _op_name(n: Node) -> str:
    return f"{n.domain}::{n.op_type}" if n.domain and n.domain != "ai.onnx" else n.op_type


def _nbytes(t: Any) -> int:
    try:
        return int(t.nbytes)
    except Exception:  # noqa: BLE001 - strings need decoding; a broken one counts as 0
        return 0


def _out_type(v: Any) -> Any:
    if v.type is None and v.const is not None:
        from neffkit.ir.types import TensorType

        return TensorType(v.const.dtype, v.const.shape)
    return v.type


def _subgraphs(n: Node) -> list[tuple[str, Graph]]:
    out = []
    for a in n.attributes.values():
        v = a.value if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) else None
        if isinstance(v, Graph):
            out.append((a.name, v))
        elif isinstance(v, list):
            out.extend((f"{a.name}[{i}]", g) for i, g in enumerate(v))
    return out


def format_summary(s: dict[str, Any]) -> str:
    """The text form of :func:`model_summary`."""
    lines = [f"model:       {s['path'] or '<in memory>'}"]
    if s["file_bytes"] is not None:
        lines[0] += f" ({format_bytes(s['file_bytes'])})"
    lines.append(f"ir version:  {s['ir_version']}")
    lines.append(f"producer:    {s['producer'] or '-'}")
    opsets = ", ".join(f"{d} {v}" for d, v in s["opset_imports"].items())
    lines.append(f"opsets:      {opsets or '-'}")
    lines.append(f"nodes:       {s['nodes']} top level, {s['nodes_total']} including subgraphs")
    lines.append(
        f"constants:   {s['initializers']} initializers "
        f"({format_bytes(s['initializer_bytes'])}), {s['constant_nodes']} Constant nodes "
        f"({format_bytes(s['constant_node_bytes'])})"
    )
    lines += ["", "inputs:"]
    for i in s["inputs"]:
        extra = "  (has an initializer: not fed at run time)" if i.get("initializer") else ""
        lines.append(f"  {i['name']}: {i['type']}{extra}")
    lines += ["outputs:"]
    lines += [f"  {o['name']}: {o['type']}" for o in s["outputs"]]
    lines += ["", "ops:"]
    if s["ops"]:
        lines.append(format_table(["op", "count"], list(s["ops"].items())))
    else:
        lines.append("  (none)")
    if s["subgraphs"]:
        lines += ["", "subgraphs:"]
        rows = [[x["node"], x["op"], x["attribute"], x["nodes"]] for x in s["subgraphs"]]
        lines.append(format_table(["node", "op", "attribute", "nodes"], rows))
    if s["external_data"]:
        lines += ["", "external data:"]
        lines += [f"  {e['file']}: {format_bytes(e['bytes'])}" for e in s["external_data"]]
    return "\n".join(lines)


def format_verification(report: Any) -> str:
    """The text table of a ``VerificationReport`` (what ``str(report)`` returns)."""
    rows = []
    for o in report.outputs:
        rows.append(
            [
                o.name,
                _typed(o.reference_dtype, o.reference_shape),
                _typed(o.candidate_dtype, o.candidate_shape),
                _err(o.max_abs_error),
                _err(o.max_rel_error),
                f"{o.mismatches}/{o.elements}",
                f"{o.rtol:g}/{o.atol:g}",
                "ok" if o.ok else "FAIL",
            ]
        )
    headers = ["output", "reference", "candidate", "max abs", "max rel", "mismatched"]
    headers += ["rtol/atol", "status"]
    seed = "" if report.seed is None else f", random from seed {report.seed}"
    lines = [
        f"reference: {report.reference} on {report.reference_backend}",
        f"candidate: {report.candidate} on {report.backend}",
        f"inputs:    {report.input_sets} set(s){seed}",
        *_set_lines(getattr(report, "sets", [])),
        "",
        format_table(headers, rows),
    ]
    notes = [f"  {o.name}: {o.note}" for o in report.outputs if o.note]
    if notes:
        lines += ["", "notes:", *notes]
    lines += ["", report.summary()]
    return "\n".join(lines)


def _set_lines(sets: Sequence[Any]) -> list[str]:
    """One line per input set (source, dim sizes, verdict), and its note when it has one."""
    lines = []
    for item in sets:
        if item.ok:
            verdict = f"ok (max abs error {_err(item.max_abs_error)})"
        else:
            verdict = "FAIL (" + ", ".join(item.failures) + ")"
        lines.append(f"  {item.describe()}: {verdict}")
        if item.note:
            lines.append(f"    note: {item.note}")
    return lines


def _typed(dtype: str | None, shape: tuple[int, ...] | None) -> str:
    if dtype is None:
        return "-"
    return f"{dtype}{list(shape) if shape is not None else '[?]'}"


def _err(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


# -- constant growth --------------------------------------------------------------------------

#: ``optimize`` warns when constants grow by more than this factor ...
GROWTH_RATIO = 2.0
#: ... and by more than this many bytes.
GROWTH_BYTES = 1024 * 1024


@dataclass
class ConstantGrowth:
    """How much a pipeline grew the model's constants, and what would have prevented it.

    Attributes:
        bytes_before: constant bytes (initializers and ``Constant`` nodes) before the pipeline.
        bytes_after: the same after it.
        by_pass: bytes added per pass that added any (``{"fold": 92846752}``).
        nogrow_pipeline: the same pipeline with ``fold{max-growth=1}`` (None: no ``fold`` in it).
        overridable_inputs: IR v3 inputs with an initializer that were folded as constants
            (``--keep-overridable-inputs`` keeps them as inputs instead).
    """

    bytes_before: int
    bytes_after: int
    by_pass: dict[str, int]
    nogrow_pipeline: str | None = None
    overridable_inputs: int = 0

    @property
    def ratio(self) -> float:
        """``bytes_after / bytes_before`` (infinite from nothing)."""
        if self.bytes_before == 0:
            return float("inf") if self.bytes_after else 1.0
        return self.bytes_after / self.bytes_before

    @property
    def warn(self) -> bool:
        """True when the growth is worth a warning: over 2x and over 1 MiB."""
        grew = self.bytes_after - self.bytes_before
        return self.ratio > GROWTH_RATIO and grew > GROWTH_BYTES

    def message(self) -> str:
        """One line for the user: how much, which passes, and the options that prevent it."""
        passes = ", ".join(f"{n} +{format_bytes(b)}" for n, b in self.by_pass.items())
        r = self.ratio
        ratio = "from nothing" if self.bytes_before == 0 else f"{r:,.{1 if r < 100 else 0}f}x"
        what = "folding materialized" if "fold" in self.by_pass else "passes materialized"
        fixes = []
        if self.nogrow_pipeline is not None and "fold" in self.by_pass:
            fixes.append(f"--passes '{self.nogrow_pipeline}'")
        if self.overridable_inputs:
            fixes.append(
                f"--keep-overridable-inputs (the model's {self.overridable_inputs} inputs "
                "with an initializer were folded as constants)"
            )
        if not fixes:
            fixes.append("--max-constant-bytes (a cap on each constant)")
        return (
            f"constants grew from {format_bytes(self.bytes_before)} to "
            f"{format_bytes(self.bytes_after)} ({ratio}): {what} values the model computes "
            f"at run time ({passes}); to prevent it use " + " or ".join(fixes)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with ``ratio``, ``warn`` and ``message``)."""
        ratio = self.ratio
        return {
            **dataclasses.asdict(self),
            "ratio": None if ratio == float("inf") else ratio,
            "warn": self.warn,
            "message": self.message() if self.warn else None,
        }


def constant_growth(
    passes: ManagerReport, pipeline: Group | None = None, overridable_inputs: int = 0
) -> ConstantGrowth:
    """The growth a ``ManagerReport`` records, with a no-growth twin of ``pipeline``.

    Args:
        passes: the pass manager's report (before/after bytes and per-pass deltas).
        pipeline: the parsed pipeline (a ``Group``) that ran; its ``fold`` passes get
            ``max-growth=1`` in the suggested pipeline.
        overridable_inputs: IR v3 inputs with an initializer that passes could fold.
    """
    by_pass = {
        name: t["bytes_delta"] for name, t in passes.per_pass().items() if t["bytes_delta"] > 0
    }
    nogrow = None
    if pipeline is not None:
        group, found = _nogrow(pipeline)
        nogrow = group.spec() if found else None
    return ConstantGrowth(
        passes.bytes_before, passes.bytes_after, by_pass, nogrow, overridable_inputs
    )


def _nogrow(group: Group) -> tuple[Group, bool]:
    """A copy of ``group`` whose ``fold`` passes refuse any growth (and whether it has one)."""
    from neffkit.passes.fold_constants import FoldConstants
    from neffkit.passes.pipeline import Group

    items = []
    found = False
    for item in group.items:
        if isinstance(item, Group):
            item, inner = _nogrow(item)
            found = found or inner
        elif isinstance(item, FoldConstants):
            found = True
            if not 0 < item.max_growth <= 1:
                item = dataclasses.replace(item, max_growth=1.0)
        items.append(item)
    return dataclasses.replace(group, items=items), found
