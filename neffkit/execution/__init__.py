"""The execution layer: running graphs on backends, and the inputs and comparisons around it.

- :mod:`~neffkit.execution.backend`: the ``Backend`` protocol and the registry
  (``get_backend``, ``backend_names``; plugins through the ``neffkit.backends`` entry points);
- :mod:`~neffkit.execution.inputs`: binding inputs to a graph, random inputs, ``.npz`` files;
- :mod:`~neffkit.execution.compare`: comparing outputs under one per-dtype tolerance policy;
- :mod:`~neffkit.execution.runner`: ``Runner`` and ``run``;
- :mod:`~neffkit.execution.model`: paths, protos and graphs as one *model*;
- :mod:`~neffkit.execution.exported`: a graph exported once, checked, run and written as is;
- :mod:`~neffkit.execution.replicas`: ``ReplicaRunner``, N replicas serving from N threads over
  one copy of the weights (torch, Neuron).

Nothing here imports a backend before it is asked for (importing torch takes seconds).
"""

from __future__ import annotations

from neffkit.execution.backend import (
    Backend,
    Prepared,
    backend_names,
    canonical_name,
    get_backend,
)
from neffkit.execution.compare import (
    DEFAULT_TOLERANCES,
    OutputComparison,
    compare,
    compare_all,
    default_tolerances,
    tolerances,
)
from neffkit.execution.inputs import bind, check_inputs, random_inputs
from neffkit.execution.model import as_graph, as_model_proto, describe_model
from neffkit.execution.replicas import ReplicaError, ReplicaRunner
from neffkit.execution.runner import Runner, run

__all__ = [
    "DEFAULT_TOLERANCES",
    "Backend",
    "OutputComparison",
    "Prepared",
    "ReplicaError",
    "ReplicaRunner",
    "Runner",
    "as_graph",
    "as_model_proto",
    "backend_names",
    "bind",
    "canonical_name",
    "check_inputs",
    "compare",
    "compare_all",
    "default_tolerances",
    "describe_model",
    "get_backend",
    "random_inputs",
    "run",
    "tolerances",
]
