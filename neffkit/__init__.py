"""neffkit: a graph-level compiler optimization toolkit for inference models.

ONNX (or TorchScript) in, one IR, verified passes, and backends for ONNX, onnxruntime,
PyTorch / TorchScript and torch-neuron::

    import neffkit
    graph = neffkit.load("model.onnx")
    outputs = neffkit.run(graph, inputs, backend="torch")
    report = neffkit.verify("model.onnx", graph)
    optimized, opt_report = neffkit.optimize("model.onnx", target="torch")
"""

from __future__ import annotations

from typing import Any

from neffkit.backends.onnx import save, to_onnx
from neffkit.errors import (
    BackendError,
    FrontendError,
    NeffkitError,
    NumericMismatchError,
    PassError,
    VerificationError,
)
from neffkit.frontends.onnx import load
from neffkit.ir import Graph, Node, Tensor, Value

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "FrontendError",
    "Graph",
    "NeffkitError",
    "Node",
    "NumericMismatchError",
    "PassError",
    "Tensor",
    "Value",
    "VerificationError",
    "load",
    "optimize",
    "run",
    "save",
    "to_onnx",
    "verify",
]

# torch is slow to import: the entry points that need it are loaded on first use.
_LAZY = {
    "run": ("neffkit.api", "run"),
    "optimize": ("neffkit.optimize", "optimize"),
    "OptimizeReport": ("neffkit.optimize", "OptimizeReport"),
    "verify": ("neffkit.verify", "verify"),
    "VerificationReport": ("neffkit.verify", "VerificationReport"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'neffkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value
