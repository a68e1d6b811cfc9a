"""Backends: the ``Backend`` protocol and the registry that finds one by name.

A backend prepares a graph once (lowers it, or loads it into a runtime session) and the
prepared form runs on feeds that :func:`neffkit.execution.inputs.bind` matched and checked.
The built-in backends are named here as data and imported on first use (importing torch
takes seconds; ``import neffkit`` must not). A third-party backend is declared in its
package's ``pyproject.toml``::

    [project.entry-points."neffkit.backends"]
    my-chip = "my_package.backend:MyChipBackend"

and ``neffkit.run(model, inputs, backend="my-chip")`` then runs on it. The entry point names
a class (instantiated without arguments) or an instance.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Backend",
    "Prepared",
    "backend_names",
    "canonical_name",
    "get_backend",
    "reset_entry_points",
]

ENTRY_POINT_GROUP = "neffkit.backends"

#: Built-in backend name -> ``module:attribute`` of its class (imported on first use).
BUILTIN: dict[str, str] = {
    "torch": "neffkit.backends.torch:TorchBackend",
    "onnxruntime": "neffkit.backends.onnxruntime:OnnxRuntimeBackend",
    "neuron": "neffkit.backends.neuron:NeuronBackend",
}

#: Other spellings accepted for a built-in backend.
ALIASES: dict[str, str] = {"ort": "onnxruntime"}


@runtime_checkable
class Prepared(Protocol):
    """A graph one backend made ready to run; run it on many input sets."""

    #: where it runs, in the backend's words (``"cpu"``, ``"cuda:0"``)
    device: str

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        """Runs on bound feeds (one per runtime input, by name) and returns the outputs in
        the graph's order: numpy arrays, lists of arrays (sequences) or None (empty
        optionals)."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Something that runs neffkit graphs: a runtime, a lowering, a device toolchain."""

    #: the name it is registered under
    name: str

    def version(self) -> str:
        """The version of the runtime underneath (for reports)."""
        ...

    def prepare(self, graph: Graph, *, device: Any = None, source: Any = None) -> Prepared:
        """Makes ``graph`` ready to run on ``device`` (None: the backend's default).

        ``source`` is the serialized model the graph was read from when the caller has one
        it vouches for (a self-contained ``.onnx`` path, a ``ModelProto`` or its bytes); a
        backend that runs ONNX may run it as is instead of exporting ``graph`` again.

        Raises:
            NeffkitError: the graph cannot be prepared (an op the backend lacks, a device it
                does not have); a ``BackendError`` where the backend itself failed.
        """
        ...


_INSTANCES: dict[str, Backend] = {}
_plugins: dict[str, metadata.EntryPoint] | None = None


def canonical_name(name: Any) -> str:
    """The registered name ``name`` stands for (``"ort"`` -> ``"onnxruntime"``).

    Raises:
        NeffkitError: no backend has that name; the message lists the known ones.
    """
    plugins = _entry_points()  # read first: a plugin clashing with a built-in is refused
    if isinstance(name, str):
        name = ALIASES.get(name, name)
        if name in BUILTIN or name in plugins:
            return name
    raise NeffkitError(f"unknown backend '{name}'; choose one of {', '.join(backend_names())}")


def backend_names() -> tuple[str, ...]:
    """Every backend that can be asked for: the built-in ones, then plugins by name.

    Reads only the entry-point table: no backend module is imported.
    """
    return (*BUILTIN, *sorted(_entry_points()))


def get_backend(name: str) -> Backend:
    """The backend registered as ``name`` (built-in or plugin), made once and kept.

    Raises:
        NeffkitError: no such backend (the message lists the known ones), or a plugin that
            cannot be loaded or is not a backend (the message names the plugin).
    """
    key = canonical_name(name)
    backend = _INSTANCES.get(key)
    if backend is not None:
        return backend
    if key in BUILTIN:
        module, _, attr = BUILTIN[key].partition(":")
        backend = _instance(getattr(importlib.import_module(module), attr))
    else:
        backend = _load_plugin(_entry_points()[key])
    _INSTANCES[key] = backend
    return backend


def _instance(obj: Any) -> Any:
    return obj() if isinstance(obj, type) else obj


def _load_plugin(ep: metadata.EntryPoint) -> Backend:
    where = f"plugin backend '{ep.name}' = {ep.value}{_package(ep)}"
    try:
        backend = _instance(ep.load())
    except Exception as e:  # noqa: BLE001 - any failure of a plugin is reported as its own
        raise NeffkitError(f"{where} could not be loaded: {type(e).__name__}: {e}") from e
    missing = [m for m in ("name", "version", "prepare") if not hasattr(backend, m)]
    if missing:
        raise NeffkitError(
            f"{where} is not a neffkit backend: it lacks {', '.join(missing)} "
            "(see neffkit.execution.Backend)"
        )
    if backend.name != ep.name:
        raise NeffkitError(f"{where} calls itself '{backend.name}'; the two names must agree")
    return backend


def _package(ep: metadata.EntryPoint) -> str:
    return f" (package {ep.dist.name})" if ep.dist is not None else ""


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """Plugin name -> entry point; a plugin named like a built-in backend is refused."""
    global _plugins
    if _plugins is None:
        found: dict[str, metadata.EntryPoint] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            builtin = ALIASES.get(ep.name, ep.name)
            if builtin in BUILTIN:
                raise NeffkitError(
                    f"plugin backend '{ep.name}' = {ep.value}{_package(ep)} is named like the "
                    f"built-in backend '{builtin}' ({BUILTIN[builtin]}); the plugin must use "
                    "another name"
                )
            found[ep.name] = ep
        _plugins = found
    return _plugins


def reset_entry_points() -> None:
    """Forgets the plugins read so far and the backends made (tests that install one)."""
    global _plugins
    _plugins = None
    for name in [n for n in _INSTANCES if n not in BUILTIN]:
        del _INSTANCES[name]
