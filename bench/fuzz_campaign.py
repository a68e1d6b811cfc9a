"""Bench: a fuzzing campaign over every registered pass, the default pipeline and the torch
backend, through ``neffkit fuzz``.

Run: ``python bench/fuzz_campaign.py [--total 10000] [--seed 0] [--max-ops 10]``. The examples
are split evenly over the targets; each target's distinct failures (shrunk reproducers) land
in ``bench/results/fuzz/<target>/``. Counts of graphs, failures, distinct bugs and the time go
to ``bench/results/fuzz_campaign.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import RESULTS, write_results  # noqa: E402

from neffkit.cli import main as neffkit_main  # noqa: E402
from neffkit.optimize import DEFAULT_PIPELINES  # noqa: E402
from neffkit.passes.registry import available  # noqa: E402

_SUMMARY = re.compile(r"(\d+) examples, (\d+) failures, (\d+) distinct")


def run_target(flag: list[str], name: str, examples: int, seed: int, max_ops: int) -> dict:
    """One ``neffkit fuzz`` campaign; returns its counts and time."""
    out = os.path.join(RESULTS, "fuzz", name)
    argv = [
        "fuzz",
        *flag,
        "--examples",
        str(examples),
        "--seed",
        str(seed),
        "--out",
        out,
        "--max-ops",
        str(max_ops),
    ]
    buf = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = neffkit_main(argv)
    seconds = time.perf_counter() - t
    m = _SUMMARY.search(buf.getvalue())
    row = {
        "target": name,
        "exit": rc,
        "examples": int(m[1]) if m else None,
        "failures": int(m[2]) if m else None,
        "distinct": int(m[3]) if m else None,
        "seconds": round(seconds, 1),
    }
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--total", type=int, default=10_000, help="examples over all targets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-ops", type=int, default=10)
    a = p.parse_args(argv)
    targets = [(["--pass", n], n) for n in available()]
    targets.append((["--pipeline", DEFAULT_PIPELINES["torch"]], "default-pipeline"))
    targets.append((["--backend", "torch"], "torch-backend"))
    per = max(1, a.total // len(targets))
    t = time.perf_counter()
    rows = [run_target(flag, name, per, a.seed, a.max_ops) for flag, name in targets]
    total_s = time.perf_counter() - t
    totals = {k: sum(r[k] or 0 for r in rows) for k in ("examples", "failures", "distinct")}
    md = [
        "# Fuzzing campaign",
        "",
        f"`python bench/fuzz_campaign.py --total {a.total} --seed {a.seed} --max-ops "
        f"{a.max_ops}`: {per} requested examples per target ('examples' counts every graph "
        "run, shrinking included). Reproducers of distinct failures: `bench/results/fuzz/`.",
        "",
        "| target | examples | failures | distinct | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['target']} | {r['examples']} | {r['failures']} | {r['distinct']} "
            f"| {r['seconds']} |"
        )
    md.append(
        f"| total | {totals['examples']} | {totals['failures']} | {totals['distinct']} "
        f"| {total_s:.0f} |"
    )
    write_results(
        "fuzz_campaign", {"rows": rows, "totals": totals, "seconds": total_s}, "\n".join(md)
    )
    print(totals, f"{total_s:.0f}s")
    return 0 if totals["failures"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
