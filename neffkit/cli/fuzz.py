"""``neffkit fuzz`` and ``neffkit reduce``: find pass and backend bugs, then shrink reproducers.

``fuzz`` runs a hypothesis campaign over generated graphs with the properties of
:mod:`neffkit.testing.properties` and writes each distinct shrunk failure to a folder;
``reduce`` shrinks any failing ``.onnx`` model against a user-given shell check, through
:func:`neffkit.testing.reduce.reduce_model`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from neffkit.cli.io import EXIT_MISMATCH, EXIT_OK, read_model, save_npz
from neffkit.cli.options import AddCommand, add_torchscript_args
from neffkit.errors import NeffkitError

_FUZZ_EPILOG = """\
Exactly one of --pass, --pipeline or --backend says what is checked: a pass (runs, verifier,
checker, numeric, changed-flag, fixed-point, text-roundtrip), a pipeline seen as one pass, or
the torch backend against onnxruntime. Each distinct failure (property, pass and the op types of
the shrunk graph) is written to OUT as failure-<k>.onnx (the graph before the pass),
failure-<k>-inputs.npz (the inputs) and failure-<k>.txt (what failed, the graph before and
after). Exit status: 0 without failures, 1 with failures, 2 on bad arguments.

example:
  neffkit fuzz --pass cse --examples 200 --seed 0 --out fuzz-cse
  neffkit fuzz --pipeline "dedup,(fold,simplify,dce)" --examples 500 --out fuzz-pipe --max-ops 6
  neffkit fuzz --backend torch --examples 100 --out fuzz-torch
"""

_REDUCE_EPILOG = """\
COMMAND is a shell command containing {model} (replaced by a candidate .onnx file) that exits
non-zero as long as the failure persists. The model is first bisected (keeping a prefix or a
suffix of its nodes: values cut off become graph inputs or outputs of their known type), then
chunks of nodes and single nodes are removed (their outputs become graph inputs). Every
candidate passes the ONNX checker; one is kept only when COMMAND still fails on it. With
--inputs, the values of new inputs are computed by onnxruntime on the original model and
{inputs} in COMMAND names an .npz with the candidate's inputs (OUT-inputs.npz is written too).

example:
  neffkit reduce bad.onnx -o small.onnx \\
      --check "neffkit optimize {model} -o /tmp/x.onnx --passes cse"
  neffkit reduce bad.onnx -o small.onnx --inputs in.npz \\
      --check "neffkit verify {model} {model} --inputs {inputs}"
"""


def register(add: AddCommand) -> None:
    """Adds ``fuzz`` and ``reduce`` to the ``neffkit`` parser."""
    s = add(
        "fuzz", "fuzz a pass, a pipeline or the torch backend on generated graphs", _FUZZ_EPILOG
    )
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--pass", dest="pass_name", metavar="NAME", help="the pass to check")
    what.add_argument("--pipeline", metavar="P", help="pipeline text, checked as one pass")
    what.add_argument("--backend", choices=["torch"], help="check a backend against onnxruntime")
    s.add_argument("--examples", type=_positive, default=100, metavar="N", help="graphs to try")
    s.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the failures")
    s.add_argument("--max-ops", type=_positive, default=None, metavar="K", help="ops per graph")
    s.set_defaults(func=cmd_fuzz)

    s = add("reduce", "shrink a model while a check command keeps failing", _REDUCE_EPILOG)
    s.add_argument(
        "model", metavar="MODEL", help="the failing model (.onnx; TorchScript is lifted first)"
    )
    s.add_argument("--check", required=True, metavar="COMMAND", help="shell command with {model}")
    s.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the reduced model")
    s.add_argument(
        "--inputs",
        metavar="FILE.npz",
        action="append",
        help="recorded inputs of MODEL (for {inputs}); repeat for several sets: a candidate is "
        "kept when the check fails on at least one of them",
    )
    add_torchscript_args(s)
    s.set_defaults(func=cmd_reduce)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return n


# -- fuzz -------------------------------------------------------------------------------------


def cmd_fuzz(args: argparse.Namespace) -> int:
    """``neffkit fuzz``."""
    from neffkit.testing.properties import without_dead_nodes

    check_one, label = _fuzz_target(args)
    os.makedirs(args.out, exist_ok=True)
    step = max(1, args.examples // 10)
    state = {"calls": 0, "failing": 0, "changed": 0}
    distinct: dict[tuple[Any, ...], Any] = {}
    total_failures = 0
    rewrites = not args.backend  # a pass or pipeline: count the graphs it changed

    def check(graph: Any) -> None:
        result = check_one(graph)
        if rewrites and result.changed:
            state["changed"] += 1

    def progress() -> None:
        if state["calls"] % step == 0:
            changed = f", {state['changed']} changed by the pass" if rewrites else ""
            print(
                f"fuzz: {state['calls']} examples run ({args.examples} asked; shrinking runs "
                f"more), {state['failing']} failing so far{changed}",
                file=sys.stderr,
            )

    options = {} if args.max_ops is None else {"max_ops": args.max_ops}
    for errors in _campaign(check, args.examples, args.seed, options, state, progress):
        for e in errors:
            e = without_dead_nodes(e, check_one)  # what the shrinker left unread goes
            total_failures += 1
            key = _signature(e)
            if key in distinct:
                continue
            distinct[key] = e
            k = len(distinct)
            _write_failure(args.out, k, e, label)
            print(
                f"fuzz: failure {k}: property '{e.property}' on a {e.node_count}-node graph -> "
                f"{os.path.join(args.out, f'failure-{k}')}.onnx/.txt/-inputs.npz",
                file=sys.stderr,
            )
    summary = f"{state['calls']} examples, {total_failures} failures, {len(distinct)} distinct"
    if rewrites:
        summary += f"; the {label} changed the graph in {state['changed']} of {state['calls']}"
        print(f"fuzz: {summary}", file=sys.stderr)
        if state["changed"] == 0:
            print(
                f"fuzz: warning: the {label} never changed a graph, so this campaign tested "
                "only that it leaves graphs alone; generate graphs it rewrites (--max-ops, or "
                "neffkit.testing.check_pass with ops=... / plants=...)",
                file=sys.stderr,
            )
    print(summary)
    return EXIT_MISMATCH if distinct else EXIT_OK


def _fuzz_target(args: argparse.Namespace) -> tuple[Callable[[Any], Any], str]:
    """The check run on every graph (returning the pass's ``PassResult``, None for a backend),
    and a label for the reports."""
    from neffkit.passes import parse_pipeline
    from neffkit.passes.registry import get_pass
    from neffkit.testing.properties import PipelinePass, check_backend, check_graph

    if args.backend:
        return check_backend, f"backend {args.backend}"
    if args.pass_name:
        pass_: Any = get_pass(args.pass_name)()  # NeffkitError (exit 2) for unknown names
        label = f"pass {args.pass_name}"
    else:
        parse_pipeline(args.pipeline)  # NeffkitError for bad pipeline text
        pass_ = PipelinePass(args.pipeline)
        label = f"pipeline {args.pipeline}"
    return (lambda graph: check_graph(pass_, graph)), label


def _campaign(
    check: Callable[[Any], None],
    examples: int,
    seed: int,
    options: dict[str, Any],
    state: dict[str, int],
    progress: Callable[[], None],
) -> Any:
    """Yields the shrunk failures of successive hypothesis runs (seeds ``seed``, ``seed + 1``
    ...) until ``examples`` graphs (shrinking included) have been checked."""
    import hypothesis
    from hypothesis import HealthCheck, Verbosity, given
    from hypothesis import settings as hsettings

    from neffkit.testing.properties import GeneratorError, PropertyFailure
    from neffkit.testing.strategies import graphs

    strategy = graphs(**options)
    round_ = 0
    while state["calls"] < examples:

        @hsettings(
            max_examples=examples - state["calls"],
            deadline=None,
            database=None,
            derandomize=False,
            report_multiple_bugs=True,
            verbosity=Verbosity.quiet,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def run(graph: Any) -> None:
            state["calls"] += 1
            try:
                check(graph)
            except GeneratorError as bad:  # the graph itself is invalid: a strategy bug
                state["failing"] += 1
                raise PropertyFailure("generator", str(bad), graph) from bad
            except PropertyFailure:
                state["failing"] += 1
                raise
            finally:
                progress()

        before = state["calls"]
        try:
            hypothesis.seed(seed + round_)(run)()
        except PropertyFailure as e:
            yield [e]
        except BaseExceptionGroup as group:
            yield [e for e in _flatten(group) if isinstance(e, PropertyFailure)]
        else:
            return
        round_ += 1
        if state["calls"] == before:
            return


def _flatten(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_flatten(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def _signature(e: Any) -> tuple[Any, ...]:
    """What makes two failures the same: property, pass and the op types of the graph."""
    ops = tuple(sorted({n.op_type for n in e.graph.all_nodes()}))
    return (e.property, e.pass_name, ops)


def _write_failure(folder: str, k: int, e: Any, label: str) -> None:
    """Writes ``failure-<k>.onnx``, ``failure-<k>-inputs.npz`` and ``failure-<k>.txt``."""
    from neffkit import files
    from neffkit.backends.onnx import save
    from neffkit.testing.strategies import random_feeds

    base = os.path.join(folder, f"failure-{k}")
    save(e.graph, base + ".onnx")
    save_npz(base + "-inputs.npz", random_feeds(e.graph))
    text = (
        f"checked: {label}\nproperty: {e.property}\nnodes: {e.node_count}\n\n"
        f"--- what failed ---\n{e.detail}\n\n--- graph before the pass ---\n{e.text}\n\n"
        f"--- graph after the pass ---\n{e.after or '(not available)'}\n"
    )
    files.write_text(base + ".txt", text)


# -- reduce -----------------------------------------------------------------------------------


def cmd_reduce(args: argparse.Namespace) -> int:
    """``neffkit reduce``."""
    import numpy as np
    import onnx

    from neffkit import files
    from neffkit.backends.onnx import referenced_files, to_onnx
    from neffkit.execution.model import is_torch_path
    from neffkit.testing.reduce import NothingToReduce, reduce_model

    if "{model}" not in args.check:
        raise NeffkitError("--check must contain {model} (the candidate model's path)")
    if "{inputs}" in args.check and not args.inputs:
        raise NeffkitError("--check uses {inputs}: give the model's inputs with --inputs")
    sources: dict[str | None, str] = {args.model: "the input model"}
    for path in referenced_files(args.model):
        sources.setdefault(path, "the input model's external data")
    for path in args.inputs or []:
        sources.setdefault(path, "an inputs file")
    writes = [files.Write(args.output, "the reduced model")]
    stem = os.path.splitext(args.output)[0]
    n = len(args.inputs or [])
    npz_names = [f"{stem}-inputs.npz" if n == 1 else f"{stem}-inputs-{k}.npz" for k in range(n)]
    writes += [files.Write(name, "the reduced model's inputs") for name in npz_names]
    files.check_writes(writes, sources)
    if is_torch_path(args.model):  # lifted through the safe loader, never unpickled
        model = to_onnx(read_model(args, args.model, check=False))
    else:
        try:
            model = onnx.load(args.model)
        except Exception as e:  # noqa: BLE001
            raise NeffkitError(f"{args.model}: cannot load the model: {e}") from e
    feeds = None
    if args.inputs:
        feeds = []
        for path in args.inputs:
            with np.load(path, allow_pickle=False) as z:
                feeds.append({k: z[k] for k in z.files})
    with tempfile.TemporaryDirectory(prefix="neffkit-reduce-") as tmp:
        check = _ShellCheck(args.check, tmp)
        try:
            found = reduce_model(model, check, feeds=feeds, progress=_say)
        except NothingToReduce:
            raise NeffkitError(f"the check passes on {args.model}: nothing to reduce") from None
    best = found.model
    files.atomic_write(args.output, lambda path: onnx.save(best, path))
    print(f"{args.model}: {len(model.graph.node)} -> {len(best.graph.node)} nodes")
    print(f"wrote {args.output}")
    for name, inputs in zip(npz_names, found.inputs):
        save_npz(name, inputs)
        print(f"wrote {name}")
    return EXIT_OK


class _ShellCheck:
    """The predicate of ``reduce``: runs the ``--check`` command on a candidate written to
    ``tmp`` (and, with recorded inputs, once per input set until one fails)."""

    def __init__(self, command: str, tmp: str) -> None:
        self.command = command
        self.tmp = tmp
        self.tries = 0

    def __call__(self, model: Any, inputs: list[dict[str, Any]]) -> bool:
        import onnx

        self.tries += 1
        path = os.path.join(self.tmp, f"candidate-{self.tries}.onnx")
        onnx.save(model, path)
        command = self.command.replace("{model}", shlex.quote(path))
        commands = [command]
        if inputs:
            commands = []
            for k, feeds in enumerate(inputs):
                npz = os.path.join(self.tmp, f"candidate-{self.tries}-inputs-{k}.npz")
                save_npz(npz, feeds)
                commands.append(command.replace("{inputs}", shlex.quote(npz)))
        failed = False
        for c in commands:  # the failure persists when it shows on any recorded input set
            done = subprocess.run(c, shell=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, check=False)  # fmt: skip
            if done.returncode != 0:
                failed = True
                break
        os.unlink(path)
        return failed


def _say(text: str) -> None:
    print(text, file=sys.stderr)
