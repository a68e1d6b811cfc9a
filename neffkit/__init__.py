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

from neffkit.api import run
from neffkit.backends.onnx import save, to_onnx
from neffkit.errors import (
    BackendError,
    FrontendError,
    NeffkitError,
    NumericMismatchError,
    PassError,
    VerificationError,
)
from neffkit.frontends.dispatch import load
from neffkit.ir import Graph, Node, Tensor, Value
from neffkit.optimize import OptimizeReport, optimize
from neffkit.verify import VerificationReport, verify

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "FrontendError",
    "Graph",
    "NeffkitError",
    "Node",
    "NumericMismatchError",
    "OptimizeReport",
    "PassError",
    "Tensor",
    "Value",
    "VerificationError",
    "VerificationReport",
    "load",
    "optimize",
    "run",
    "save",
    "to_onnx",
    "verify",
]
