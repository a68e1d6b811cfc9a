"""The pass registry: built-in passes by name (imported lazily), plus third-party passes found
through the ``neffkit.passes`` entry-point group.

A third-party package declares, in its ``pyproject.toml``::

    [project.entry-points."neffkit.passes"]
    fuse-gelu = "my_package.passes:FuseGelu"

and ``neffkit optimize --passes fuse-gelu,dce`` then runs it.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata

from neffkit.errors import NeffkitError
from neffkit.passes.base import Pass

log = logging.getLogger("neffkit.passes")

ENTRY_POINT_GROUP = "neffkit.passes"

#: Built-in pass name -> module that defines it (imported on first use). Every module listed
#: exists and registers a pass of that name (tests/passes/test_registry.py checks it); a name
#: is added together with its module.
BUILTIN: dict[str, str] = {
    "dce": "neffkit.passes.eliminate_dead_code",
    "cse": "neffkit.passes.eliminate_common_subexpressions",
    "fold": "neffkit.passes.fold_constants",
    "simplify": "neffkit.passes.simplify",
    "dedup": "neffkit.passes.deduplicate_tensors",
    "shape-infer": "neffkit.passes.infer_shapes",
    "hoist": "neffkit.passes.hoist_loop_invariants",
    "unroll": "neffkit.passes.unroll_loops",
    "partition-unroll": "neffkit.passes.unroll_loops",
    "split": "neffkit.passes.split_encoder_decoder",
    "pad-loop": "neffkit.passes.pad_loop",
    "dwconv": "neffkit.passes.rewrite_depthwise_conv",
}

_REGISTERED: dict[str, type[Pass]] = {}
_entry_points_loaded = False
_entry_point_names_checked = False


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: makes the pass available under ``cls.name``.

    Raises:
        NeffkitError: the name is a built-in pass's and ``cls`` is not that pass, or another
            class already has it. Re-running the defining module (a reload) is allowed.
    """
    if not cls.name:
        raise NeffkitError(f"pass class {_where(cls)} has no name")
    builtin = BUILTIN.get(cls.name)
    if builtin is not None and cls.__module__ != builtin:
        raise NeffkitError(
            f"pass {_where(cls)} is named '{cls.name}', the name of the built-in pass in "
            f"{builtin}; give it another name"
        )
    other = _REGISTERED.get(cls.name)
    if other is not None and _where(other) != _where(cls):
        raise NeffkitError(f"two passes are named '{cls.name}': {_where(other)} and {_where(cls)}")
    _REGISTERED[cls.name] = cls
    return cls


def unregister(name: str) -> type[Pass] | None:
    """Removes the pass registered as ``name`` (a plugin's or a test's); returns it, or None.

    Raises:
        NeffkitError: ``name`` is a built-in pass's (its module would not register it again).
    """
    if name in BUILTIN:
        raise NeffkitError(f"pass '{name}' is built in; it cannot be unregistered")
    return _REGISTERED.pop(name, None)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def get_pass(name: str) -> type[Pass]:
    """The pass class registered as ``name``.

    Raises:
        NeffkitError: no such pass; the message lists the known names.
    """
    _check_entry_point_names()
    cls = _REGISTERED.get(name)
    if cls is not None:
        return cls
    module = BUILTIN.get(name)
    if module is not None:
        importlib.import_module(module)
    else:
        _load_entry_points()
    cls = _REGISTERED.get(name)
    if cls is None:
        known = ", ".join(sorted(available()))
        raise NeffkitError(f"unknown pass '{name}'; known passes: {known}")
    return cls


def available() -> list[str]:
    """Names of every pass that can be run (built-in ones and third-party ones)."""
    names = set(_REGISTERED)
    for name, module in BUILTIN.items():
        if name not in names:
            importlib.import_module(module)
    _load_entry_points()
    names |= set(_REGISTERED)
    return sorted(n for n in names if n in _REGISTERED)


def all_passes() -> list[type[Pass]]:
    """Every available pass class, by name."""
    return [_REGISTERED[n] for n in available()]


def _check_entry_point_names() -> None:
    """Refuses a plugin that declares a built-in pass's name, without importing any plugin.

    Only reading the entry-point table (milliseconds), so even ``get_pass("dce")``, which
    never loads plugins, tells a plugin author that their ``dce`` would never run.
    """
    global _entry_point_names_checked
    if _entry_point_names_checked:
        return
    _entry_point_names_checked = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            raise NeffkitError(_builtin_clash(ep, ep.name))


def _builtin_clash(ep: metadata.EntryPoint, name: str) -> str:
    dist = f" (package {ep.dist.name})" if ep.dist is not None else ""
    return (
        f"plugin pass '{ep.name}' = {ep.value}{dist} is named '{name}', the name of the "
        f"built-in pass in {BUILTIN[name]}; the plugin must use another name"
    )


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            raise NeffkitError(_builtin_clash(ep, ep.name))
        try:
            cls = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break neffkit
            log.warning("could not load pass '%s' from %s: %s", ep.name, ep.value, e)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Pass)):
            log.warning("entry point '%s' (%s) is not a neffkit Pass class", ep.name, ep.value)
            continue
        if not cls.name:
            cls.name = ep.name
        if cls.name in BUILTIN and cls.__module__ != BUILTIN[cls.name]:
            raise NeffkitError(_builtin_clash(ep, cls.name))
        register(cls)  # refuses a second class under a name already taken


def reset_entry_points() -> None:
    """Forgets loaded entry points (tests that install a plugin call this)."""
    global _entry_points_loaded, _entry_point_names_checked
    _entry_points_loaded = False
    _entry_point_names_checked = False
