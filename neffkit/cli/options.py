"""Command-line options several ``neffkit`` subcommands share, defined once so their spelling
and help read the same everywhere: ``--inputs`` / ``--seed`` / ``--dims``, ``--atol`` /
``--rtol`` and ``--no-check``."""

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
