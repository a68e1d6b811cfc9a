"""Checks on the Python types of arguments shared by ``run``, ``verify`` and ``optimize``, so
that a wrong type ends in a ``NeffkitError`` naming the argument, not deep inside numpy."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neffkit.errors import NeffkitError


def check_run_arguments(
    inputs: Any = None, seed: Any = 0, atol: Any = None, rtol: Any = None
) -> None:
    """Refuses arguments of the wrong Python type (or sign) before anything runs.

    ``inputs`` may be None, a sequence, a mapping or a path; ``seed`` an int; the tolerances
    None or non-negative finite numbers.

    Raises:
        NeffkitError: naming the argument and what it takes.
    """
    ok_inputs = (
        inputs is None
        or isinstance(inputs, Mapping | str | os.PathLike)
        or (isinstance(inputs, Sequence) and not isinstance(inputs, bytes))
    )
    if not ok_inputs:
        raise NeffkitError(
            "inputs must be a list or a name -> array dict of arrays, a list of such sets or "
            f"an .npz path, got {type(inputs).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise NeffkitError(f"seed must be an integer, got {seed!r}")
    for name, tol in (("atol", atol), ("rtol", rtol)):
        if tol is None:
            continue
        if isinstance(tol, bool) or not isinstance(tol, int | float | np.floating | np.integer):
            raise NeffkitError(f"{name} must be a number, got {tol!r}")
        if not math.isfinite(tol) or tol < 0:
            raise NeffkitError(f"{name} must be a non-negative finite number, got {tol!r}")
