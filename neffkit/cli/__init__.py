"""The ``neffkit`` command: optimize, inspect, convert, verify and run ONNX models.

Every subcommand has ``--help`` with an example. Errors in what the user gave (a missing or
corrupt file, an op a backend cannot lower, inputs that do not fit) end the command with exit
status 2 and one line on stderr, ``neffkit: error: <message>``; ``--debug`` adds the traceback.

This module builds the parser and runs the command; each command family has its module
(:mod:`~neffkit.cli.inspect`, :mod:`~neffkit.cli.convert`, :mod:`~neffkit.cli.verify`,
:mod:`~neffkit.cli.run`, :mod:`~neffkit.cli.optimize`, :mod:`~neffkit.cli.fuzz`,
:mod:`~neffkit.cli.tune`, :mod:`~neffkit.cli.compile`) with a ``register(add)`` that adds its
subparsers, and they share :mod:`neffkit.cli.io` (exit statuses, output checks, inputs, error
reports) and :mod:`neffkit.cli.options`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from neffkit.cli import compile, convert, fuzz, inspect, optimize, run, tune, verify
from neffkit.cli.io import (
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_MISMATCH,
    EXIT_OK,
    run_reporting_errors,
    setup_logging,
)
from neffkit.cli.options import RAW

__all__ = ["EXIT_ERROR", "EXIT_INTERNAL", "EXIT_MISMATCH", "EXIT_OK", "build_parser", "main"]

#: The command modules, in the order ``neffkit --help`` lists their commands.
_COMMANDS = (inspect, convert, verify, run, optimize, fuzz, tune, compile)

_MAIN_EPILOG = """\
commands:
  optimize  run passes (default: instruction reduction for the target) and verify the result
  passes    list the passes, their options and the default pipelines
  example   write the embedded example model (Conformer OCR)
  fuzz      property-test a pass, pipeline or the torch backend on generated graphs
  reduce    shrink a failing model to a minimal reproducer
  inspect   what a model contains: inputs, outputs, opsets, ops, constants, subgraphs
  convert   ONNX -> TorchScript (.pt), checked against onnxruntime
  verify    compare two models (or a model and a .pt) on the same inputs
  run       run a model on random or given inputs and show / save the outputs
  tune-partitions  pick decoder partition boundaries for observed output lengths
  compile   compile a model's units for AWS Neuron (inf1, inf2, trn1, trn2), or --dry-run

exit status: 0 ok, 1 numbers differ (verify, convert, optimize) or fuzz found failures,
             2 bad input or error, 3 internal error

example:
  neffkit example conformer -o conformer.onnx
  neffkit optimize conformer.onnx -o conformer.opt.onnx
  neffkit convert conformer.opt.onnx -o conformer.pt
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``neffkit`` command."""
    from neffkit import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log progress (-vv for more)",
    )
    p = argparse.ArgumentParser(
        prog="neffkit",
        description="neffkit: a graph-level compiler toolkit for inference models.",
        epilog=_MAIN_EPILOG,
        formatter_class=RAW,
        parents=[common],
    )
    p.set_defaults(func=None)  # not debug / verbose: that would reset the shared actions
    p.add_argument("--version", action="version", version=f"neffkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=help_[0].upper() + help_[1:] + ".",
            epilog=epilog,
            formatter_class=RAW,
            parents=[common],
        )

    for module in _COMMANDS:
        module.register(add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``neffkit`` command and returns its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    args.debug = getattr(args, "debug", False)
    args.verbose = getattr(args, "verbose", 0)
    setup_logging(args.verbose)
    if args.func is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    return run_reporting_errors(args.func, args)
