"""``neffkit verify``: compare two models (or a model and a TorchScript file) on the same
inputs, per-dtype tolerances, as text or JSON."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from neffkit.cli.io import EXIT_MISMATCH, EXIT_OK, requested_dims
from neffkit.cli.options import AddCommand, add_check_arg, add_input_args, add_tolerance_args
from neffkit.errors import NeffkitError
from neffkit.execution.backend import backend_names

_VERIFY_EPILOG = """\
B may also be a TorchScript file (.pt) written by `neffkit convert`. Inputs come from an
.npz file (arrays named after the model's inputs) or are random from the reference's input
types: two sets (seeds --seed and --seed + 1) in which every symbolic or unknown dim is 3,
then 7, unless --dims sets it; a set the reference cannot run at those sizes falls back to
size 1 and the report says so. Sequence outputs are compared element by element. Default
tolerances depend on the dtype (float32: rtol 1e-4, atol 1e-5;
float16 / bfloat16 looser; ints and bools exact); an element passes when
|b - a| <= atol + rtol * |a|.

exit status: 0 all outputs agree, 1 numbers differ, 2 bad input

example:
  neffkit verify model.onnx model.opt.onnx
  neffkit verify model.onnx model.opt.onnx --dims batch=2,seq=128
  neffkit verify model.onnx model.pt --inputs inputs.npz --atol 1e-4 --json
"""


def register(add: AddCommand) -> None:
    """Adds ``verify`` to the ``neffkit`` parser."""
    s = add("verify", "check that two models compute the same outputs", _VERIFY_EPILOG)
    s.add_argument("reference", metavar="A", help="the reference model (.onnx)")
    s.add_argument("candidate", metavar="B", help="the model to check (.onnx or .pt)")
    add_input_args(s)
    add_tolerance_args(s)
    s.add_argument(
        "--backend", default="torch", choices=backend_names(), help="runs B (torch)"
    )
    s.add_argument(
        "--reference-backend",
        default="onnxruntime",
        choices=backend_names(),
        help="runs A (onnxruntime)",
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    add_check_arg(s)
    s.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    """``neffkit verify``."""
    from neffkit.verify import verify

    candidate: Any = args.candidate
    if is_torchscript_file(candidate):
        candidate = load_torchscript(candidate)
    report = verify(
        args.reference,
        candidate,
        args.inputs,  # an .npz path (checked against the reference's inputs) or None
        seed=args.seed,
        dims=requested_dims(args),
        atol=args.atol,
        rtol=args.rtol,
        backend=args.backend,
        reference_backend=args.reference_backend,
        check=args.check,
    )
    if candidate is not args.candidate:
        report.candidate = args.candidate
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return EXIT_OK if report.ok else EXIT_MISMATCH


def is_torchscript_file(path: str) -> bool:
    """Whether ``path`` names a TorchScript file by its extension (``.pt``, ``.pth``, ...)."""
    return os.path.splitext(path)[1].lower() in (".pt", ".pth", ".ts", ".torchscript")


def load_torchscript(path: str) -> Any:
    """The TorchScript module in ``path``, on the CPU.

    Raises:
        NeffkitError: no such file, a directory, or not a file ``torch.jit.load`` can read.
    """

    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "no such file"
        raise NeffkitError(f"{path}: {what}")
    from neffkit.frontends.torchscript_archive import load_archive

    # checked byte by byte first: never a pickle, never code that runs at load
    return load_archive(path)
