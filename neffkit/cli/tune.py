"""``neffkit tune-partitions``: pick the partition boundaries of an unrolled decoder loop for
observed output lengths, from costs measured on a backend or a simulated accelerator."""

from __future__ import annotations

import argparse
import sys

from neffkit.cli.io import EXIT_OK, files_read, read_inputs, read_model, refuse_overwrite
from neffkit.cli.options import AddCommand, add_check_arg, add_input_args, add_torchscript_args
from neffkit.errors import NeffkitError
from neffkit.execution.backend import backend_names

#: a loop whose trip count is above this has none in practice (the exporters write INT64_MAX)
_LARGEST_TRIP = 100_000

_TUNE_EPILOG = """\
A request that decodes L steps runs every partition up to the one holding step L; a partition
costs one call plus all of its steps, those after the EOS too (the wasted steps). The command
measures the backend's call overhead and the cost of a decoder step at each position t on this
machine (step t computes over t tokens), then a dynamic program picks the boundaries that
minimize the mean latency over the observed lengths (or a percentile, then the mean). It prints
the boundaries, partitions (calls) and wasted steps per request, and the latency against the
host loop (a call a step) and the full unroll (one call), and writes the pipeline that builds
the chosen form: partition-unroll{boundaries=...}, unroll{max-trip=T} (one partition) or split
(the host loop), then the backend's default pipeline.

The lengths file holds one integer per line (# starts a comment) or a JSON list: the number of
decoder steps each observed request ran, EOS step included.

Measuring: the outer graph runs once on onnxruntime (inputs: --inputs, or random from --seed)
for the loop's starting values and the encoder output its body reads; the body becomes a
standalone model, is stepped on onnxruntime for the real tokens at every position, and at each
measured position is made static-shaped, run through --step-passes and timed on --backend
(median of --repeats calls). The call overhead is the time of a unit that takes the same
inputs and returns the loop state without computing anything; it is taken off each step's time.
--positions N measures N positions and interpolates the rest linearly (the output says so).

--simulate prices an accelerator instead of measuring: a fixed overhead per call and a cost per
position computed (step t costs per-step + t * per-position); with dear calls the boundaries
move later and the partitions get fewer.

example:
  neffkit tune-partitions conformer.onnx --lengths lengths.txt -o pipeline.txt
  neffkit tune-partitions conformer.onnx --lengths lengths.txt --positions 8 --objective p99
  neffkit tune-partitions conformer.onnx --lengths lengths.json \\
      --simulate overhead=2ms,per-position=0.01ms --max-partitions 4
  neffkit optimize conformer.onnx --passes "$(cat pipeline.txt)" -o conformer.tuned.onnx
  (conformer.onnx: neffkit example conformer -o conformer.onnx)
"""


def register(add: AddCommand) -> None:
    """Adds ``tune-partitions`` to the ``neffkit`` parser."""
    s = add(
        "tune-partitions", "pick decoder partition boundaries for observed lengths", _TUNE_EPILOG
    )
    s.add_argument(
        "model", metavar="MODEL", help="an .onnx or TorchScript file with one decoder loop"
    )
    s.add_argument("--lengths", metavar="FILE", required=True, help="observed output lengths")
    s.add_argument(
        "--backend",
        default="torch",
        choices=backend_names(),
        help="what the costs are measured on (default: torch)",
    )
    s.add_argument("--device", default=None, help="torch device, e.g. cuda (torch backend)")
    s.add_argument(
        "--objective",
        default="mean",
        metavar="mean|pNN",
        help="minimize the mean latency (default) or a percentile, e.g. p99",
    )
    s.add_argument(
        "--max-len",
        type=int,
        metavar="N",
        help="steps the loop can run (default: its trip count, else the longest length seen)",
    )
    s.add_argument(
        "--max-partitions",
        type=int,
        metavar="K",
        help="at most K partitions (compiled units; default: no limit)",
    )
    s.add_argument(
        "--simulate",
        metavar="overhead=D,per-position=D[,per-step=D]",
        help="price a simulated accelerator instead of measuring (durations: 2ms, 10us, ...)",
    )
    s.add_argument(
        "--positions",
        type=int,
        metavar="N",
        help="measure N step positions, interpolate the rest (default: all)",
    )
    s.add_argument(
        "--repeats", type=int, default=7, help="timed calls per unit, median taken (default: 7)"
    )
    s.add_argument(
        "--step-passes",
        metavar="PIPELINE",
        help="passes run on each static step before it is timed (default: the backend's "
        "default pipeline; 'none' for none)",
    )
    add_input_args(s)
    add_check_arg(s)
    add_torchscript_args(s)
    s.add_argument("-o", "--output", metavar="PIPELINE.txt", help="write the pipeline text here")
    s.set_defaults(func=cmd_tune_partitions)


def cmd_tune_partitions(args: argparse.Namespace) -> int:
    """``neffkit tune-partitions``."""
    from neffkit.optimize import DEFAULT_PIPELINES
    from neffkit.tune import format_result, parse_objective, parse_simulate, read_lengths, tune
    from neffkit.tune.measure import find_loop, measure_costs, positions_to_measure

    objective = parse_objective(args.objective)
    if args.simulate:
        parse_simulate(args.simulate, 1)  # refused before any work
    for name in ("max_len", "max_partitions", "positions", "repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise NeffkitError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.output:
        sources = {args.model: "the input model", args.lengths: "the lengths file"}
        refuse_overwrite(args.output, {**sources, args.inputs: "the inputs file"}, "the pipeline")
    lengths = read_lengths(args.lengths)
    graph = read_model(args, args.model)
    if args.output:
        refuse_overwrite(args.output, files_read(args.model, graph, args.inputs), "the pipeline")
    inputs = read_inputs(graph, args, args.model)
    if args.max_len:  # refused before the model runs
        _check_longest(lengths, args.max_len, args.lengths)
    _say(f"finding the decoder loop of {args.model}")
    loop = find_loop(graph, inputs)
    max_len = args.max_len or _default_max_len(loop.trip_count, lengths)
    _check_longest(lengths, max_len, args.lengths)
    target = args.backend if args.backend in DEFAULT_PIPELINES else "torch"
    if args.simulate:
        costs = parse_simulate(args.simulate, max_len)
    else:
        passes = args.step_passes or DEFAULT_PIPELINES[target]
        costs = measure_costs(
            loop,
            args.backend,
            max_len,
            positions=positions_to_measure(max_len, args.positions),
            repeats=args.repeats,
            device=args.device,
            pipeline=None if passes == "none" else passes,
            progress=_say,
        )
    result = tune(costs, lengths, objective, target, max_partitions=args.max_partitions)
    print(f"{args.model}: {args.lengths}")
    print(format_result(result))
    if args.output:
        from neffkit import files

        files.write_text(args.output, result.pipeline + "\n")
        print(f"wrote {args.output}")
    return EXIT_OK


def _check_longest(lengths: list[int], max_len: int, where: str) -> None:
    longest = max(lengths)
    if longest > max_len:
        raise NeffkitError(
            f"{where}: a length of {longest} exceeds the {max_len} steps the loop runs (--max-len)"
        )


def _default_max_len(trip_count: int | None, lengths: list[int]) -> int:
    if trip_count is not None and 0 < trip_count <= _LARGEST_TRIP:
        return trip_count
    longest = max(lengths)
    _say(
        f"the loop has no static trip count; tuning up to the longest length seen, {longest} "
        "(--max-len sets it)"
    )
    return longest


def _say(message: str) -> None:
    print(f"tune-partitions: {message}", file=sys.stderr, flush=True)
