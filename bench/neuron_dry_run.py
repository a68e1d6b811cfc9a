"""Bench: the Neuron dry run's operator-support report on the embedded Conformer's decoder forms.

Exports the Conformer (``neffkit example conformer``: width 128, up to 75 tokens), turns its
greedy loop into the three static forms of docs/user-guide.md ("Decoder loops"): the full unroll
(``unroll``), the partitioned unroll (``partition-unroll{boundaries=25+50+75}``) and the padded
host loop (``pad-loop{max-len=75}`` + ``split``), each with the default pipeline; cuts each into
its compiled units (``neffkit.backends.neuron.units.compiled_units``), and reports every unit on
inf1 and inf2 (``neffkit.backends.neuron.support``), with the CPU fallback off so the report
names what an unrolled decoder's compile would refuse. Nothing is timed.

Run: ``python bench/neuron_dry_run.py``. Writes ``bench/results/neuron_dry_run.{md,json}`` and
the table between the ``neuron_dry_run`` markers of docs/neuron-dry-run.md.
"""

from __future__ import annotations

import json
import operator
import os
import sys
import warnings
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import RESULTS, machine  # noqa: E402

from neffkit.backends.neuron.support import (  # noqa: E402
    CPU,
    DEVICE,
    LIMITED,
    UNLISTED,
    UnitReport,
    analyze_unit,
    render_report,
)
from neffkit.backends.neuron.units import UnitPlan, compiled_units  # noqa: E402
from neffkit.examples.conformer import example_input, export_conformer_onnx  # noqa: E402
from neffkit.files import write_text  # noqa: E402
from neffkit.ir.core import Graph  # noqa: E402
from neffkit.optimize import DEFAULT_PIPELINES, optimize  # noqa: E402

D = DEFAULT_PIPELINES["torch"]  # the default pipeline
FORMS = {
    "full unroll": f"unroll,{D}",
    "partitioned unroll": f"partition-unroll{{boundaries=25+50+75}},{D}",
    "padded host loop": f"{D},pad-loop{{max-len=75}},{D},split",
    # issue 12: the same form with the depthwise convolutions rewritten (shift-and-multiply)
    "padded host loop, dwconv": (
        f"{D},dwconv{{strategy=shift-mac}},pad-loop{{max-len=75}},{D},split"
    ),
}
TARGETS = ("inf1", "inf2")
DOCS_PAGE = os.path.join(os.path.dirname(RESULTS), os.pardir, "docs", "neuron-dry-run.md")
BEGIN, END = "<!-- neuron_dry_run:begin -->", "<!-- neuron_dry_run:end -->"


def host_ops(plan: UnitPlan) -> int:
    """Torch calls of the host code outside the compiled units (they run on the CPU)."""
    count = 0
    for module in plan.host.modules():
        if isinstance(module, torch.fx.GraphModule):
            for node in module.graph.nodes:
                if node.op in ("call_function", "call_method") and node.target not in (
                    operator.getitem,
                ):
                    count += 1
    return count


def form_units(graph: Graph, passes: str) -> tuple[Graph, UnitPlan]:
    """The form's graph after ``passes`` and its compiled units, traced on the example."""
    g, _ = optimize(graph, passes, verify=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = compiled_units(g, {"image": example_input()})
    return g, plan


def summary_rows(form: str, target: str, reports: list[UnitReport]) -> list[str]:
    """The docs table's rows of one form on one target."""
    rows = []
    for r in reports:
        unlisted = f"{r.count(UNLISTED)}"
        per_request = f"{r.transitions}"
        if r.worst_transitions is not None:
            per_request += f" (<= {r.worst_transitions})"
        error = "none" if r.error is None else r.error.split(": no CPU fallback for ", 1)[-1]
        rows.append(
            f"| {form} | {target} | {r.name} | {r.trips} | {r.aten_nodes} | {r.count(DEVICE)} "
            f"| {r.count(CPU)} | {r.count(LIMITED)} | {unlisted} | {r.device_segments} "
            f"| {per_request} | {'yes' if r.static else 'no'} | {error} |"
        )
    return rows


def main() -> None:
    model = export_conformer_onnx()
    header = (
        "| form | target | unit | trips | op nodes | device | CPU | limited | not listed "
        "| device segments | transitions/request | static | predicted error (fallback off) |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    )
    rows: list[str] = []
    sections: list[str] = []
    data: dict[str, Any] = {"forms": {}}
    host_lines = []
    for form, passes in FORMS.items():
        g, plan = form_units(model, passes)
        onnx_nodes = sum(1 for _ in g.all_nodes())
        host = host_ops(plan)
        host_lines.append(
            f"| {form} | `{passes}` | {plan.kind} | {', '.join(plan.names)} | {onnx_nodes} "
            f"| {host} |"
        )
        data["forms"][form] = {
            "passes": passes,
            "plan": plan.kind,
            "units": [
                {"name": u.name, "trips": u.trips, "steps": u.steps, "static": u.static}
                for u in plan.units
            ],
            "onnx_nodes": onnx_nodes,
            "host_ops": host,
            "targets": {},
        }
        for target in TARGETS:
            reports = [
                analyze_unit(u.name, u.traced, target, trips=u.trips, fallback=False)
                for u in plan.units
            ]
            md, js = render_report(reports, target=target)
            sections.append(f"## {form} on {target}\n\n{md}")
            data["forms"][form]["targets"][target] = js
            rows += summary_rows(form, target, reports)
        print(f"{form}: {plan.kind} {plan.names}", flush=True)
    info = machine()
    run = (
        f"Run {info['date']} ({info['platform']}, torch {info['torch']}); nothing is timed, "
        "so the machine's load does not matter."
    )
    forms_table = (
        "| form | passes | units | unit names | ONNX nodes | host-code ops |\n"
        "|---|---|---|---|---:|---:|\n" + "\n".join(host_lines)
    )
    table = f"{forms_table}\n\n{header}\n" + "\n".join(rows)
    markdown = (
        "# Neuron dry run: the Conformer's decoder forms on inf1 and inf2\n\n"
        f"`python bench/neuron_dry_run.py`. {run}\n\n{table}\n\n" + "\n".join(sections)
    )
    os.makedirs(RESULTS, exist_ok=True)
    write_text(os.path.join(RESULTS, "neuron_dry_run.md"), markdown.rstrip() + "\n")
    data = {"machine": info, **data}
    text = json.dumps(data, indent=1, default=str) + "\n"
    write_text(os.path.join(RESULTS, "neuron_dry_run.json"), text)
    update_docs(f"{run}\n\n{table}")


def update_docs(table: str, path: str = DOCS_PAGE) -> None:
    """Replaces the table between the markers of docs/neuron-dry-run.md (or ``path``)."""
    path = os.path.normpath(path)
    with open(path, encoding="utf-8") as f:
        page = f.read()
    if page.count(BEGIN) != 1 or page.count(END) != 1:
        raise SystemExit(f"{path}: expected one {BEGIN} and one {END}")
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    write_text(path, f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
