"""The Neuron backend: lowering through the torch backend to AWS Neuron's compilers.

Targets: ``inf1`` (``torch_neuron.trace``), ``inf2``/``trn1`` (``torch_neuronx.trace``) and
``trn2`` (``torch.compile(backend="neuron")``). Each compiled unit (``units``: the whole graph,
a host loop's encoder and step, or a decoder's partitions) is traced with static example
shapes, compiled by the target's API (``targets``, ``compile``) and stitched with scripted
host code into one TorchScript module; a dry run reports, per unit, what would run on a
NeuronCore (``support``). Real compilation needs the Neuron packages from AWS's index and,
to run, an Inf1/Inf2/Trn host.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np

from neffkit.backends.neuron.compile import (
    AWS_INDEX,
    CompileResult,
    DryRun,
    compile_graph,
    dry_run,
    neuron_api,
)
from neffkit.backends.neuron.targets import TARGETS, NeuronOptions, api_of, check_target
from neffkit.backends.neuron.units import CompiledUnit, UnitPlan, compiled_units
from neffkit.backends.torch import run as run_torch
from neffkit.backends.torch import runtime_inputs
from neffkit.errors import BackendError
from neffkit.ir.core import Graph
from neffkit.ir.tensor import np_dtype
from neffkit.ir.types import TensorType

__all__ = [
    "AWS_INDEX",
    "DEFAULT_TARGET",
    "TARGETS",
    "CompileResult",
    "CompiledUnit",
    "DryRun",
    "NeuronBackend",
    "NeuronOptions",
    "Prepared",
    "UnitPlan",
    "api_of",
    "compile_graph",
    "compiled_units",
    "dry_run",
    "neuron_api",
    "static_example",
]

#: The target ``prepare`` compiles for when no device names one.
DEFAULT_TARGET = "inf2"


class NeuronBackend:
    """The ``neuron`` backend of the registry (``neffkit.execution``): the graph compiled
    for a Neuron target (``device="inf1"``, ``"inf2"`` (default), ``"trn1"`` or ``"trn2"``)
    and run there; it needs the Neuron packages and a Neuron host."""

    name = "neuron"

    def version(self) -> str:
        """The installed torch-neuronx / torch-neuron versions, or that none is installed."""
        found = []
        for package in ("torch-neuronx", "torch-neuron"):
            try:
                found.append(f"{package} {metadata.version(package)}")
            except metadata.PackageNotFoundError:
                continue
        return ", ".join(found) or "no Neuron package installed"

    def prepare(self, graph: Graph, *, device: Any = None, source: Any = None) -> Prepared:
        """Compiles ``graph`` for the target ``device`` names, on zeros of its static input
        shapes (a compiled unit has one shape).

        Raises:
            BackendError: an unknown target, a missing Neuron package (the message says where
                to get it and that ``neffkit compile --dry-run`` needs none), inputs without
                static shapes, or a unit the compiler refuses.
        """
        target = DEFAULT_TARGET if device is None else str(device)
        check_target(target)
        neuron_api(target)
        result = compile_graph(graph, static_example(graph), target)
        return Prepared(graph, result)


class Prepared:
    """A compiled model that runs bound feeds on the Neuron device."""

    def __init__(self, graph: Graph, result: CompileResult) -> None:
        self.graph = graph
        self.result = result
        self.device = result.target

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        """Runs the stitched module on ``feeds`` and returns numpy outputs."""
        return run_torch(self.graph, feeds, module=self.result.module)


def static_example(graph: Graph) -> dict[str, np.ndarray]:
    """Zeros of each runtime input's static shape and dtype: the shapes units compile for.

    Raises:
        BackendError: an input whose type or shape is not static (names it).
    """
    feeds = {}
    for v in runtime_inputs(graph):
        t = v.type
        if not isinstance(t, TensorType) or not t.is_static or t.shape is None:
            raise BackendError(
                f"input '{v.name}' has no static shape ({t}); Neuron compiles one shape per "
                "unit: fix the dims first (neffkit optimize --dims, or --example-shape)"
            )
        feeds[v.name] = np.zeros([int(d) for d in t.shape], np_dtype(t.dtype))
    return feeds
