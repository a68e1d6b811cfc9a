"""What a *model* is to the execution layer: a path, an ``onnx.ModelProto`` or a ``Graph``.

Turning any of the three into a ``Graph`` or a proto, naming it in messages, and putting the
file a model came from in front of the errors it causes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import onnx

from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph

__all__ = ["Model", "as_graph", "as_model_proto", "describe_model", "mentioning", "source_path"]

Model = str | os.PathLike | onnx.ModelProto | bytes | Graph


def as_graph(model: Model, *, check: bool = False) -> Graph:
    """The ``Graph`` of a model given as a path, ``ModelProto``, its bytes, or a ``Graph`` (as is).

    ``check`` refuses files and protos the ONNX checker refuses (a ``Graph`` is taken as is).
    """
    if isinstance(model, Graph):
        return model
    from neffkit.frontends.onnx import load

    if isinstance(model, onnx.ModelProto | str | os.PathLike | bytes):
        return load(model, check=check)
    raise NeffkitError(
        f"expected a model path, onnx.ModelProto or neffkit Graph, got {type(model).__name__}"
    )


def as_model_proto(model: Model) -> onnx.ModelProto:
    """The ``ModelProto`` of a model (a path is read through neffkit, so errors are clear)."""
    if isinstance(model, onnx.ModelProto):
        return model
    from neffkit.backends.onnx import to_onnx

    return to_onnx(as_graph(model))


def describe_model(model: Any) -> str:
    """A short label for a model in messages and reports (its path when it has one)."""
    if isinstance(model, str | os.PathLike):
        return os.fspath(model)
    if isinstance(model, Graph):
        return model.meta.source_path or f"<Graph {model.name}>"
    if isinstance(model, onnx.ModelProto):
        return f"<ModelProto {model.graph.name}>"
    if isinstance(model, bytes):
        return f"<{len(model)} bytes of ONNX>"
    return f"<{type(model).__name__}>"


def source_path(model: Any) -> str | None:
    """The file a model came from, if any (for error messages)."""
    if isinstance(model, str | os.PathLike):
        return os.fspath(model)
    if isinstance(model, Graph):
        return model.meta.source_path
    return None


@contextlib.contextmanager
def mentioning(where: str | os.PathLike | None) -> Iterator[None]:
    """Re-raises a ``NeffkitError`` with ``where`` (a file) in front unless it starts with it."""
    try:
        yield
    except NeffkitError as e:
        where_s = None if where is None else os.fspath(where)
        msg = str(e)
        if where_s and not msg.startswith(where_s):
            e.args = (f"{where_s}: {msg}",)
        raise
