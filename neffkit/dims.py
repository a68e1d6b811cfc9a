"""Sizes of symbolic dimensions: which a model has, ``--dims`` text, checks, and the sizes
given inputs have.

Verification runs every model on more than one size of each symbolic dim (a bug that shows
only at sequence length > 1 must not pass), so these helpers are shared by ``random_inputs``,
``verify`` and the CLI's ``--dims`` option.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph, Value
from neffkit.ir.types import TensorType

__all__ = [
    "check_dims",
    "format_dims",
    "input_dims",
    "parse_dims",
    "refuse_dims_with_inputs",
    "runtime_inputs",
    "symbolic_dims",
]


def runtime_inputs(graph: Graph) -> list[Value]:
    """The inputs a caller feeds (IR v3 inputs that also have an initializer are excluded)."""
    return [v for v in graph.inputs if v.const is None]


def refuse_dims_with_inputs(dims: Mapping[str, int] | None, inputs: Any) -> None:
    """Refuses ``dims`` together with given inputs: dims only size random ones.

    Raises:
        NeffkitError: both were given.
    """
    if dims and inputs is not None:
        raise NeffkitError(
            "dims set the sizes of random inputs; they cannot be combined with given inputs"
        )


def symbolic_dims(graph: Graph) -> list[str]:
    """The names of the symbolic dims of the runtime inputs (``batch``, ``seq``), in order."""
    out: dict[str, None] = {}
    for v in runtime_inputs(graph):
        if isinstance(v.type, TensorType) and v.type.shape is not None:
            for d in v.type.shape:
                if isinstance(d, str):
                    out[d] = None
    return list(out)


def parse_dims(text: str) -> dict[str, int]:
    """Reads ``name=value,...`` (``--dims batch=2,seq=16``) into a dict.

    Raises:
        NeffkitError: bad syntax, an empty name, a repeated name or a value that is not a
            positive integer, naming the offending part.
    """
    out: dict[str, int] = {}
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise NeffkitError(f"--dims '{text}': empty entry; expected name=value,...")
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name:
            raise NeffkitError(
                f"--dims '{text}': '{item}' is not name=value (e.g. --dims batch=2,seq=16)"
            )
        if name in out:
            raise NeffkitError(f"--dims '{text}': '{name}' is given twice")
        try:
            size = int(value)
        except ValueError:
            raise NeffkitError(
                f"--dims '{text}': the size of '{name}' is '{value}', not an integer"
            ) from None
        if size <= 0:
            raise NeffkitError(
                f"--dims '{text}': the size of '{name}' must be positive, got {size}"
            )
        out[name] = size
    return out


def check_dims(graph: Graph, dims: Mapping[str, int]) -> dict[str, int]:
    """Checks ``dims`` against the model's symbolic dims and returns them as a dict.

    Raises:
        NeffkitError: a name the model's inputs do not use, or a size that is not a positive
            integer.
    """
    if not isinstance(dims, Mapping):
        raise NeffkitError(
            f"dims must be a name -> size dict (e.g. {{'batch': 2}}), got {type(dims).__name__}"
        )
    known = symbolic_dims(graph)
    out: dict[str, int] = {}
    for name, size in dims.items():
        if name not in known:
            have = ", ".join(known) if known else "none"
            raise NeffkitError(
                f"dims: the model's inputs have no dim named '{name}' (symbolic dims: {have})"
            )
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
            raise NeffkitError(
                f"dims: the size of '{name}' must be a positive integer, got {size!r}"
            )
        out[name] = int(size)
    return out


def input_dims(graph: Graph, feeds: Mapping[str, Any]) -> dict[str, int]:
    """The sizes the given inputs have for the model's symbolic dims (first input wins)."""
    out: dict[str, int] = {}
    for v in runtime_inputs(graph):
        arr = feeds.get(v.name)
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None or not isinstance(arr, np.ndarray):
            continue
        if arr.ndim != len(t.shape):
            continue
        for d, size in zip(t.shape, arr.shape):
            if isinstance(d, str) and d not in out:
                out[d] = int(size)
    return out


def format_dims(dims: Mapping[str, int]) -> str:
    """``batch=3,seq=3`` (``-`` when there are none)."""
    return ",".join(f"{k}={v}" for k, v in dims.items()) or "-"
