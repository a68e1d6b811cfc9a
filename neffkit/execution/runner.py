"""Running a model: prepared once on a registered backend, then run on many input sets."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx

from neffkit.dims import runtime_inputs
from neffkit.execution.backend import get_backend
from neffkit.execution.inputs import Inputs, bind
from neffkit.execution.model import (
    Model,
    as_graph,
    describe_model,
    is_torch_path,
    mentioning,
    source_path,
)
from neffkit.ir.core import Graph

__all__ = ["Runner", "run"]


class Runner:
    """A model prepared once for a backend (lowered or loaded), then run on many input sets.

    Args:
        model: a path, ``ModelProto``, its serialized bytes, or a ``Graph``.
        backend: a name from ``neffkit.execution.backend_names()`` (``"torch"``,
            ``"onnxruntime"`` or ``"ort"``, a plugin's).
        device: where the backend runs it (torch: ``"cuda"``); None for its default.
        check: refuse models the ONNX checker or onnxruntime refuse as invalid (default).
        graph: ``model`` already loaded (``neffkit.load(model, check=...)``), for a caller that
            needed the graph before preparing it; ``check`` is then the caller's business.
        source: the serialized form of ``graph`` the backend may run as is (a path, proto or
            bytes the caller vouches for, e.g. the bytes ``optimize`` exported and will write);
            by default ``model`` itself when it is a proto, bytes or a self-contained file.
    """

    def __init__(
        self,
        model: Model,
        backend: str = "torch",
        *,
        device: Any = None,
        check: bool = True,
        graph: Graph | None = None,
        source: Any = None,
    ) -> None:
        impl = get_backend(backend)
        self.backend = impl.name
        self.source = describe_model(model)
        path = os.fspath(model) if isinstance(model, str | os.PathLike) else None
        # Errors name the file the model came from, if any.
        self._where = source_path(model)
        with mentioning(self._where):
            self.graph = graph if graph is not None else as_graph(model, check=check)
            self.input_names = [v.name for v in runtime_inputs(self.graph)]
            self.output_names = [v.name for v in self.graph.outputs]
            # A self-contained file, a proto or bytes are handed to the backend as they are.
            # One with external data goes through the graph, so a runtime reads only bytes
            # neffkit read through its checked path, never an outside file.
            serialized: Any = model if isinstance(model, onnx.ModelProto | bytes) else None
            if path is not None and not self.graph.meta.external_data and not is_torch_path(path):
                serialized = path
            if source is not None:
                serialized = source
            self._prepared = impl.prepare(self.graph, device=device, source=serialized)
        self.device = self._prepared.device

    def __call__(self, inputs: Inputs) -> list[np.ndarray]:
        """Runs the model on one input set and returns its outputs in order."""
        with mentioning(self._where):
            return self._prepared.run(bind(self.graph, inputs))


def run(
    model: Model,
    inputs: Inputs,
    backend: str = "torch",
    *,
    device: Any = None,
    check: bool = True,
) -> list[np.ndarray]:
    """Runs a model once and returns its outputs as numpy arrays, in the graph's output order.

    Args:
        model: a path, ``onnx.ModelProto`` or ``neffkit.ir.Graph``.
        inputs: arrays in the order of the model's runtime inputs, or a ``name -> array`` dict.
            They must have the declared dtype and a shape that fits the declared one.
        backend: ``"torch"`` (neffkit's own lowering), ``"onnxruntime"`` (the reference) or
            another registered backend.
        device: torch device (``"cuda"``) for the torch backend.
        check: refuse a model the ONNX checker or onnxruntime refuse as invalid; False runs it
            anyway (a ``Graph`` is never checked).

    Raises:
        NeffkitError: the model cannot be read, is invalid or cannot be lowered, or the inputs
            do not fit it.
    """
    return Runner(model, backend, device=device, check=check)(inputs)
