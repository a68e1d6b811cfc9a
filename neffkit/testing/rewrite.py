"""``check_rewrite``: a pass test stated as text, the graph before and the graph after.

The hand-written counterpart of :func:`neffkit.testing.check_pass` (which runs a pass over
generated graphs): one ``before`` graph in ONNX's textual syntax, the ``after`` text the pass
must print, or None for a non-case where it must not fire.
"""

from __future__ import annotations

import numpy as np

from neffkit.ir.core import Graph
from neffkit.ir.text import normalize, parse, print_body
from neffkit.ir.verifier import verify
from neffkit.passes import Pass, PassContext


def check_rewrite(
    pass_: Pass,
    before: str,
    after: str | None,
    *,
    ctx: PassContext | None = None,
    numeric: bool = True,
) -> Graph:
    """Runs ``pass_`` on ``before``; ``after`` None means the pass must not fire.

    Checks the text result, the changed flag, the verifier, numeric agreement with
    onnxruntime (random inputs from the input types), and that a second run changes nothing.

    Returns:
        The graph after the pass, for further checks.

    Raises:
        AssertionError: a check failed; the message says which.
    """
    from neffkit.backends import onnxruntime as ort_backend

    ctx = ctx or PassContext()
    g = parse(before)
    original = print_body(g)
    feeds = random_inputs(g)
    want = ort_backend.run(g, feeds) if numeric else None
    result = pass_.run(g, ctx)
    verify(g)
    got_text = print_body(g)
    if after is None:
        _expect(result.changed is False, f"the pass must not fire; changed: {result.stats}")
        _expect(got_text == original, f"changed=False but the graph changed:\n{got_text}")
    else:
        _expect(result.changed is True, f"the pass did not fire: {result}")
        _expect(got_text == normalize(after), f"the graph after the pass is:\n{got_text}")
    if numeric:
        got = ort_backend.run(g, feeds)
        for w, o in zip(want, got, strict=True):
            np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)
    again = pass_.run(g, ctx)
    _expect(again.changed is False, f"a second run changed the graph: {again.stats}")
    return g


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs from the graph's input types; a symbolic dim becomes 2."""
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


def _expect(ok: bool, message: str) -> None:
    # An explicit raise, not ``assert``: the checks must hold under ``python -O`` too.
    if not ok:
        raise AssertionError(message)
