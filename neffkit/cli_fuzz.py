"""``neffkit fuzz`` and ``neffkit reduce``: find pass and backend bugs, then shrink reproducers.

``fuzz`` runs a hypothesis campaign over generated graphs with the properties of
:mod:`neffkit.testing.properties` and writes each distinct shrunk failure to a folder;
``reduce`` shrinks any failing ``.onnx`` model against a user-given shell check.
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


def register_commands(add: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """Adds ``fuzz`` and ``reduce`` to the ``neffkit`` parser (``add`` makes a subparser)."""
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
    s.add_argument("model", metavar="MODEL", help="the failing .onnx model")
    s.add_argument("--check", required=True, metavar="COMMAND", help="shell command with {model}")
    s.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the reduced model")
    s.add_argument(
        "--inputs",
        metavar="FILE.npz",
        action="append",
        help="recorded inputs of MODEL (for {inputs}); repeat for several sets: a candidate is "
        "kept when the check fails on at least one of them",
    )
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
    from neffkit.cli import EXIT_MISMATCH, EXIT_OK

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
    from neffkit.cli import _save_npz
    from neffkit.testing.strategies import random_feeds

    base = os.path.join(folder, f"failure-{k}")
    save(e.graph, base + ".onnx")
    _save_npz(base + "-inputs.npz", random_feeds(e.graph))
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
    from neffkit.backends.onnx import referenced_files
    from neffkit.cli import EXIT_OK, _save_npz

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
        r = _Reducer(model, args.check, tmp, feeds)
        if not r.fails(model):
            raise NeffkitError(f"the check passes on {args.model}: nothing to reduce")
        best = r.reduce()
    files.atomic_write(args.output, lambda path: onnx.save(best, path))
    print(f"{args.model}: {len(model.graph.node)} -> {len(best.graph.node)} nodes")
    print(f"wrote {args.output}")
    if feeds is not None:
        for k, name in enumerate(npz_names):
            _save_npz(name, r.inputs_of(best, k))
            print(f"wrote {name}")
    return EXIT_OK


class _Reducer:
    """Shrinks a model to the nodes the failing check needs (works on the ONNX protos)."""

    def __init__(
        self, model: Any, check: str, tmp: str, feeds: list[dict[str, Any]] | None
    ) -> None:
        import onnx

        self.model = model
        self.check = check
        self.tmp = tmp
        self.tries = 0
        g = model.graph
        self.nodes = list(g.node)
        self.uses = [_node_uses(n) for n in self.nodes]
        self.inputs = {vi.name: vi for vi in g.input}
        self.inits = {t.name: t for t in g.initializer}
        self.outputs = {vi.name: vi for vi in g.output}
        self.types: dict[str, Any] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:  # noqa: BLE001 - without inference only declared types are known
            inferred = g
        for vi in [*inferred.value_info, *g.input, *g.output]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                self.types[vi.name] = vi.type
        # one dict of every value per recorded input set
        self.values = [self._values(f) for f in feeds] if feeds is not None else None

    def _values(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Every typed value of the original model on ``feeds`` (onnxruntime)."""
        import onnx

        from neffkit.backends import onnxruntime as ort_backend

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        names = [o for n in self.nodes for o in n.output if o and o in self.types]
        extra = [o for o in names if o not in self.outputs]
        m.graph.output.extend(onnx.helper.make_value_info(o, self.types[o]) for o in extra)
        got = ort_backend.run(m, feeds)
        values = dict(feeds)
        values.update(zip([vi.name for vi in m.graph.output], got))
        return values

    def inputs_of(self, model: Any, k: int = 0) -> dict[str, Any]:
        """The values of ``model``'s inputs in recorded input set ``k`` (with --inputs)."""
        assert self.values is not None
        values = self.values[k]
        return {vi.name: values[vi.name] for vi in model.graph.input if vi.name in values}

    def build(self, keep: list[int]) -> Any:
        """The model of the nodes ``keep`` (indices, in order), or None when it is not valid."""
        import onnx

        kept = set(keep)
        produced = {o for i in keep for o in self.nodes[i].output if o}
        needed: dict[str, None] = {}
        for i in keep:
            needed.update((u, None) for u in self.uses[i] if u not in produced)
        removed_uses = {u for i in range(len(self.nodes)) if i not in kept for u in self.uses[i]}
        inputs = [vi for name, vi in self.inputs.items() if name in needed]
        for name in needed:
            if name in self.inputs or name in self.inits:
                continue
            if name not in self.types:
                return None  # an untyped value cannot become a graph input
            inputs.append(onnx.helper.make_value_info(name, self.types[name]))
        outputs = [vi for name, vi in self.outputs.items() if name in produced]
        for i in keep:
            for o in self.nodes[i].output:
                if o and o in removed_uses and o not in self.outputs and o in self.types:
                    outputs.append(onnx.helper.make_value_info(o, self.types[o]))
        if not outputs:
            return None
        g = self.model.graph
        graph = onnx.helper.make_graph(
            [self.nodes[i] for i in keep],
            g.name,
            inputs,
            outputs,
            [t for name, t in self.inits.items() if name in needed],
        )
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        m.graph.CopyFrom(graph)
        try:
            onnx.checker.check_model(m, full_check=True)
        except Exception:  # noqa: BLE001
            return None
        return m

    def fails(self, model: Any) -> bool:
        """Whether the check command still fails on ``model``."""
        import onnx

        from neffkit.cli import _save_npz

        self.tries += 1
        path = os.path.join(self.tmp, f"candidate-{self.tries}.onnx")
        onnx.save(model, path)
        command = self.check.replace("{model}", shlex.quote(path))
        commands = [command]
        if self.values is not None:
            commands = []
            for k in range(len(self.values)):
                npz = os.path.join(self.tmp, f"candidate-{self.tries}-inputs-{k}.npz")
                _save_npz(npz, self.inputs_of(model, k))
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

    def attempt(self, keep: list[int]) -> bool:
        """Builds and checks the candidate ``keep``; True when it still fails."""
        if not keep:
            return False
        m = self.build(keep)
        return m is not None and self.fails(m)

    def reduce(self) -> Any:
        """Bisects, then removes chunks and single nodes; returns the smallest failing model."""
        keep = list(range(len(self.nodes)))
        say = _say
        say(f"reduce: {len(keep)} nodes")
        while len(keep) > 1:  # bisect: keep a prefix or a suffix
            half = len(keep) // 2
            for cand, what in ((keep[:half], "prefix"), (keep[half:], "suffix")):
                if self.attempt(cand):
                    keep = cand
                    say(f"reduce: kept the {what}: {len(keep)} nodes")
                    break
            else:
                break
        size = max(1, len(keep) // 2)
        while True:  # remove chunks of halving size, then single nodes to a fixed point
            progress = False
            i = len(keep) - size
            while i >= 0 and len(keep) > 1:
                cand = keep[:i] + keep[i + size :]
                if self.attempt(cand):
                    keep = cand
                    progress = True
                    say(f"reduce: removed {size} node(s): {len(keep)} nodes")
                i = min(i, len(keep)) - size
            if size > 1:
                size //= 2
            elif not progress:
                break
        say(f"reduce: {len(keep)} nodes after {self.tries} checks")
        return self.build(keep) if len(keep) < len(self.nodes) else self.model


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _node_uses(node: Any) -> list[str]:
    """The values a node reads: its inputs and the outer values its subgraphs use."""
    uses: dict[str, None] = {i: None for i in node.input if i}
    for a in node.attribute:
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            uses.update((u, None) for u in _graph_free(g))  # recursion only on nesting depth
    return list(uses)


def _graph_free(g: Any) -> list[str]:
    """The names a subgraph reads from outside it."""
    local = {vi.name for vi in g.input} | {t.name for t in g.initializer}
    local |= {o for n in g.node for o in n.output}
    free: dict[str, None] = {}
    for n in g.node:
        free.update((u, None) for u in _node_uses(n) if u not in local)
    free.update((o.name, None) for o in g.output if o.name not in local)
    return list(free)
