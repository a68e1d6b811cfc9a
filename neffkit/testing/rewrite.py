"""``check_rewrite``: a pass test stated as text, the graph before and the graph after.

The hand-written counterpart of :func:`neffkit.testing.check_pass` (which runs a pass over
generated graphs): one ``before`` graph in ONNX's textual syntax, the ``after`` text the pass
must print, or None for a non-case where it must not fire.
"""

from __future__ import annotations

from neffkit.execution.compare import compare_all, explain
from neffkit.execution.inputs import random_inputs
from neffkit.execution.runner import Runner
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

    Checks the text result, the changed flag, the verifier, numeric agreement on onnxruntime
    (random inputs from the input types, symbolic dims 2; the per-dtype tolerances of
    ``neffkit.execution.compare``), and that a second run changes nothing.

    Returns:
        The graph after the pass, for further checks.

    Raises:
        AssertionError: a check failed; the message says which.
    """
    ctx = ctx or PassContext()
    g = parse(before)
    original = print_body(g)
    feeds = random_inputs(g, default_size=2, ints=(0, 5))
    want = Runner(g, "onnxruntime")(feeds) if numeric else []
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
        got = Runner(g, "onnxruntime")(feeds)
        _expect(len(got) == len(want), f"{len(got)} outputs, {len(want)} before the pass")
        for c in compare_all(want, got, names=[v.name for v in g.outputs]):
            _expect(c.ok, f"output '{c.name}' changed: {explain(c)}")
    again = pass_.run(g, ctx)
    _expect(again.changed is False, f"a second run changed the graph: {again.stats}")
    return g


def _expect(ok: bool, message: str) -> None:
    # An explicit raise, not ``assert``: the checks must hold under ``python -O`` too.
    if not ok:
        raise AssertionError(message)
