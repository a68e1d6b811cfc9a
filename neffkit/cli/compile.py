"""``neffkit compile``: a model's compiled units for a Neuron target, stitched into one
TorchScript artifact; ``--dry-run`` writes the uncompiled artifact and the operator-support
report without the Neuron packages."""

from __future__ import annotations

import argparse
import gc
import json
import os
import warnings
from typing import Any

from neffkit.cli.io import EXIT_MISMATCH, EXIT_OK, files_read, read_model, refuse_overwrite
from neffkit.cli.options import (
    AddCommand,
    add_check_arg,
    add_input_args,
    add_tolerance_args,
    add_torchscript_args,
)
from neffkit.errors import BackendError, NeffkitError, first_line

_TARGETS = ("inf1", "inf2", "trn1", "trn2")

_COMPILE_EPILOG = """\
targets:
  inf1        torch_neuron.trace (torch-neuron, neuron-cc; Inferentia 1)
  inf2, trn1  torch_neuronx.trace (torch-neuronx, neuronx-cc; Inferentia 2, Trainium 1)
  trn2        torch.compile(backend="neuron", fullgraph=True) and one warm call per unit
              (torch-neuronx; Trainium 2: each new input shape would recompile)

The model is cut into compiled units, each lowered by the torch backend and traced with
static example shapes: the whole graph; or, after `split`, the encoder and the step of the
host loop; or, after `partition-unroll`, each partition. The control flow between them (the
loop, the partition gates) is scripted host code. The output is one TorchScript file: the
compiled units inside the host code, written atomically and, with --verify (the default),
loaded back and compared with onnxruntime on the example inputs.

Real compilation needs the Neuron packages, which AWS publishes on its own index
(pip install --extra-index-url https://pip.repos.neuron.amazonaws.com torch-neuronx; the
PyPI packages of the same names are empty placeholders), and running the result needs an
Inf1/Inf2/Trn host. --dry-run needs neither: it writes the uncompiled TorchScript artifact
and OUT.report.md / OUT.report.json, per unit: which aten ops would run on a NeuronCore and
which on the CPU, the CPU<->device transitions, and whether every shape is static.

Example shapes: --example-shape NAME=1x1x32x128 (repeatable) fixes an input's shape; or
--dims / --inputs as elsewhere. --fallback/--no-fallback (inf1 only) default to off for
decoder units (host-loop step, partitions), so that an unsupported op fails the compile
instead of cutting every step into device and CPU pieces. --separate-weights keeps the
weights out of the compiled graph (inf1 separate_weights, inf2/trn1
inline_weights_to_neff=False); it is on by default for a unit over 1.9 GB of constants.

example:
  neffkit compile c_parts.onnx --target inf2 -o c_parts.pt
  neffkit compile c_padded.onnx --target trn2 --compiler-args "--optlevel 2" -o c.pt
  neffkit compile c.onnx --target inf1 --no-fallback --dry-run -o c_inf1.pt
"""


def register(add: AddCommand) -> None:
    """Adds ``compile`` to the ``neffkit`` parser."""
    s = add("compile", "compile a model's units for an AWS Neuron target", _COMPILE_EPILOG)
    s.add_argument("model", metavar="MODEL", help="an .onnx file")
    s.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="TorchScript file")
    s.add_argument("--target", required=True, choices=_TARGETS, help="the Neuron target")
    s.add_argument(
        "--compiler-args",
        metavar='"ARGS"',
        default=None,
        help="compiler flags, one shell-quoted string (neuron-cc for inf1, else neuronx-cc)",
    )
    s.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="let the compiled units take any size of dimension 0 (inf1 only)",
    )
    s.add_argument(
        "--fallback",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run unsupported ops on the CPU (inf1 only; default: on, off for decoder units)",
    )
    s.add_argument(
        "--separate-weights",
        action="store_true",
        default=None,
        help="keep the weights out of the compiled graph (default: above 1.9 GB)",
    )
    s.add_argument(
        "--compiler-workdir", metavar="DIR", default=None, help="compiler work files (per unit)"
    )
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="no compiler: write the uncompiled artifact and OUT.report.md/.json",
    )
    s.add_argument(
        "--example-shape",
        action="append",
        default=[],
        metavar="NAME=AxBx...",
        help="static shape of input NAME for the example inputs (repeatable)",
    )
    s.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="load the written file and compare it with onnxruntime (default: on)",
    )
    add_input_args(s)
    add_tolerance_args(s)
    add_check_arg(s)
    add_torchscript_args(s)
    s.set_defaults(func=cmd_compile)


def report_paths(out: str) -> tuple[str, str]:
    """``OUT.report.md`` and ``OUT.report.json`` beside ``OUT`` (its ``.pt`` suffix dropped)."""
    stem = out[: -len(".pt")] if out.endswith(".pt") else out
    return f"{stem}.report.md", f"{stem}.report.json"


def cmd_compile(args: argparse.Namespace) -> int:
    """``neffkit compile``."""
    from neffkit.api import mentioning
    from neffkit.backends.neuron import NeuronOptions, compile_graph, dry_run, neuron_api

    model, out = args.model, args.output
    role = "the output TorchScript file"
    refuse_overwrite(out, {model: "the input model", args.inputs: "the inputs file"}, role)
    md_path, json_path = report_paths(out)
    if args.dry_run:
        for path in (md_path, json_path):
            refuse_overwrite(path, {model: "the input model", out: role}, "a report file")
    options = NeuronOptions(
        compiler_args=NeuronOptions.parse_args(args.compiler_args),
        dynamic_batch=args.dynamic_batch,
        fallback=args.fallback,
        separate_weights=args.separate_weights,
        compiler_workdir=args.compiler_workdir,
    )
    if not args.dry_run:
        neuron_api(args.target)  # a missing package is said before any work
    graph = read_model(args, model)  # ONNX or TorchScript, by content
    read = files_read(model, graph, args.inputs)
    refuse_overwrite(out, read, role)
    if args.dry_run:
        for path in (md_path, json_path):
            refuse_overwrite(path, {**read, out: role}, "a report file")
    inputs = _example_inputs(graph, args, model)

    def progress(name: str, i: int, n: int) -> None:
        what = "analysing" if args.dry_run else "compiling"
        print(f"[{i + 1}/{n}] {what} unit {name}", flush=True)

    with mentioning(model), warnings.catch_warnings():
        if not args.verbose:
            warnings.simplefilter("ignore")  # tracer and TorchScript notes are not for users
        if args.dry_run:
            result: Any = dry_run(graph, inputs, args.target, options, progress=progress)
        else:
            result = compile_graph(graph, inputs, args.target, options, progress=progress)
    plan = result.plan
    print(f"{model}: {plan.kind}, {len(plan.units)} unit(s) for {args.target}")
    for unit, call in zip(plan.units, result.calls):
        shapes = " ".join("x".join(map(str, a.shape)) or "scalar" for a in unit.example_inputs)
        extra = f", steps {unit.steps}" if unit.steps else ""
        extra += f", up to {unit.trips} calls a request" if unit.trips > 1 else ""
        static = "static" if unit.static else f"NOT static ({unit.note})"
        print(f"  {unit.name}: inputs {shapes}{extra}; {static}; {call.api} {_kw(call)}")
    for note in plan.notes:
        print(f"  note: {note}")
    status = _write(result.module, out, model, graph, inputs, args)
    if status != EXIT_OK:
        return status
    if args.dry_run:
        from neffkit import files

        files.write_text(md_path, result.markdown)
        files.write_text(json_path, json.dumps(result.report, indent=2, sort_keys=True) + "\n")
        print(f"wrote {md_path} and {json_path}")
    return EXIT_OK


def _kw(call: Any) -> str:
    parts = [f"{k}={v!r}" for k, v in call.kwargs.items()]
    parts += [f"env {k}={v!r}" for k, v in call.env.items()]
    return "(" + ", ".join(parts) + ")"


def _example_inputs(graph: Any, args: argparse.Namespace, model: str) -> dict[str, Any]:
    """The example inputs: ``--inputs``, or random ones whose symbolic dims ``--example-shape``
    and ``--dims`` fix."""
    from neffkit.api import mentioning, npz_inputs, random_inputs
    from neffkit.cli.io import requested_dims

    dims = dict(requested_dims(args, graph) or {})
    shapes = [_shape_arg(text) for text in args.example_shape]
    if args.inputs:
        if shapes:
            raise NeffkitError("--example-shape sets random inputs; it cannot go with --inputs")
        return npz_inputs(graph, args.inputs)
    by_name = {v.name: v for v in graph.inputs if v.const is None}
    for name, shape in shapes:
        v = by_name.get(name)
        if v is None:
            raise NeffkitError(
                f"--example-shape: the model has no input '{name}' ({list(by_name)})"
            )
        declared = list(v.shape or ())
        if len(declared) != len(shape):
            raise NeffkitError(
                f"--example-shape {name}: {len(shape)} dims, the input has {len(declared)}"
            )
        for d, size in zip(declared, shape):
            if isinstance(d, int) and d != size:
                raise NeffkitError(f"--example-shape {name}: dim of size {d} given as {size}")
            if isinstance(d, str):
                if dims.get(d, size) != size:
                    raise NeffkitError(f"--example-shape {name}: dim '{d}' is already {dims[d]}")
                dims[d] = size
    with mentioning(model):
        return random_inputs(graph, args.seed, dims=dims or None)


def _shape_arg(text: str) -> tuple[str, list[int]]:
    name, sep, dims = text.partition("=")
    try:
        shape = [int(d) for d in dims.lower().split("x")] if dims.strip() else []
    except ValueError:
        shape = [-1]
    if not sep or not name or any(d <= 0 for d in shape):
        raise NeffkitError(f"--example-shape takes NAME=AxBx... of positive sizes, got {text!r}")
    return name, shape


def _write(
    module: Any, out: str, model: str, graph: Any, inputs: Any, args: argparse.Namespace
) -> int:
    """Writes ``module`` atomically; with --verify, checked against onnxruntime first."""
    import torch

    from neffkit import files
    from neffkit.optimize import aten_ops
    from neffkit.report import format_bytes
    from neffkit.verify import verify

    held = [module]
    reports = []
    unchecked: list[str] = []

    def write_and_check(tmp: str) -> None:
        torch.jit.save(held.pop(), tmp)
        gc.collect()
        if not args.verify:
            return
        try:
            loaded = torch.jit.load(tmp, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - torch raises RuntimeError for bad archives
            raise NeffkitError(f"{out}: written but cannot be loaded back: {first_line(e)}") from e
        with torch.jit.optimized_execution(False):  # one call: skip the profiling executor
            # the graph read (a TorchScript file's input types came from --input-shape); one
            # keeping aten ops is checked against itself on the torch backend
            ref_backend = "torch" if aten_ops(graph) else "onnxruntime"
            try:
                report = verify(graph, loaded, inputs, atol=args.atol, rtol=args.rtol,
                                reference_backend=ref_backend, check=args.check)  # fmt: skip
            except BackendError as e:
                if args.dry_run:
                    raise
                # a compiled Neuron module runs only where a NeuronCore is: a build host
                # compiles it but cannot check it
                unchecked.append(first_line(e))
                return
        report.candidate = out
        reports.append(report)
        if not report.ok:
            raise _NotKept()

    try:
        files.atomic_write(out, write_and_check)
    except _NotKept:
        print()
        print(reports[0])
        print(f"neffkit: {out} not written: it does not match the model (--no-verify writes it)")
        return EXIT_MISMATCH
    print(f"wrote {out} ({format_bytes(os.path.getsize(out))})")
    if reports:
        print(reports[0])
    if unchecked:
        print(f"not verified: the compiled module cannot run on this machine ({unchecked[0]}); "
              f"check it where it will run: neffkit verify {model} {out}")  # fmt: skip
    return EXIT_OK


class _NotKept(Exception):
    """Raised inside compile's write when the written module fails verification."""
