"""``neffkit run``: run a model on random or given inputs, show the outputs, save them to an
``.npz``."""

from __future__ import annotations

import argparse
import time
from typing import Any

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
  neffkit run model.onnx --replicas 4 --requests 64   # 4 replicas, one copy of the weights
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
    s.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="serve the inputs from N replicas (threads) sharing one copy of the weights "
        "(torch backend) and print the throughput",
    )
    s.add_argument(
        "--requests",
        type=int,
        metavar="R",
        help="with --replicas: how many requests to serve (default: 4 per replica)",
    )
    add_check_arg(s)
    add_torchscript_args(s)
    s.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """``neffkit run``."""
    from neffkit.api import Runner
    from neffkit.execution.backend import get_backend
    from neffkit.optimize import aten_ops

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
    if args.replicas is not None or args.requests is not None:
        return _serve(args, graph)
    runner = Runner(args.model, args.backend, device=args.device, check=args.check, graph=graph)
    log.info("prepared for %s in %.2f s", runner.backend, time.perf_counter() - t0)
    inputs = read_inputs(runner.graph, args, args.model)
    t0 = time.perf_counter()
    outputs = runner(inputs)
    log.info("ran in %.3f s", time.perf_counter() - t0)
    _show(args, runner.graph, runner.output_names, inputs, runner.backend, outputs)
    return EXIT_OK


def _serve(args: argparse.Namespace, graph: Any) -> int:
    """``neffkit run --replicas N``: the same inputs served R times by N replicas of the model
    already read (ONNX or TorchScript, lifted)."""
    from neffkit.api import ReplicaRunner
    from neffkit.errors import NeffkitError

    if args.backend != "torch" or args.device not in (None, "cpu"):
        raise NeffkitError("--replicas runs on the torch backend on the CPU")
    n = args.replicas if args.replicas is not None else 1
    if n < 1 or (args.requests is not None and args.requests < 1):
        raise NeffkitError("--replicas and --requests take a positive number")
    if args.requests is not None and args.requests > 1_000_000:
        raise NeffkitError("--requests: at most 1000000 (each is kept until its result prints)")
    with ReplicaRunner(graph, n, check=args.check) as runner:
        inputs = read_inputs(runner.graph, args, args.model)
        requests = args.requests or 4 * n
        t0 = time.perf_counter()
        results = runner.map([inputs] * requests)
        wall = time.perf_counter() - t0
    names = [v.name for v in runner.graph.outputs]
    _show(args, runner.graph, names, inputs, f"torch, {n} replicas", results[0])
    print(f"served {requests} requests in {wall:.3f} s: {requests / wall:.1f} requests/s "
          f"({n} replicas, one copy of the weights)")  # fmt: skip
    return EXIT_OK


def _show(
    args: argparse.Namespace, graph: Any, names: list[str], inputs: Any, where: str, outputs: Any
) -> None:
    """Prints the outputs (and saves them with -o)."""
    from neffkit.report import format_arrays

    source = args.inputs if args.inputs else f"random, seed {args.seed}"
    dims = dims_used(graph, inputs)
    print(f"{args.model} on {where} (inputs: {source}, {dims})")
    print(format_arrays(names, outputs))
    if args.output:
        save_npz(args.output, dict(zip(names, outputs)))
        print(f"wrote {args.output}")
