"""What a *model* is to the execution layer: a path (ONNX or TorchScript), an
``onnx.ModelProto``, a ``torch.jit.ScriptModule`` or a ``Graph``.

Turning any of the three into a ``Graph`` or a proto, naming it in messages, and putting the
file a model came from in front of the errors it causes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import onnx

from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph

__all__ = [
    "Model",
    "as_graph",
    "as_model_proto",
    "describe_model",
    "is_torch_path",
    "mentioning",
    "source_path",
]

Model = str | os.PathLike | onnx.ModelProto | bytes | Graph


def as_graph(
    model: Model | Any,
    *,
    check: bool = False,
    input_shapes: Mapping[str, Any] | None = None,
    trust_code: bool = False,
) -> Graph:
    """The ``Graph`` of a model given as a path, ``ModelProto``, its bytes, a ``Graph`` (as is)
    or a TorchScript module (``torch.jit.ScriptModule`` or a ``torch.jit.save`` file, told from
    ONNX by its bytes, never by its name).

    Args:
        model: the model.
        check: ONNX only: refuse files and protos the ONNX checker refuses.
        input_shapes: TorchScript only: ``neffkit.frontends.torchscript_inputs.InputSpec`` by
            input name, for inputs whose dtype and shape the module does not record (every
            input of a scripted module or of a file).
        trust_code: TorchScript files only: accept archive code the safe loader refuses.

    Raises:
        FrontendError: the model cannot be read; a pickle or ``torch.save`` checkpoint is
            refused unread (the safe loader says what it is); a TorchScript input's dtype
            and shape are neither recorded nor given.
    """
    if isinstance(model, Graph):
        return model
    torch = sys.modules.get("torch")  # a ScriptModule means torch is already imported
    script_module = torch is not None and isinstance(model, torch.jit.ScriptModule)
    if script_module or is_torch_path(model):
        return _torchscript_graph(model, input_shapes, trust_code)
    from neffkit.frontends.onnx import load

    if isinstance(model, onnx.ModelProto | str | os.PathLike | bytes):
        return load(model, check=check)
    raise NeffkitError(
        f"expected a model path, onnx.ModelProto, torch.jit.ScriptModule or neffkit Graph, got "
        f"{type(model).__name__}"
    )


def is_torch_path(model: Any) -> bool:
    """Whether ``model`` is the path of a PyTorch file (zip or pickle bytes), never ONNX."""
    if not isinstance(model, str | os.PathLike):
        return False
    from neffkit.frontends.dispatch import is_torch_file

    return is_torch_file(model)


def _torchscript_graph(
    model: Any, input_shapes: Mapping[str, Any] | None, trust_code: bool
) -> Graph:
    """Lifts a TorchScript module or file with its inputs typed (see ``as_graph``)."""
    from neffkit.frontends.torchscript import load_torchscript
    from neffkit.frontends.torchscript_archive import load_archive
    from neffkit.frontends.torchscript_inputs import example_inputs

    path = model if isinstance(model, str | os.PathLike) else None
    with mentioning(path):
        module = load_archive(path, trust_code=trust_code) if path is not None else model
        examples = example_inputs(module, input_shapes)
        graph = load_torchscript(module, example_inputs=examples)
    if path is not None:
        graph.meta.source_path = os.path.abspath(path)
    return graph


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
