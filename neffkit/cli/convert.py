"""``neffkit convert``: ONNX -> TorchScript (``.pt``), written atomically and checked against
onnxruntime before it takes the output's name."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import warnings

from neffkit.cli.io import (
    EXIT_MISMATCH,
    EXIT_OK,
    files_read,
    log,
    read_inputs,
    read_model,
    refuse_overwrite,
    requested_dims,
)
from neffkit.cli.options import (
    AddCommand,
    add_check_arg,
    add_input_args,
    add_tolerance_args,
    add_torchscript_args,
)
from neffkit.errors import NeffkitError, first_line

_CONVERT_EPILOG = """\
The module is scripted when TorchScript can compile it; otherwise it is traced with the
example inputs (random ones from --seed, or --inputs), and control flow then follows them.
The file is written atomically; it may not be the input model, its external data or the
--inputs file (exit status 2). With --verify (the default) the written file is loaded back
with torch.jit.load and compared with onnxruntime (with the torch backend when the model keeps
aten ops, TorchScript operators with no ONNX form, which onnxruntime cannot run).

MODEL may be a TorchScript file (told by its bytes: a pickle or torch.save checkpoint is
refused unread); its inputs' shapes and dtypes come from --input-shape NAME=DIMS[:DTYPE] or
--inputs, and it is lifted to the IR and lowered again.

The check runs two random input sets (symbolic dims 3, then 7; --dims fixes chosen ones).

example:
  neffkit convert model.onnx -o model.pt
  neffkit convert model.onnx -o model.pt --dims batch=2,seq=16
  neffkit convert model.onnx -o model.pt --inputs inputs.npz --atol 1e-4
"""


def register(add: AddCommand) -> None:
    """Adds ``convert`` to the ``neffkit`` parser."""
    s = add("convert", "convert an ONNX model to TorchScript", _CONVERT_EPILOG)
    s.add_argument("model", metavar="MODEL", help="an .onnx (or TorchScript) file")
    s.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="TorchScript file")
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
    s.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    """``neffkit convert``."""
    import torch

    from neffkit import files
    from neffkit.api import mentioning
    from neffkit.backends.torch import to_torchscript
    from neffkit.execution.model import is_torch_path
    from neffkit.optimize import aten_ops
    from neffkit.report import format_bytes
    from neffkit.verify import verify

    model, out = args.model, args.output
    role = "the output TorchScript file"
    refuse_overwrite(out, {model: "the input model", args.inputs: "the inputs file"}, role)
    graph = read_model(args, model)
    from_torchscript = is_torch_path(model)
    kept = aten_ops(graph)
    refuse_overwrite(out, files_read(model, graph, args.inputs), role)
    inputs = read_inputs(graph, args, model)
    t0 = time.perf_counter()
    with mentioning(model), warnings.catch_warnings():
        if not args.verbose:
            warnings.simplefilter("ignore")  # TorchScript's compiler warnings are not for users
        module, how = to_torchscript(graph, example_inputs=inputs)
    log.info("TorchScript module made in %.2f s", time.perf_counter() - t0)
    if kept and args.verify:
        print(f"{model}: keeps aten ops with no ONNX form ({', '.join(kept)}): checked against "
              "the model on the torch backend, not onnxruntime")  # fmt: skip
    if how == "script":
        print(f"{model}: scripted with torch.jit.script (control flow kept)")
    elif how.startswith("host-loop"):
        print(f"{model}: {how}")
    else:
        print(
            f"{model}: could not be scripted; traced with torch.jit.trace on the example "
            "inputs (control flow follows those inputs)"
        )
    held = [module]
    del module
    reports = []

    def write_and_check(tmp: str) -> None:
        # The file is checked where it was written, before it takes the output's name: a
        # file that fails its check never replaces what was there.
        torch.jit.save(held.pop(), tmp)
        gc.collect()  # the fx module sits in reference cycles; free its weights before loading
        if not args.verify:
            return
        try:
            loaded = torch.jit.load(tmp, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - torch raises RuntimeError for bad archives
            raise NeffkitError(f"{out}: written but cannot be loaded back: {first_line(e)}") from e
        report = verify(
            graph if from_torchscript else model,
            loaded,
            inputs if args.inputs else None,
            seed=args.seed,
            dims=None if args.inputs else requested_dims(args, graph),
            atol=args.atol,
            rtol=args.rtol,
            check=args.check,
            reference_backend="torch" if kept else "onnxruntime",
        )
        report.reference = model
        report.candidate = out
        reports.append(report)
        if not report.ok:
            raise _NotKept()

    try:
        files.atomic_write(out, write_and_check)
    except _NotKept:
        print()
        print(reports[0])
        print(
            f"neffkit: {out} not written: the TorchScript module does not match the model "
            "(--no-verify writes it anyway)",
            file=sys.stderr,
        )
        return EXIT_MISMATCH
    print(f"wrote {out} ({format_bytes(os.path.getsize(out))})")
    if reports:
        print()
        print(reports[0])
    return EXIT_OK


class _NotKept(Exception):
    """Raised inside convert's write when the written module fails verification."""
