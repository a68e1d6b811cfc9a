"""``neffkit run``: run a model on random or given inputs, show the outputs, save them to an
``.npz``."""

from __future__ import annotations

import argparse
import time

from neffkit.cli.io import (
    EXIT_OK,
    dims_used,
    files_read,
    log,
    read_inputs,
    read_model,
    refuse_overwrite,
    save_npz,
)
from neffkit.cli.options import AddCommand, add_check_arg, add_input_args, add_torchscript_args
from neffkit.errors import NeffkitError
from neffkit.execution.backend import backend_names

_RUN_EPILOG = """\
Prints each output's name, dtype, shape and first values; -o saves them all to an .npz file
(one array per output, named after it; read it with numpy.load), written atomically and never
over the model, its external data or the --inputs file.

example:
  neffkit run model.onnx                               # random inputs, seed 0, torch backend
  neffkit run model.onnx --dims batch=2,seq=16         # sizes of the symbolic dims (else 1)
  neffkit run model.onnx --inputs in.npz --backend onnxruntime -o out.npz
"""


def register(add: AddCommand) -> None:
    """Adds ``run`` to the ``neffkit`` parser."""
    s = add("run", "run a model and show its outputs", _RUN_EPILOG)
    s.add_argument("model", metavar="MODEL", help="an .onnx or TorchScript file")
    add_input_args(s)
    s.add_argument(
        "--backend",
        default="torch",
        choices=backend_names(),
        help="what runs the model (default: torch)",
    )
    s.add_argument("--device", default=None, help="torch device, e.g. cuda (torch backend)")
    s.add_argument("-o", "--output", metavar="OUT.npz", help="save the outputs to an .npz file")
    add_check_arg(s)
    add_torchscript_args(s)
    s.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """``neffkit run``."""
    from neffkit.api import Runner
    from neffkit.execution.backend import get_backend
    from neffkit.optimize import aten_ops
    from neffkit.report import format_arrays

    t0 = time.perf_counter()
    if args.output:  # refused before any work: checked against every file the model reads
        sources = {args.model: "the input model", args.inputs: "the inputs file"}
        refuse_overwrite(args.output, sources, "the outputs file")
    graph = read_model(args, args.model)
    if args.output:
        refuse_overwrite(
            args.output, files_read(args.model, graph, args.inputs), "the outputs file"
        )
    kept = aten_ops(graph)
    if kept and get_backend(args.backend).name == "onnxruntime":
        raise NeffkitError(
            f"{args.model}: keeps aten ops with no ONNX form ({', '.join(kept)}), which "
            "onnxruntime cannot run; run it with --backend torch"
        )
    runner = Runner(args.model, args.backend, device=args.device, check=args.check, graph=graph)
    log.info("prepared for %s in %.2f s", runner.backend, time.perf_counter() - t0)
    inputs = read_inputs(runner.graph, args, args.model)
    t0 = time.perf_counter()
    outputs = runner(inputs)
    log.info("ran in %.3f s", time.perf_counter() - t0)
    source = args.inputs if args.inputs else f"random, seed {args.seed}"
    dims = dims_used(runner.graph, inputs)
    print(f"{args.model} on {runner.backend} (inputs: {source}, {dims})")
    print(format_arrays(runner.output_names, outputs))
    if args.output:
        save_npz(args.output, dict(zip(runner.output_names, outputs)))
        print(f"wrote {args.output}")
    return EXIT_OK
