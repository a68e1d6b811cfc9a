"""The ``neffkit`` command: optimize, inspect, convert, verify and run ONNX models.

Every subcommand has ``--help`` with an example. Errors in what the user gave (a missing or
corrupt file, an op a backend cannot lower, inputs that do not fit) end the command with exit
status 2 and one line on stderr, ``neffkit: error: <message>``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

from neffkit.errors import NeffkitError, first_line

log = logging.getLogger("neffkit")

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 3

_RAW = argparse.RawDescriptionHelpFormatter

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

exit status: 0 ok, 1 numbers differ (verify, convert, optimize) or fuzz found failures,
             2 bad input or error, 3 internal error

example:
  neffkit example conformer -o conformer.onnx
  neffkit optimize conformer.onnx -o conformer.opt.onnx
  neffkit convert conformer.opt.onnx -o conformer.pt
"""

_INSPECT_EPILOG = """\
example:
  neffkit inspect model.onnx          # readable summary
  neffkit inspect model.onnx --json   # the same facts as JSON
"""

_CONVERT_EPILOG = """\
The module is scripted when TorchScript can compile it; otherwise it is traced with the
example inputs (random ones from --seed, or --inputs), and control flow then follows them.
The file is written atomically; it may not be the input model, its external data or the
--inputs file (exit status 2). With --verify (the default) the written file is loaded back
with torch.jit.load and compared with onnxruntime.

The check runs two random input sets (symbolic dims 3, then 7; --dims fixes chosen ones).

example:
  neffkit convert model.onnx -o model.pt
  neffkit convert model.onnx -o model.pt --dims batch=2,seq=16
  neffkit convert model.onnx -o model.pt --inputs inputs.npz --atol 1e-4
"""

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

_RUN_EPILOG = """\
Prints each output's name, dtype, shape and first values; -o saves them all to an .npz file
(one array per output, named after it; read it with numpy.load), written atomically and never
over the model, its external data or the --inputs file.

example:
  neffkit run model.onnx                               # random inputs, seed 0, torch backend
  neffkit run model.onnx --dims batch=2,seq=16         # sizes of the symbolic dims (else 1)
  neffkit run model.onnx --inputs in.npz --backend onnxruntime -o out.npz
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
        formatter_class=_RAW,
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
            formatter_class=_RAW,
            parents=[common],
        )

    s = add("inspect", "summarize a model's inputs, outputs, ops and constants", _INSPECT_EPILOG)
    s.add_argument("model", metavar="MODEL", help="an .onnx file")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=cmd_inspect)

    s = add("convert", "convert an ONNX model to TorchScript", _CONVERT_EPILOG)
    s.add_argument("model", metavar="MODEL", help="an .onnx file")
    s.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="TorchScript file")
    s.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="load the written file and compare it with onnxruntime (default: on)",
    )
    _add_input_args(s)
    _add_tolerance_args(s)
    _add_check_arg(s)
    s.set_defaults(func=cmd_convert)

    s = add("verify", "check that two models compute the same outputs", _VERIFY_EPILOG)
    s.add_argument("reference", metavar="A", help="the reference model (.onnx)")
    s.add_argument("candidate", metavar="B", help="the model to check (.onnx or .pt)")
    _add_input_args(s)
    _add_tolerance_args(s)
    s.add_argument(
        "--backend", default="torch", choices=["torch", "onnxruntime"], help="runs B (torch)"
    )
    s.add_argument(
        "--reference-backend",
        default="onnxruntime",
        choices=["torch", "onnxruntime"],
        help="runs A (onnxruntime)",
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_check_arg(s)
    s.set_defaults(func=cmd_verify)

    s = add("run", "run a model and show its outputs", _RUN_EPILOG)
    s.add_argument("model", metavar="MODEL", help="an .onnx file")
    _add_input_args(s)
    s.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnxruntime"],
        help="what runs the model (default: torch)",
    )
    s.add_argument("--device", default=None, help="torch device, e.g. cuda (torch backend)")
    s.add_argument("-o", "--output", metavar="OUT.npz", help="save the outputs to an .npz file")
    _add_check_arg(s)
    s.set_defaults(func=cmd_run)

    from neffkit.cli_fuzz import register_commands as register_fuzz_commands
    from neffkit.cli_optimize import register_commands

    register_commands(add)
    register_fuzz_commands(add)
    return p


def _add_input_args(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--inputs", metavar="FILE.npz", help="input arrays, named after the model's inputs"
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    s.add_argument(
        "--dims",
        metavar="NAME=SIZE,...",
        help="sizes of symbolic input dims for random inputs, e.g. --dims batch=2,seq=16",
    )


def _add_check_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="run models the ONNX checker refuses as invalid anyway (results may be wrong)",
    )


def _add_tolerance_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--atol", type=float, default=None, help="absolute tolerance (per dtype)")
    s.add_argument("--rtol", type=float, default=None, help="relative tolerance (per dtype)")


# -- commands ---------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace) -> int:
    """``neffkit inspect``."""
    from neffkit.frontends.onnx import load
    from neffkit.report import format_summary, model_summary

    graph = load(args.model)
    summary = model_summary(graph, args.model)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    """``neffkit convert``."""
    import torch

    from neffkit.api import mentioning
    from neffkit.backends.torch import to_torchscript
    from neffkit.frontends.onnx import load
    from neffkit.report import format_bytes
    from neffkit.verify import verify

    model, out = args.model, args.output
    role = "the output TorchScript file"
    _refuse_overwrite(out, {model: "the input model", args.inputs: "the inputs file"}, role)
    graph = load(model, check=args.check)
    _refuse_overwrite(out, _reads(model, graph, args.inputs), role)
    inputs = _read_inputs(graph, args, model)
    t0 = time.perf_counter()
    with mentioning(model), warnings.catch_warnings():
        if not args.verbose:
            warnings.simplefilter("ignore")  # TorchScript's compiler warnings are not for users
        module, how = to_torchscript(graph, example_inputs=inputs)
    log.info("TorchScript module made in %.2f s", time.perf_counter() - t0)
    if how == "script":
        print(f"{model}: scripted with torch.jit.script (control flow kept)")
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
            model,
            loaded,
            inputs if args.inputs else None,
            seed=args.seed,
            dims=None if args.inputs else _dims(args, graph),
            atol=args.atol,
            rtol=args.rtol,
            check=args.check,
        )
        report.candidate = out
        reports.append(report)
        if not report.ok:
            raise _NotKept()

    try:
        _atomic_write(out, write_and_check)
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


def cmd_verify(args: argparse.Namespace) -> int:
    """``neffkit verify``."""
    from neffkit.verify import verify

    candidate: Any = args.candidate
    if _is_torchscript_file(candidate):
        candidate = _load_torchscript(candidate)
    report = verify(
        args.reference,
        candidate,
        args.inputs,  # an .npz path (checked against the reference's inputs) or None
        seed=args.seed,
        dims=_dims(args),
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


def cmd_run(args: argparse.Namespace) -> int:
    """``neffkit run``."""
    from neffkit.api import Runner
    from neffkit.frontends.onnx import load
    from neffkit.report import format_arrays

    t0 = time.perf_counter()
    graph = None
    if args.output:  # refused before any work: checked against every file the model reads
        sources = {args.model: "the input model", args.inputs: "the inputs file"}
        _refuse_overwrite(args.output, sources, "the outputs file")
        graph = load(args.model, check=args.check)
        _refuse_overwrite(args.output, _reads(args.model, graph, args.inputs), "the outputs file")
    runner = Runner(args.model, args.backend, device=args.device, check=args.check, graph=graph)
    log.info("prepared for %s in %.2f s", runner.backend, time.perf_counter() - t0)
    inputs = _read_inputs(runner.graph, args, args.model)
    t0 = time.perf_counter()
    outputs = runner(inputs)
    log.info("ran in %.3f s", time.perf_counter() - t0)
    source = args.inputs if args.inputs else f"random, seed {args.seed}"
    dims = _dims_used(runner.graph, inputs)
    print(f"{args.model} on {runner.backend} (inputs: {source}, {dims})")
    print(format_arrays(runner.output_names, outputs))
    if args.output:
        _save_npz(args.output, dict(zip(runner.output_names, outputs)))
        print(f"wrote {args.output}")
    return EXIT_OK


# -- helpers ----------------------------------------------------------------------------------


def _read_inputs(graph: Any, args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Inputs from ``--inputs FILE.npz`` (checked against the model), else random ones."""
    from neffkit.api import mentioning, npz_inputs, random_inputs

    dims = _dims(args, graph)
    if args.inputs:
        log.info("reading inputs from %s", args.inputs)
        return npz_inputs(graph, args.inputs)
    log.info("random inputs, seed %d", args.seed)
    with mentioning(model):
        return random_inputs(graph, args.seed, dims=dims)


def _dims(args: argparse.Namespace, graph: Any = None) -> dict[str, int] | None:
    """``--dims`` as a dict (None when not given), checked against ``graph`` when given.

    Raises:
        NeffkitError: bad syntax, a non-positive size, a name the model's inputs do not have,
            or --dims together with --inputs.
    """
    from neffkit.api import check_dims, parse_dims

    text = getattr(args, "dims", None)
    if text is None:
        return None
    if getattr(args, "inputs", None):
        raise NeffkitError("--dims sets the sizes of random inputs; it cannot go with --inputs")
    dims = parse_dims(text)
    return dims if graph is None else check_dims(graph, dims)


def _dims_used(graph: Any, feeds: Any) -> str:
    """``dims batch=2,seq=16`` for the sizes random inputs gave the symbolic dims."""
    from neffkit.api import input_dims
    from neffkit.dims import format_dims

    return f"dims {format_dims(input_dims(graph, feeds))}"


def _refuse_overwrite(
    out: str, sources: dict[str | None, str], role: str = "the output", *, model: bool = False
) -> None:
    """Refuses an output path that is one of the given files, a directory or in no folder.

    ``sources`` maps each file the command reads to its role; ``model`` says the output is an
    ONNX model, which also claims its external data names (see :mod:`neffkit.files`).
    """
    from neffkit import files

    files.check_writes([files.Write(out, role, model)], sources)


def _reads(model: str, graph: Any, inputs: str | None = None) -> dict[str | None, str]:
    """Every file a command reads: the model, all its external data files, the inputs file."""
    from neffkit.backends.onnx import external_files

    reads: dict[str | None, str] = {model: "the input model", inputs: "the inputs file"}
    for path in external_files(graph):
        reads.setdefault(path, "the input model's external data")
    return reads


def _atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, then renames it over ``path``."""
    from neffkit import files

    files.atomic_write(path, write)


def _save_npz(path: str, arrays: dict[str, Any]) -> None:
    """Writes arrays to an ``.npz`` atomically, never pickling (any array name is allowed)."""
    import numpy as np

    for name, a in arrays.items():
        if isinstance(a, list) or np.asarray(a).dtype.hasobject:
            raise NeffkitError(f"{path}: output '{name}' is not a numeric tensor; cannot save it")

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, a in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)

    _atomic_write(path, write)


def _is_torchscript_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in (".pt", ".pth", ".ts", ".torchscript")


def _load_torchscript(path: str) -> Any:
    import torch

    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "no such file"
        raise NeffkitError(f"{path}: {what}")
    try:
        return torch.jit.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError / ValueError
        raise NeffkitError(
            f"{path}: not a TorchScript file torch.jit.load can read: {first_line(e)}"
        ) from e


def _error_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    text = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())
    return text or type(e).__name__


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _setup_logging(verbose: int) -> None:
    """Logs neffkit's progress (not other libraries') to stderr: -v info, -vv debug."""
    level = logging.WARNING if not verbose else logging.INFO if verbose == 1 else logging.DEBUG
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("neffkit: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)


def _silence_stdout() -> None:
    """Points stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``neffkit`` command and returns its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    args.debug = getattr(args, "debug", False)
    args.verbose = getattr(args, "verbose", 0)
    _setup_logging(args.verbose)
    if args.func is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    from neffkit.files import Terminated, interruptible

    try:
        with interruptible():  # SIGTERM, like SIGINT, removes temporary files on its way out
            return args.func(args)
    except BrokenPipeError:  # `neffkit ... | head`: the reader left; not an error
        _silence_stdout()
        return EXIT_OK
    except (NeffkitError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"neffkit: error: {_error_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Terminated as e:
        print("neffkit: terminated", file=sys.stderr)
        return 128 + e.signum
    except (MemoryError, RecursionError) as e:  # a resource bomb in the input: not a crash
        if args.debug:
            traceback.print_exc()
        what = "out of memory" if isinstance(e, MemoryError) else "input nested too deeply"
        print(f"neffkit: error: {what} ({first_line(e)})", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("neffkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug: say so, with the traceback
        traceback.print_exc()
        print(
            f"neffkit: internal error: {type(e).__name__}: {first_line(e)} "
            "(this is a bug in neffkit; please report it with the traceback above)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
