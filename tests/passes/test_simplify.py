"""``simplify``, the pass: rules fire inside subgraphs, chained rewrites reach a fixed point in
one run, the ``disable`` option, the pass in a pipeline, and scaling on a 100k-node model.
Each rule's own cases are in ``tests/passes/rewrite/rules/`` (one file per rule module)."""

from __future__ import annotations

import time

import pytest

import neffkit
from neffkit.errors import NeffkitError
from neffkit.ir.text import parse
from neffkit.passes import PassContext, PassManager, PassResult, get_pass
from neffkit.passes.simplify import Simplify
from neffkit.testing.synthetic import synthetic_model
from tests.passes.rewrite.rules.helpers import ONE, ZERO, check, model


def test_rules_fire_inside_a_loop_body() -> None:
    sig = "(int64 n, bool c, float[2,3] x) => (float[2,3] out)"
    before = """
        out = Loop(n, c, x) <body = b (int64 i, bool ci, float[2,3] v) => (bool co, float[2,3] w) {
            co = Identity(ci)
            t = Transpose<perm = [1, 0]>(v)
            u = Transpose<perm = [1, 0]>(t)
            w = Add(u, x)
        }>
    """
    after = """
        out = Loop(n, c, x) <body = b (int64 i, bool ci, float[2,3] v) => (bool co, float[2,3] w) {
            co = Identity(ci)
            w = Add(v, x)
        }>
    """
    check(model(before, sig), model(after, sig))


def test_rules_fire_inside_if_branches() -> None:
    sig = "(bool c, float[2] x) => (float[2] y)"
    before = f"""
        {ONE}
        y = If(c) <then_branch = t () => (float[2] a) {{ a0 = Mul(x, one)  a = Relu(a0) }},
                   else_branch = e () => (float[2] b) {{ b0 = Neg(x)  b1 = Neg(b0)  b = Abs(b1) }}>
    """
    after = """
        y = If(c) <then_branch = t () => (float[2] a) { a = Relu(x) },
                   else_branch = e () => (float[2] b) { b = Abs(x) }>
    """
    r = check(model(before, sig), model(after, sig))
    assert r.stats["drop_mul_one"] == 1 and r.stats["cancel_neg_neg"] == 1


def test_nothing_to_do_leaves_the_graph_alone() -> None:
    sig = "(float[N,4] x, float[4,3] w) => (float[N,3] y)"
    body = "h = MatMul(x, w)\nt = Transpose<perm = [1, 0]>(h)\nr = Relu(t)\ny = Transpose(r)"
    check(model(body, sig))
    check(model("h = MatMul(x, w)\ny = Relu(h)", sig))


def test_chained_rewrites_reach_a_fixed_point_in_one_run() -> None:
    body = f"""
        {ONE}
        {ZERO}
        a = Transpose<perm = [1, 0]>(x)
        b = Identity(a)
        c = Transpose<perm = [1, 0]>(b)
        d = Mul(c, one)
        e = Add(zero, d)
        f = Cast<to = 1>(e)
        y = Dropout(f)
    """
    check(model(body), model("y = Identity(x)"))


def test_disable_option_skips_rules_and_rejects_unknown_names() -> None:
    body = "t = Identity(x)\nu = Transpose<perm = [0, 1]>(t)\ny = Relu(u)"
    after = "u = Transpose<perm = [0, 1]>(x)\ny = Relu(u)"
    check(model(body), model(after), simplify=Simplify(disable="drop_identity_transpose"))
    with pytest.raises(NeffkitError, match="unknown rule"):
        Simplify(disable="no_such_rule").run(parse(model(body)), PassContext())


def test_registered_and_runs_in_a_pipeline_with_numeric_checks() -> None:
    assert get_pass("simplify") is Simplify
    g = parse(model(f"{ONE}\nt = Transpose(x)\nu = Transpose(t)\nv = Mul(u, one)\ny = Relu(v)"))
    report = PassManager("simplify,dce", verify_each=True).run(g)
    assert report.nodes_after == 1


# -- scaling --------------------------------------------------------------------------------------


def _time_simplify(n: int, runs: int) -> tuple[float, PassResult]:
    """Best time of ``runs`` runs on fresh loads of the synthetic model (timing noise only
    ever adds time), and the last result."""
    proto = synthetic_model(n)
    best = float("inf")
    for _ in range(runs):
        g = neffkit.load(proto)
        t = time.perf_counter()
        r = Simplify().run(g, PassContext())
        best = min(best, time.perf_counter() - t)
    return best, r


def test_synthetic_100k_simplifies_in_seconds_and_scales_near_linearly() -> None:
    t10, _ = _time_simplify(10_000, 3)
    t100, r = _time_simplify(100_000, 2)
    print(f"simplify: 10k nodes {t10:.3f} s, 100k nodes {t100:.3f} s, ratio {t100 / t10:.1f}")
    assert r.stats["fuse_transposes"] > 10_000
    assert r.stats["drop_same_shape_reshape"] > 10_000
    assert t100 < 20.0
    assert t100 / t10 < 15
