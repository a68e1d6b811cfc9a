"""The top-level Python API: run a model on a backend, and make inputs for it.

A *model* is anything neffkit can read: a path to an ``.onnx`` file, an ``onnx.ModelProto``
or a ``neffkit.ir.Graph``. Inputs are a list (in the order of the model's runtime inputs) or
a ``name -> array`` dict::

    import neffkit
    from neffkit.api import random_inputs

    graph = neffkit.load("model.onnx")
    outputs = neffkit.run(graph, random_inputs(graph, seed=0), backend="torch")

The public facade: everything here lives in ``neffkit.execution`` (running, inputs,
comparing) and ``neffkit.dims``, and is re-exported under the names it always had.
"""

from __future__ import annotations

# ``name as name``: names importable from here before the execution layer existed, kept
from neffkit.dims import check_dims as check_dims
from neffkit.dims import input_dims, parse_dims, runtime_inputs, symbolic_dims
from neffkit.execution.backend import BUILTIN, backend_names, canonical_name, get_backend
from neffkit.execution.inputs import COMPLEX_TYPES as COMPLEX_TYPES
from neffkit.execution.inputs import FLOAT_TYPES as FLOAT_TYPES
from neffkit.execution.inputs import INT_TYPES as INT_TYPES
from neffkit.execution.inputs import Inputs as Inputs
from neffkit.execution.inputs import bind as bind
from neffkit.execution.inputs import check_inputs, load_npz, npz_inputs, random_inputs
from neffkit.execution.inputs import type_str as type_str
from neffkit.execution.model import Model as Model
from neffkit.execution.model import as_graph, as_model_proto, describe_model
from neffkit.execution.model import mentioning as mentioning
from neffkit.execution.replicas import ReplicaError, ReplicaRunner
from neffkit.execution.runner import Runner, run

__all__ = [
    "BACKENDS",
    "ReplicaError",
    "ReplicaRunner",
    "Runner",
    "as_graph",
    "as_model_proto",
    "backend_names",
    "check_inputs",
    "describe_model",
    "get_backend",
    "input_dims",
    "load_npz",
    "npz_inputs",
    "parse_dims",
    "random_inputs",
    "symbolic_dims",
    "run",
    "runtime_inputs",
]

#: The built-in backend names ``run`` accepts (``"ort"`` is short for ``"onnxruntime"``);
#: plugins add theirs: ``backend_names()`` lists them all.
BACKENDS = tuple(BUILTIN)


def backend_name(backend: str) -> str:
    """The canonical backend name, or a ``NeffkitError`` listing the known ones."""
    return canonical_name(backend)
