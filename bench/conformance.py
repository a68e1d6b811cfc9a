"""Bench: ONNX node test cases through neffkit's torch backend and through onnx2torch.

Run: ``python bench/conformance.py``. Every node case of ``onnx.backend.test`` whose inputs and
outputs are plain tensors runs through ``neffkit.run(..., backend="torch")`` and through
onnx2torch in the same run, judged with the cases' own tolerances. Pass rates per op go to
``bench/results/conformance.{json,md}``. Target (issue 2): >= 85% for neffkit, and more
cases than onnx2torch.

onnx2torch imports torchvision for two converters (NonMaxSuppression, RoiAlign); PyPI's
torchvision does not import beside the CPU torch used here, so a stand-in module that raises
is installed for it: those two ops count as failures for onnx2torch, every other op runs
unchanged.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import types
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import write_results  # noqa: E402

from neffkit.testing.conformance import (  # noqa: E402
    neffkit_torch_runner,
    plain_node_cases,
    run_case,
)

TARGET = 0.85


def _torchvision_stand_in() -> None:
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401

        return
    except Exception:  # noqa: BLE001 - absent or broken beside this torch
        pass

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("torchvision is not importable beside this torch build")

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.roi_align = unavailable
    ops.nms = unavailable
    ops.batched_nms = unavailable
    tv.ops = ops
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.ops"] = ops


def onnx2torch_runner(model: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Converts with onnx2torch and runs eagerly on the CPU."""
    import torch
    from onnx2torch import convert

    module = convert(model)
    module.eval()
    args = [torch.from_numpy(np.array(x, copy=True)) for x in inputs]
    with torch.no_grad():
        out = module(*args)
    if isinstance(out, torch.Tensor):
        out = [out]
    return [o.detach().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in out]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--no-peer", action="store_true", help="skip onnx2torch")
    a = p.parse_args(argv)
    cases = plain_node_cases()
    runners = {"neffkit": neffkit_torch_runner}
    if not a.no_peer:
        try:
            _torchvision_stand_in()
            import onnx2torch  # noqa: F401

            runners["onnx2torch"] = onnx2torch_runner
        except ImportError as e:
            print(f"onnx2torch not available ({e}); install it with: pip install onnx2torch")
    results: dict[str, list] = {}
    seconds: dict[str, float] = {}
    for name, runner in runners.items():
        t = time.perf_counter()
        results[name] = [run_case(c, runner) for c in cases]
        seconds[name] = time.perf_counter() - t
        passed = sum(o.status == "passed" for o in results[name])
        print(
            f"{name:10} {passed}/{len(cases)} passed ({100 * passed / len(cases):.1f}%) "
            f"in {seconds[name]:.1f}s",
            flush=True,
        )
    per_op: dict[str, dict[str, list[int]]] = collections.defaultdict(dict)
    for name, outs in results.items():
        for o in outs:
            for op in o.ops:
                cell = per_op[op].setdefault(name, [0, 0])
                cell[1] += 1
                cell[0] += o.status == "passed"
    totals = {n: sum(o.status == "passed" for o in outs) for n, outs in results.items()}
    rate = totals["neffkit"] / len(cases)
    failures = {
        name: [
            {"case": o.case, "ops": list(o.ops), "status": o.status, "message": o.message}
            for o in outs
            if o.status != "passed"
        ]
        for name, outs in results.items()
    }
    names = list(runners)
    md = [
        "# ONNX node-test conformance: torch backends",
        "",
        f"`python bench/conformance.py` — {len(cases)} plain-tensor node cases of "
        "`onnx.backend.test`, each judged with its own rtol/atol.",
        "",
        "| tool | passed | rate | time s |",
        "|---|---:|---:|---:|",
    ]
    for n in names:
        md.append(
            f"| {n} | {totals[n]}/{len(cases)} | {100 * totals[n] / len(cases):.1f}% "
            f"| {seconds[n]:.1f} |"
        )
    md += [
        "",
        "## Per op (cases that use the op: passed/total)",
        "",
        "| op | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for op in sorted(per_op):
        cells = []
        for n in names:
            ok, tot = per_op[op].get(n, [0, 0])
            cells.append(f"{ok}/{tot}")
        md.append(f"| {op} | " + " | ".join(cells) + " |")
    write_results(
        "conformance",
        {
            "cases": len(cases),
            "target_rate": TARGET,
            "passed": totals,
            "seconds": seconds,
            "per_op": per_op,
            "failures": failures,
        },
        "\n".join(md),
    )
    ok = rate >= TARGET and all(totals["neffkit"] > v for k, v in totals.items() if k != "neffkit")
    print(
        f"neffkit rate {100 * rate:.1f}% (target {100 * TARGET:.0f}%): {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
