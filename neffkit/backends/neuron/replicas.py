"""N replicas of a Neuron-compiled TorchScript model over N NeuronCores, with one copy of the
weights in device memory.

The Neuron runtime shares the weights of the instances of one model loaded on several cores
when ``NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS`` is ``TRUE`` (runtime 2.11 and later; the
runtime configuration guide). The runtime reads the variable once, when it starts (the first
Neuron model loaded, or the first placement call, in the process), and it applies to
*multi-instance* loads: one ``torch.jit.load`` placed on N cores. So the loader here:

1. sets the variable (``TRUE`` shared, ``FALSE`` separate copies) before anything Neuron runs,
   and refuses when this process already loaded a Neuron model with the other setting;
2. places the model per target, with the placement APIs of Neuron's documentation:

   - ``inf1`` (``torch_neuron``): one ``torch.jit.load`` inside
     ``torch_neuron.experimental.neuron_cores_context(start_nc, nc_count=N)``;
   - ``inf2`` / ``trn1`` (``torch_neuronx``): the same with
     ``torch_neuronx.experimental.neuron_cores_context``; where only
     ``set_neuron_cores(trace, start_nc, nc_count)`` exists, after the load;

   the loaded module then runs each call on the next of its N cores, and is safe to call from
   N threads. An SDK without the placement API gets N plain loads, which the runtime places on
   the next free core each (default placement), each a replica of its own.

``trn2`` compiles in process with ``torch.compile(backend="neuron")`` and writes no artifact to
load; it is refused here. Loading needs the Neuron package of the target: without it, a
``BackendError`` says which package and where it comes from. The caller checks the archive
first (``neffkit.execution.ReplicaRunner`` runs the TorchScript archive checks).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from neffkit.errors import BackendError

__all__ = [
    "PACKAGES",
    "SHARED_WEIGHTS_ENV",
    "NeuronReplicas",
    "import_package",
    "Placement",
    "runtime_setting",
    "set_shared_weights",
]

log = logging.getLogger(__name__)

#: The Neuron runtime's switch for one copy of the weights across a model's instances.
SHARED_WEIGHTS_ENV = "NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS"
#: target -> the Python package that loads and runs its compiled models.
PACKAGES = {"inf1": "torch_neuron", "inf2": "torch_neuronx", "trn1": "torch_neuronx"}
_INSTALL = (
    "install it from AWS's Neuron package index (pip install --extra-index-url "
    "https://pip.repos.neuron.amazonaws.com {pip}) on an {target} instance"
)
_PIP = {"torch_neuron": "torch-neuron", "torch_neuronx": "torch-neuronx"}

#: The shared-weights setting the runtime started with in this process (None: not started by
#: a load made here).
_started_with: bool | None = None


def runtime_setting() -> bool | None:
    """The shared-weights setting of the Neuron models this process loaded through neffkit
    (None: none loaded yet)."""
    return _started_with


def set_shared_weights(shared: bool) -> None:
    """Sets ``NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS`` for the runtime about to start.

    Raises:
        BackendError: this process already loaded a Neuron model with the other setting; the
            runtime read the variable then and will not read it again.
    """
    if _started_with is not None and _started_with != shared:
        raise BackendError(
            f"a Neuron model is already loaded in this process with {SHARED_WEIGHTS_ENV}="
            f"{_flag(_started_with)}; the runtime read it when it started and will not read it "
            f"again, so replicas with {SHARED_WEIGHTS_ENV}={_flag(shared)} need a new process"
        )
    old = os.environ.get(SHARED_WEIGHTS_ENV)
    if old is not None and _truthy(old) != shared:
        log.info("%s was %r; setting it to %s", SHARED_WEIGHTS_ENV, old, _flag(shared))
    os.environ[SHARED_WEIGHTS_ENV] = _flag(shared)


def _flag(shared: bool) -> str:
    return "TRUE" if shared else "FALSE"


def _truthy(value: str) -> bool:
    return value.strip().upper() in ("TRUE", "1", "YES", "ON")


def import_package(target: str) -> ModuleType:
    """The Neuron package of ``target``, imported (it registers the ``neuron::`` operators a
    compiled model calls).

    Raises:
        BackendError: an unknown target, trn2, or the package is not installed.
    """
    if target == "trn2":
        raise BackendError(
            "trn2 models are compiled in process by torch.compile(backend='neuron') and leave "
            "no TorchScript artifact to load; serve them from the process that compiles them"
        )
    if target not in PACKAGES:
        raise BackendError(f"unknown Neuron target {target!r}; choose one of {', '.join(PACKAGES)}")
    name = PACKAGES[target]
    try:
        return importlib.import_module(name)
    except ImportError as e:
        how = _INSTALL.format(pip=_PIP[name], target=target)
        raise BackendError(
            f"Neuron replicas for {target} need the {name} package, which is not installed "
            f"({e}); {how}"
        ) from e


@dataclass
class Placement:
    """What the loader did: the API it used and the cores, for logs and tests."""

    target: str
    api: str
    start_core: int
    cores: int
    loads: int
    shared_weights: bool
    calls: list[str] = field(default_factory=list)


def _api(package: ModuleType, name: str) -> Any:
    """``package.experimental.name`` (where Neuron's docs put it) or ``package.name``."""
    experimental = getattr(package, "experimental", None)
    found = getattr(experimental, name, None) if experimental is not None else None
    return found if found is not None else getattr(package, name, None)


class NeuronReplicas:
    """A Neuron-compiled TorchScript model placed on ``replicas`` NeuronCores.

    Args:
        path: the compiled model (``torch.jit.save`` of a ``torch_neuron(x).trace`` result),
            already checked by the caller.
        replicas: how many cores (one instance each).
        target: ``inf1``, ``inf2`` or ``trn1``.
        shared_weights: one copy of the weights for all instances (the runtime's setting).
        start_core: the first core, relative to the cores this process sees
            (``NEURON_RT_VISIBLE_CORES``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        replicas: int,
        target: str,
        *,
        shared_weights: bool = True,
        start_core: int = 0,
    ) -> None:
        global _started_with
        if replicas < 1:
            raise BackendError(f"replicas must be at least 1, got {replicas}")
        package = import_package(target)
        set_shared_weights(shared_weights)
        import torch

        self.path = os.fspath(path)
        context = _api(package, "neuron_cores_context")
        set_cores = _api(package, "set_neuron_cores")
        calls: list[str] = []
        # From here the runtime may start (a placement call or a load), reading the variable.
        _started_with = shared_weights
        try:
            if context is not None:
                calls.append(f"neuron_cores_context(start_nc={start_core}, nc_count={replicas})")
                with context(start_nc=start_core, nc_count=replicas):
                    self.modules = [torch.jit.load(self.path)]
                api = "neuron_cores_context"
            elif set_cores is not None:
                self.modules = [torch.jit.load(self.path)]
                calls.append(f"set_neuron_cores(start_nc={start_core}, nc_count={replicas})")
                set_cores(self.modules[0], start_nc=start_core, nc_count=replicas)
                api = "set_neuron_cores"
            else:
                self.modules = [torch.jit.load(self.path) for _ in range(replicas)]
                api = "default placement (one load per core)"
        except BackendError:
            raise
        except Exception as e:  # noqa: BLE001 - the Neuron runtime raises RuntimeError and others
            raise BackendError(
                f"{self.path}: loading on {replicas} NeuronCore(s) for {target} failed: {e}"
            ) from e
        self.placement = Placement(
            target, api, start_core, replicas, len(self.modules), shared_weights, calls
        )
        self.replicas = replicas

    def __len__(self) -> int:
        return self.replicas

    def init_thread(self, index: int) -> None:
        """Nothing per thread: the runtime runs each call on a core of its own."""

    def call(self, index: int, args: Sequence[Any]) -> list[Any]:
        """Runs the model on positional tensors or arrays (replica ``index`` when there is one
        module per core, else the runtime picks the next core)."""
        import numpy as np
        import torch

        module = self.modules[index % len(self.modules)]
        tensors = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
        with torch.inference_mode():
            out = module(*tensors)
        items = list(out) if isinstance(out, list | tuple) else [out]
        return [o.numpy() if isinstance(o, torch.Tensor) else o for o in items]

    def close(self) -> None:
        """Drops the modules (the runtime unloads a model when its module is freed)."""
        self.modules = []


@contextlib.contextmanager
def forgetting_runtime() -> Iterator[None]:
    """Tests: forget the loads recorded so far, and restore the record afterwards."""
    global _started_with
    saved = _started_with
    _started_with = None
    try:
        yield
    finally:
        _started_with = saved
