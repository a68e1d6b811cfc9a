"""What every ``neffkit`` subcommand shares on its way in and out: exit statuses, logging,
checks that an output overwrites nothing the command reads, atomic ``.npz`` writing, the
``--inputs`` / ``--dims`` a command reads, and the one-line error report.

Subcommands import these public helpers (never a private name of another command's module);
the files themselves are handled by :mod:`neffkit.files`, so an interrupted command leaves the
old output or the new one, whole.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import zipfile
from collections.abc import Callable
from typing import Any

from neffkit.errors import NeffkitError, first_line

#: The logger of the command's progress (``-v`` info, ``-vv`` debug), on stderr.
log = logging.getLogger("neffkit")

EXIT_OK = 0
#: Numbers differ (verify, convert, optimize) or fuzz found failures.
EXIT_MISMATCH = 1
#: Bad input or an error in what the user gave.
EXIT_ERROR = 2
#: A bug in neffkit.
EXIT_INTERNAL = 3

# -- outputs ----------------------------------------------------------------------------------


def refuse_overwrite(
    out: str, sources: dict[str | None, str], role: str = "the output", *, model: bool = False
) -> None:
    """Refuses an output path that is one of the given files, a directory or in no folder.

    ``sources`` maps each file the command reads to its role (None keys are ignored);
    ``model`` says the output is an ONNX model, which also claims its external data names
    (see :mod:`neffkit.files`).

    Raises:
        NeffkitError: naming the output, its role and the file it would overwrite.
    """
    from neffkit import files

    files.check_writes([files.Write(out, role, model)], sources)


def files_read(model: str, graph: Any, inputs: str | None = None) -> dict[str | None, str]:
    """Every file a command reads, mapped to its role: the model, all its external data files
    and the inputs file (the ``sources`` of :func:`refuse_overwrite`)."""
    from neffkit.backends.onnx import external_files

    reads: dict[str | None, str] = {model: "the input model", inputs: "the inputs file"}
    for path in external_files(graph):
        reads.setdefault(path, "the input model's external data")
    return reads


def save_npz(path: str, arrays: dict[str, Any]) -> None:
    """Writes arrays to an ``.npz`` atomically, never pickling (any array name is allowed).

    Raises:
        NeffkitError: an array that is not a numeric tensor (a sequence, objects).
    """
    import numpy as np

    from neffkit import files

    for name, a in arrays.items():
        if isinstance(a, list) or np.asarray(a).dtype.hasobject:
            raise NeffkitError(f"{path}: output '{name}' is not a numeric tensor; cannot save it")

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, a in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)

    files.atomic_write(path, write)


# -- models -----------------------------------------------------------------------------------


def read_model(args: argparse.Namespace, path: str, *, check: bool | None = None) -> Any:
    """The ``Graph`` of the model file ``path``: ONNX, or TorchScript told by its bytes (a
    pickle or ``torch.save`` checkpoint is refused unread, with the safe loader's reason).

    A TorchScript module's input types come from ``--input-shape``, else from the arrays of
    ``--inputs FILE.npz``, else from the module (a trace in memory records them).

    Raises:
        NeffkitError: the file cannot be read, or an input's dtype and shape are unknown.
    """
    from neffkit.execution.model import as_graph
    from neffkit.frontends.dispatch import is_torch_file
    from neffkit.frontends.onnx import load
    from neffkit.ir.aten import is_aten

    if check is None:
        check = getattr(args, "check", True)
    if not is_torch_file(path):
        return load(path, check=check)
    from neffkit.frontends.torchscript_inputs import InputSpec, parse_input_shapes

    specs = parse_input_shapes(getattr(args, "input_shape", None) or [])
    inputs_file = getattr(args, "inputs", None)
    if isinstance(inputs_file, list):  # ``reduce`` takes several sets: the first states them
        inputs_file = inputs_file[0] if inputs_file else None
    if inputs_file:
        import numpy as np

        try:
            with np.load(inputs_file, allow_pickle=False) as z:
                for name in z.files:
                    a = z[name]
                    specs.setdefault(name, InputSpec(tuple(a.shape), a.dtype.name, stated=False))
        except (OSError, ValueError) as e:
            raise NeffkitError(f"{inputs_file}: cannot read the inputs ({first_line(e)})") from e
    log.info("reading %s as TorchScript", path)
    graph = as_graph(path, input_shapes=specs, trust_code=getattr(args, "trust_code", False))
    kept = sorted({n.op_type for n in graph.all_nodes() if is_aten(n)})
    if kept:
        log.info("%s: kept as aten ops (no ONNX form): %s", path, ", ".join(kept))
    return graph


# -- inputs -----------------------------------------------------------------------------------


def read_inputs(graph: Any, args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Inputs from ``--inputs FILE.npz`` (checked against the model), else random ones from
    ``--seed`` and ``--dims``.

    Raises:
        NeffkitError: an unreadable or mismatching inputs file, or bad ``--dims``.
    """
    from neffkit.api import mentioning, npz_inputs, random_inputs

    dims = requested_dims(args, graph)
    if args.inputs:
        log.info("reading inputs from %s", args.inputs)
        return npz_inputs(graph, args.inputs)
    log.info("random inputs, seed %d", args.seed)
    with mentioning(model):
        return random_inputs(graph, args.seed, dims=dims)


def requested_dims(args: argparse.Namespace, graph: Any = None) -> dict[str, int] | None:
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


def dims_used(graph: Any, feeds: Any) -> str:
    """``dims batch=2,seq=16`` for the sizes random inputs gave the symbolic dims."""
    from neffkit.api import input_dims
    from neffkit.dims import format_dims

    return f"dims {format_dims(input_dims(graph, feeds))}"


# -- reporting --------------------------------------------------------------------------------


def error_line(e: BaseException) -> str:
    """One line for an error: ``FILE: reason`` for an OS error, else the message joined."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    text = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())
    return text or type(e).__name__


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def setup_logging(verbose: int) -> None:
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


def run_reporting_errors(
    command: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """Runs a subcommand and returns its exit status, reporting what it raises in one line.

    A :class:`NeffkitError` or ``OSError`` prints ``neffkit: error: <message>`` on stderr and
    gives :data:`EXIT_ERROR` (``args.debug`` adds the traceback); running out of memory or
    nesting too deeply is an error in the input, not a crash; SIGTERM gives 128 + 15 and
    Ctrl-C 130, both after temporary files are removed; a closed stdout (``| head``) is not an
    error; anything else is a bug: traceback and :data:`EXIT_INTERNAL`.
    """
    from neffkit.files import Terminated, interruptible

    try:
        with interruptible():  # SIGTERM, like SIGINT, removes temporary files on its way out
            return command(args)
    except BrokenPipeError:  # `neffkit ... | head`: the reader left; not an error
        _silence_stdout()
        return EXIT_OK
    except (NeffkitError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"neffkit: error: {error_line(e)}", file=sys.stderr)
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
