"""``neffkit verify``: compare two models (or a model and a TorchScript file) on the same
inputs, per-dtype tolerances, as text or JSON."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from neffkit.cli.io import EXIT_MISMATCH, EXIT_OK, log, read_model, requested_dims
from neffkit.cli.options import (
    AddCommand,
    add_check_arg,
    add_input_args,
    add_tolerance_args,
    add_torchscript_args,
)
from neffkit.errors import NeffkitError
from neffkit.execution.backend import backend_names

_VERIFY_EPILOG = """\
Either model may be a TorchScript file (told by its bytes, never unpickled: a pickle or a
torch.save checkpoint is refused). A TorchScript A is lifted to the IR (its input shapes from
--input-shape or --inputs) and runs on the torch backend when it keeps aten ops onnxruntime
cannot run; a TorchScript B (e.g. written by `neffkit convert`) runs as the module itself.

Inputs come from an .npz file (arrays named after the model's inputs) or are random from the
reference's input types: two sets (seeds --seed and --seed + 1) in which every symbolic or
unknown dim is 3, then 7, unless --dims sets it; a set the reference cannot run at those
sizes falls back to size 1 and the report says so. Sequence outputs are compared element by
element. Default tolerances depend on the dtype (float32: rtol 1e-4, atol 1e-5; float16 /
bfloat16 looser; ints and bools exact); an element passes when |b - a| <= atol + rtol * |a|.

exit status: 0 all outputs agree, 1 numbers differ, 2 bad input

example:
  neffkit verify model.onnx model.opt.onnx
  neffkit verify model.onnx model.opt.onnx --dims batch=2,seq=128
  neffkit verify model.onnx model.pt --inputs inputs.npz --atol 1e-4 --json
"""


def register(add: AddCommand) -> None:
    """Adds ``verify`` to the ``neffkit`` parser."""
    s = add("verify", "check that two models compute the same outputs", _VERIFY_EPILOG)
    s.add_argument("reference", metavar="A", help="the reference model (.onnx or TorchScript)")
    s.add_argument("candidate", metavar="B", help="the model to check (.onnx or TorchScript)")
    add_input_args(s)
    add_tolerance_args(s)
    s.add_argument("--backend", default="torch", choices=backend_names(), help="runs B (torch)")
    s.add_argument(
        "--reference-backend",
        default="onnxruntime",
        choices=backend_names(),
        help="runs A (onnxruntime)",
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    add_check_arg(s)
    add_torchscript_args(s)
    s.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    """``neffkit verify``."""
    from neffkit.execution.model import is_torch_path
    from neffkit.optimize import aten_ops
    from neffkit.verify import verify

    reference: Any = args.reference
    reference_backend = args.reference_backend
    if is_torch_path(reference):  # lifted, inputs typed by --input-shape or --inputs
        reference = read_model(args, args.reference)
        if aten_ops(reference) and reference_backend == "onnxruntime":
            log.info("%s keeps aten ops: run on the torch backend", args.reference)
            reference_backend = "torch"
    candidate: Any = args.candidate
    if is_torch_path(candidate):
        candidate = load_torchscript(candidate, trust_code=args.trust_code)
    report = verify(
        reference,
        candidate,
        args.inputs,  # an .npz path (checked against the reference's inputs) or None
        seed=args.seed,
        dims=requested_dims(args),
        atol=args.atol,
        rtol=args.rtol,
        backend=args.backend,
        reference_backend=reference_backend,
        check=args.check,
    )
    report.reference = args.reference
    report.candidate = args.candidate
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return EXIT_OK if report.ok else EXIT_MISMATCH


def load_torchscript(path: str, *, trust_code: bool = False) -> Any:
    """The TorchScript module in ``path``, on the CPU, read through the safe loader.

    Raises:
        NeffkitError: no such file, a directory, or not a TorchScript archive (a pickle or a
            torch.save checkpoint is refused unread).
    """
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "no such file"
        raise NeffkitError(f"{path}: {what}")
    from neffkit.frontends.torchscript_archive import load_archive

    # checked byte by byte first: never a pickle, never code that runs at load
    return load_archive(path, trust_code=trust_code)
