"""N replicas of one torch module for data-parallel serving, with or without one copy of the
weights.

Three layouts (``LAYOUTS``):

- ``"one-module"``: every replica is the same module object, called from N threads. Inference
  (no autograd) reads the parameters and never writes them, so concurrent calls are safe: a
  ``torch.fx.GraphModule`` is plain Python over torch ops and a ``ScriptModule``'s interpreter
  is re-entrant;
- ``"aliased"``: N module objects whose parameters and buffers are the same tensors (an fx
  module is copied with every tensor pre-seeded in the copy's memo, a ``ScriptModule`` is
  copied shallowly: both keep one storage);
- ``"copies"``: N independent deep copies (N times the weights), the baseline a shared layout
  is measured against.

Each serving thread calls :meth:`TorchReplicas.init_thread` once, which sets its intra-op
thread count: N replicas over C cores use ``max(1, C // N)`` threads each instead of N x C
threads fighting for C cores. Under OpenMP (torch's CPU builds) the count belongs to the
calling thread, so the caller's own is untouched (checked); :meth:`TorchReplicas.close` puts
the caller's count back anyway, for parallel backends where it is process-wide.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from neffkit.backends.torch import run
from neffkit.backends.torch.lowering import quiet_call
from neffkit.errors import BackendError
from neffkit.ir.core import Graph

__all__ = [
    "LAYOUTS",
    "TorchReplicas",
    "module_tensors",
    "replicate",
    "storage_pointers",
    "threads_per_replica",
    "weight_bytes",
]

#: The ways N replicas can hold the weights (see the module docstring).
LAYOUTS = ("one-module", "aliased", "copies")


def module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """Every tensor ``module`` holds: parameters, buffers and plain tensor attributes of it and
    its submodules, each once."""
    seen: dict[int, torch.Tensor] = {}
    for t in (*module.parameters(), *module.buffers()):
        seen.setdefault(id(t), t)
    if not isinstance(module, torch.jit.ScriptModule):
        for sub in module.modules():
            for value in vars(sub).values():
                if isinstance(value, torch.Tensor):
                    seen.setdefault(id(value), value)
    return list(seen.values())


def storage_pointers(module: torch.nn.Module) -> set[int]:
    """The data pointers of the storages behind ``module``'s tensors (equal sets: one copy)."""
    return {t.untyped_storage().data_ptr() for t in module_tensors(module) if t.numel()}


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct storages ``module`` holds."""
    sizes = {}
    for t in module_tensors(module):
        storage = t.untyped_storage()
        sizes[storage.data_ptr()] = storage.nbytes()
    return sum(sizes.values())


def replicate(module: torch.nn.Module, replicas: int, layout: str) -> list[torch.nn.Module]:
    """``replicas`` modules holding ``module``'s weights as ``layout`` says (the first is
    ``module`` itself).

    Raises:
        BackendError: an unknown layout or a replica count below 1.
    """
    if layout not in LAYOUTS:
        raise BackendError(f"unknown replica layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if replicas < 1:
        raise BackendError(f"replicas must be at least 1, got {replicas}")
    if layout == "one-module":
        return [module] * replicas
    return [module] + [_copy(module, alias=layout == "aliased") for _ in range(replicas - 1)]


def _copy(module: torch.nn.Module, *, alias: bool) -> torch.nn.Module:
    if isinstance(module, torch.jit.ScriptModule):
        # A shallow copy is a new module object over the same attribute slots (tensors);
        # a deep copy clones every tensor.
        return copy.copy(module) if alias else copy.deepcopy(module)
    memo: dict[int, Any] = {id(t): t for t in module_tensors(module)} if alias else {}
    clone = copy.deepcopy(module, memo)
    for sub in clone.modules():
        if isinstance(sub, torch.fx.GraphModule):
            quiet_call(sub)  # the copy regenerated its code: keep failures one clean error
    return clone


def threads_per_replica(replicas: int, cores: int | None = None) -> int:
    """Intra-op threads for each of ``replicas`` serving threads: the cores shared out, at
    least one."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return max(1, (cores or os.cpu_count() or 1) // replicas)


class TorchReplicas:
    """N replicas of a torch module (see ``LAYOUTS``), called by index from serving threads.

    Args:
        module: a ``torch.nn.Module`` or ``torch.jit.ScriptModule`` in eval mode.
        replicas: how many.
        layout: ``"one-module"``, ``"aliased"`` or ``"copies"``.
        threads: intra-op threads per replica (default: the cores shared out).
        graph: the neffkit graph ``module`` was lowered from (by this backend's ``compile``):
            then :meth:`call` takes bound feeds (name -> array) and runs them as the backend's
            ``run`` does (dtype checks, carrier dtypes); without it, positional arrays.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        replicas: int,
        layout: str = "one-module",
        *,
        threads: int | None = None,
        graph: Graph | None = None,
    ) -> None:
        module.eval()
        self.graph = graph
        self.modules = replicate(module, replicas, layout)
        self.layout = layout
        self.threads = threads if threads is not None else threads_per_replica(replicas)
        if self.threads < 1:
            raise BackendError(f"threads per replica must be at least 1, got {self.threads}")
        self._caller_threads = torch.get_num_threads()

    def __len__(self) -> int:
        return len(self.modules)

    def init_thread(self, index: int) -> None:
        """Sets the calling (serving) thread's intra-op thread count."""
        torch.set_num_threads(self.threads)

    def call(self, index: int, args: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
        """Runs replica ``index`` on bound feeds (with a graph) or positional arrays or tensors;
        its outputs as numpy."""
        if self.graph is not None:
            return run(self.graph, args, module=self.modules[index])
        if isinstance(args, Mapping):
            raise BackendError("a module without a graph takes its inputs in order, not by name")
        tensors = [_as_tensor(a) for a in args]
        with torch.inference_mode():
            out = self.modules[index](*tensors)
        return _as_numpy_list(out)

    def close(self) -> None:
        """Puts the caller's intra-op thread count back (process-wide on non-OpenMP builds)."""
        torch.set_num_threads(self._caller_threads)


def _as_tensor(x: Any) -> Any:
    if isinstance(x, torch.Tensor) or x is None:
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, list | tuple):
        return type(x)(_as_tensor(e) for e in x)
    return x


def _as_numpy_list(out: Any) -> list[Any]:
    """A module's result as a list: one array per output tensor (a tuple or list flattened one
    level; a non-tensor output kept as it is)."""
    items = list(out) if isinstance(out, list | tuple) else [out]
    return [o.detach().cpu().numpy() if isinstance(o, torch.Tensor) else o for o in items]
