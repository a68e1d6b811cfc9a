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

#: Built-in pass name -> module that defines it (imported on first use).
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
    "dwconv": "neffkit.passes.rewrite_depthwise_conv",
}

_REGISTERED: dict[str, type[Pass]] = {}
_entry_points_loaded = False


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: makes the pass available under ``cls.name``."""
    if not cls.name:
        raise NeffkitError(f"pass class {cls.__qualname__} has no name")
    other = _REGISTERED.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise NeffkitError(
            f"two passes are named '{cls.name}': {other.__module__}.{other.__qualname__} and "
            f"{cls.__module__}.{cls.__qualname__}"
        )
    _REGISTERED[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    """The pass class registered as ``name``.

    Raises:
        NeffkitError: no such pass; the message lists the known names.
    """
    cls = _REGISTERED.get(name)
    if cls is not None:
        return cls
    module = BUILTIN.get(name)
    if module is not None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    else:
        _load_entry_points()
    cls = _REGISTERED.get(name)
    if cls is None:
        known = ", ".join(sorted(available()))
        raise NeffkitError(f"unknown pass '{name}'; known passes: {known}")
    return cls


def available() -> list[str]:
    """Names of every pass that can be run (built-in ones present, and third-party ones)."""
    names = set(_REGISTERED)
    for name, module in BUILTIN.items():
        if name in names:
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    _load_entry_points()
    names |= set(_REGISTERED)
    return sorted(n for n in names if n in _REGISTERED)


def all_passes() -> list[type[Pass]]:
    """Every available pass class, by name."""
    return [_REGISTERED[n] for n in available()]


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
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
        if cls.name not in _REGISTERED:
            register(cls)


def reset_entry_points() -> None:
    """Forgets loaded entry points (tests that install a plugin call this)."""
    global _entry_points_loaded
    _entry_points_loaded = False
