"""Command-line options several ``neffkit`` subcommands share, defined once so their spelling
and help read the same everywhere: ``--inputs`` / ``--seed`` / ``--dims``, ``--atol`` /
``--rtol``, ``--no-check``, and ``--input-shape`` / ``--trust-code`` for TorchScript files."""

from __future__ import annotations

import argparse
from collections.abc import Callable

#: What a command module's ``register`` receives: makes a subparser from its name, one-line
#: help and epilog (the description is the help as a sentence).
AddCommand = Callable[[str, str, str], argparse.ArgumentParser]

#: Keeps the epilogs' line breaks and indented examples.
RAW = argparse.RawDescriptionHelpFormatter


def add_input_args(s: argparse.ArgumentParser) -> None:
    """``--inputs FILE.npz``, ``--seed`` and ``--dims`` (see :func:`neffkit.cli.io.read_inputs`)."""
    s.add_argument(
        "--inputs", metavar="FILE.npz", help="input arrays, named after the model's inputs"
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    s.add_argument(
        "--dims",
        metavar="NAME=SIZE,...",
        help="sizes of symbolic input dims for random inputs, e.g. --dims batch=2,seq=16",
    )


def add_check_arg(s: argparse.ArgumentParser) -> None:
    """``--no-check``: run models the ONNX checker refuses (``args.check`` False)."""
    s.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="run models the ONNX checker refuses as invalid anyway (results may be wrong)",
    )


def add_tolerance_args(s: argparse.ArgumentParser) -> None:
    """``--atol`` and ``--rtol`` (None: the per-dtype defaults)."""
    s.add_argument("--atol", type=float, default=None, help="absolute tolerance (per dtype)")
    s.add_argument("--rtol", type=float, default=None, help="relative tolerance (per dtype)")


def add_torchscript_args(s: argparse.ArgumentParser) -> None:
    """``--input-shape NAME=DIMS[:DTYPE]`` (repeatable) and ``--trust-code``, for a TorchScript
    model file (see :func:`neffkit.cli.io.read_model`)."""
    s.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=DIMS[:DTYPE]",
        help="TorchScript models: the static shape and dtype of input NAME, e.g. "
        "x=1x3x224x224 or ids=1x16:int64 (DIMS 'scalar' for 0-d; dtype default float32); "
        "needed for a scripted module or a .pt file, whose inputs record none (repeatable; "
        "--inputs FILE.npz states them too)",
    )
    s.add_argument(
        "--trust-code",
        action="store_true",
        help="TorchScript files: load code the safe loader refuses (__setstate__, from_file, "
        "foreign operator namespaces); never a pickle",
    )
