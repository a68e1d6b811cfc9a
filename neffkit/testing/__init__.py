"""Testing kit for pass authors: text before/after checks, hypothesis strategies for random
valid graphs, and property checks for passes.

``check_rewrite`` (one graph before and after, as text) comes from
:mod:`neffkit.testing.rewrite`; ``graphs`` / ``random_feeds`` from
:mod:`neffkit.testing.strategies`; ``check_pass`` (properties over generated graphs) and friends
from :mod:`neffkit.testing.properties`. The last two import hypothesis (a test dependency), so
everything is loaded on first use; ``neffkit.testing.synthetic`` does not need it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "check_rewrite": "neffkit.testing.rewrite",
    "graphs": "neffkit.testing.strategies",
    "random_feeds": "neffkit.testing.strategies",
    "GraphOptions": "neffkit.testing.strategies",
    "check_pass": "neffkit.testing.properties",
    "CheckSummary": "neffkit.testing.properties",
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
