"""``neffkit inspect``: what a model contains (inputs, outputs, opsets, ops, constants,
subgraphs), as text or JSON."""

from __future__ import annotations

import argparse
import json

from neffkit.cli.io import EXIT_OK, read_model
from neffkit.cli.options import AddCommand, add_torchscript_args

_INSPECT_EPILOG = """\
example:
  neffkit inspect model.onnx          # readable summary
  neffkit inspect model.onnx --json   # the same facts as JSON
  neffkit inspect model.pt --input-shape image=1x1x32x128   # a TorchScript file, lifted
"""


def register(add: AddCommand) -> None:
    """Adds ``inspect`` to the ``neffkit`` parser."""
    s = add("inspect", "summarize a model's inputs, outputs, ops and constants", _INSPECT_EPILOG)
    s.add_argument("model", metavar="MODEL", help="an .onnx or TorchScript file")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_torchscript_args(s)
    s.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    """``neffkit inspect``."""
    from neffkit.report import format_summary, model_summary

    graph = read_model(args, args.model, check=False)
    summary = model_summary(graph, args.model)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return EXIT_OK
