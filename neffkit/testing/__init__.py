"""Testing kit for pass authors: text before/after checks, hypothesis strategies for random
valid graphs, and property checks for passes.

``check_rewrite`` (one graph before and after, as text) and ``run_checked`` (its run, verify,
compare and rerun core) come from :mod:`neffkit.testing.rewrite`; ``model_text`` (a graph's
text with the model header) from :mod:`neffkit.testing.text`; ``graphs`` / ``random_feeds`` from
:mod:`neffkit.testing.strategies` (which draws into the graph builder of
:mod:`neffkit.testing.builder`); ``check_pass`` (properties over generated graphs) and friends
from :mod:`neffkit.testing.properties`; ``reduce_model`` (shrinks a failing ONNX model to a
small reproducer, what ``neffkit reduce`` runs) from :mod:`neffkit.testing.reduce`. The
strategies and properties import hypothesis (a test dependency), so everything is loaded on
first use; ``neffkit.testing.synthetic`` and ``neffkit.testing.reduce`` do not need it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "check_rewrite": "neffkit.testing.rewrite",
    "run_checked": "neffkit.testing.rewrite",
    "PipelinePass": "neffkit.testing.rewrite",
    "graphs": "neffkit.testing.strategies",
    "model_text": "neffkit.testing.text",
    "random_feeds": "neffkit.testing.strategies",
    "loop_graphs": "neffkit.testing.strategies",
    "loop_features": "neffkit.testing.strategies",
    "GraphOptions": "neffkit.testing.strategies",
    "check_pass": "neffkit.testing.properties",
    "CheckSummary": "neffkit.testing.properties",
    "check_graph": "neffkit.testing.properties",
    "check_backend": "neffkit.testing.properties",
    "PropertyFailure": "neffkit.testing.properties",
    "GeneratorError": "neffkit.testing.properties",
    "reduce_model": "neffkit.testing.reduce",
    "Reduction": "neffkit.testing.reduce",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'neffkit.testing' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
