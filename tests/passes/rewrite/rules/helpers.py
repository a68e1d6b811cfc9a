"""Shared by the rule tests: model texts, and ``check``, which runs ``simplify`` through
``neffkit.testing.run_checked`` and checks the text after and the per-rule stats."""

from __future__ import annotations

import numpy as np

from neffkit.ir.text import normalize, parse, print_body
from neffkit.passes import PassContext, PassResult
from neffkit.passes.rewrite.registry import BUILTIN_RULES
from neffkit.passes.simplify import Simplify
from neffkit.testing import check_rewrite, run_checked
from neffkit.testing.text import model_text


def model(body: str, sig: str = "(float[2,3] x) => (float[2,3] y)", opset: int = 17) -> str:
    """A model text: ``m <sig> { <body> }`` at ``opset``."""
    return model_text(f"m {sig} {{\n{body}\n}}", opset=opset)


def check(
    before: str,
    after: str | None = None,
    *,
    ops: list[str] | None = None,
    numeric: bool = True,
    ctx: PassContext | None = None,
    simplify: Simplify | None = None,
) -> PassResult:
    """Runs ``simplify`` on ``before`` through ``run_checked`` and checks the result.

    With ``after`` (text) or ``ops`` (op types in order) the pass must fire, give that graph,
    agree with onnxruntime on the original (random inputs, the per-dtype compare policy) and
    count its rewrites per rule; with neither it must not fire and leave the text unchanged.
    Either way the IR verifies and a second run changes nothing.
    """
    g = parse(before)
    text_before = print_body(g)
    fires = after is not None or ops is not None
    p = simplify or Simplify()
    result = run_checked(p, g, ctx=ctx, numeric=numeric and fires)
    text = print_body(g)
    if not fires:
        assert result.changed is False, result.stats
        assert result.stats == {}
        assert text == text_before
        return result
    assert result.changed is True
    assert result.stats["rewrites"] == sum(v for k, v in result.stats.items() if k in _RULE_NAMES)
    if after is not None:
        assert text == normalize(after)
    if ops is not None:
        assert [n.op_type for n in g] == ops
    return result


_RULE_NAMES = set(BUILTIN_RULES.names())


def tensor(name: str, arr: np.ndarray, dtype: str = "float") -> str:
    """An initializer in text syntax."""
    dims = "[" + ",".join(str(d) for d in arr.shape) + "]" if arr.shape else ""
    conv = float if dtype.startswith(("float", "double")) else int
    values = ", ".join(repr(conv(v)) for v in arr.reshape(-1))
    return f"{dtype}{dims} {name} = {{{values}}}"


ONE = "one = Constant<value = float {1.0}>()"
ZERO = "zero = Constant<value = float {0.0}>()"


W = "float[4,3] w = {0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, 0.9, -1.0, 1.1, 1.2}"
W2 = "float[3,4] v = {0.5, -0.1, 0.2, 0.3, -0.4, 0.6, 0.7, 0.1, 0.2, -0.3, 0.4, 0.9}"
B = "float[3] b = {1, 2, 3}"
B2 = "float[4] c = {-1, 0.5, 2, 1}"


def model_with(sig: str, inits: str, body: str, opset: int = 17) -> str:
    """A model text with initializers: ``m <sig> <inits> { <body> }`` at ``opset``."""
    return model_text(f"m {sig} <{inits}> {{\n{body}\n}}", opset=opset)


def run(text: str, after: str | None) -> None:
    """``check_rewrite`` with ``simplify``."""
    check_rewrite(Simplify(), text, after)


def batchnorm_params(c: int, rng: np.random.Generator) -> tuple[str, str]:
    """BN parameter initializers and the BN input list."""
    inits = [
        tensor("scale", rng.uniform(0.5, 2.0, c).astype(np.float32)),
        tensor("beta", rng.standard_normal(c).astype(np.float32)),
        tensor("mean", rng.standard_normal(c).astype(np.float32)),
        tensor("var", rng.uniform(0.5, 2.0, c).astype(np.float32)),
    ]
    return ", ".join(inits), "scale, beta, mean, var"
