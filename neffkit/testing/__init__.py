"""Testing kit: hypothesis strategies for random valid graphs and property checks for passes.

``graphs`` / ``random_feeds`` come from :mod:`neffkit.testing.strategies`, ``check_pass`` and
friends from :mod:`neffkit.testing.properties`. They import hypothesis (a test dependency), so
they are loaded on first use; ``neffkit.testing.synthetic`` and the other helpers do not need it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "graphs": "neffkit.testing.strategies",
    "random_feeds": "neffkit.testing.strategies",
    "GraphOptions": "neffkit.testing.strategies",
    "check_pass": "neffkit.testing.properties",
    "check_graph": "neffkit.testing.properties",
    "check_backend": "neffkit.testing.properties",
    "PropertyFailure": "neffkit.testing.properties",
    "GeneratorError": "neffkit.testing.properties",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'neffkit.testing' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
