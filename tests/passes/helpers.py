"""Shared checks for pass tests: text before/after, the changed flag, numbers, idempotence."""

from __future__ import annotations

import numpy as np

from neffkit.backends import onnxruntime as ort_backend
from neffkit.ir.core import Graph
from neffkit.ir.text import normalize, parse, print_body
from neffkit.ir.verifier import verify
from neffkit.passes import Pass, PassContext


def feeds_for(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs from the graph's (static) input types."""
    from neffkit.ir.tensor import np_dtype

    rng = np.random.default_rng(seed)
    out = {}
    for v in graph.inputs:
        if v.const is not None:
            continue
        shape = [d if isinstance(d, int) else 2 for d in (v.shape or ())]
        dt = np_dtype(v.dtype)
        if dt.kind == "f":
            out[v.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            out[v.name] = np.asarray(rng.random(shape) > 0.5)
        else:
            out[v.name] = rng.integers(0, 5, shape).astype(dt)
    return out


def check_pass(
    p: Pass,
    before: str,
    after: str | None,
    *,
    ctx: PassContext | None = None,
    numeric: bool = True,
) -> Graph:
    """Runs ``p`` on ``before``; ``after`` None means the pass must not fire.

    Asserts the text result, the changed flag, the verifier, numeric agreement with
    onnxruntime, and that a second run changes nothing.
    """
    ctx = ctx or PassContext()
    g = parse(before)
    original = print_body(g)
    feeds = feeds_for(g)
    want = ort_backend.run(g, feeds) if numeric else None
    result = p.run(g, ctx)
    verify(g)
    if after is None:
        assert result.changed is False, result.stats
        assert print_body(g) == original
    else:
        assert result.changed is True
        assert print_body(g) == normalize(after), print_body(g)
    if numeric:
        got = ort_backend.run(g, feeds)
        for w, o in zip(want, got):
            np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)
    again = p.run(g, ctx)
    assert again.changed is False, f"second run changed the graph: {again.stats}"
    return g
