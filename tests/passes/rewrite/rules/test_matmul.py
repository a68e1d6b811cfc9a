"""MatMul rules: MatMul + Add -> Gemm, a scalar input scale folded into the weights."""

from __future__ import annotations

import numpy as np
import pytest

from neffkit.ir.text import normalize, parse, print_body
from neffkit.passes import PassContext
from neffkit.passes.simplify import Simplify
from neffkit.testing.text import model_text

from .helpers import B, W, batchnorm_params, check, model_with, run, tensor


def _mm_add(
    sig: str, c: np.ndarray, *, swap: bool = False, extra: str = "", dtype: str = "float"
) -> str:
    rng = np.random.default_rng(3)
    inits = [
        tensor("w", rng.standard_normal((4, 5)).astype(np.float32), dtype),
        tensor("c", c, dtype),
    ]
    add = "y = Add(c, m)" if swap else "y = Add(m, c)"
    body = f"m = MatMul(x, w)\n{add}\n{extra}"
    return model_text(f"m {sig} <{', '.join(inits)}> {{\n{body}\n}}")


SIG_MM = "(float[3,4] x) => (float[3,5] y)"


@pytest.mark.parametrize(
    ("cshape", "swap"),
    [((5,), False), ((1, 5), False), ((3, 5), True), ((3, 1), False), ((), True)],
)
def test_matmul_add_becomes_gemm(cshape: tuple, swap: bool) -> None:
    c = np.random.default_rng(4).standard_normal(cshape).astype(np.float32)
    r = check(_mm_add(SIG_MM, c, swap=swap), ops=["Gemm"])
    assert r.stats["fuse_matmul_add"] == 1


def test_matmul_add_then_batchnorm_becomes_one_gemm() -> None:
    rng = np.random.default_rng(5)
    bn_inits, bn_args = batchnorm_params(5, rng)
    text = _mm_add(SIG_MM.replace("y)", "z)"), rng.standard_normal(5).astype(np.float32))
    text = text.replace("<float[4,5]", f"<{bn_inits}, float[4,5]")
    text = text.replace("y = Add(m, c)", f"y = Add(m, c)\nz = BatchNormalization(y, {bn_args})")
    r = check(text, ops=["Gemm"])
    assert r.stats["fuse_matmul_add"] == 1 and r.stats["fold_batchnorm_into_gemm"] == 1


def test_matmul_add_text() -> None:
    c = np.zeros(5, np.float32) + 0.5
    before = _mm_add(SIG_MM, c)
    g = parse(before)
    Simplify().run(g, PassContext())
    assert print_body(g) == normalize(
        before.replace("m = MatMul(x, w)\ny = Add(m, c)", "y = Gemm(x, w, c)")
    )


@pytest.mark.parametrize(
    ("sig", "cshape", "extra"),
    [
        ("(float[2,3,4] x) => (float[2,3,5] y)", (5,), ""),  # A is 3-D
        ("(float[N,4] x) => (float[N,5] y)", (3, 5), ""),  # C's rows may not match M
        ("(float[3,4] x) => (float[3,5] y, float[3,5] z)", (5,), "z = Neg(m)"),  # MatMul shared
        ("(float[3,4] x) => (float[3,5] y)", (2, 3, 5), ""),  # C grows the result
        ("(float[] x) => (float[] y)", (5,), ""),  # rank of A unknown
    ],
)
def test_matmul_add_kept(sig: str, cshape: tuple, extra: str) -> None:
    c = np.ones(cshape, np.float32)
    check(_mm_add(sig, c + 0.5, extra=extra))


def test_integer_matmul_add_kept() -> None:
    sig = "(int32[3,4] x) => (int32[3,5] y)"
    check(_mm_add(sig, np.ones(5, np.float32), dtype="int32"))


def test_matmul_add_with_input_weights_kept() -> None:
    text = _mm_add(SIG_MM, np.ones(5, np.float32) + 1)
    text = text.replace("(float[3,4] x)", "(float[3,4] x, float[4,5] w)")
    check(text.replace(text[text.index("float[4,5] w =") : text.index("float[5] c")], ""))


@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
def test_scalar_mul_before_a_gemm_folds_into_its_weights(op: str) -> None:
    sig = "(float[2,4] x) => (float[2,3] y)"
    node = "Gemm(h, w, b)" if op == "Gemm" else "MatMul(h, w)"
    after_node = "Gemm(x, w_scaled, b)" if op == "Gemm" else "MatMul(x, w_scaled)"
    inits = f"{W}, {B}, float s = {{0.5}}"
    scaled = "float[4,3] w_scaled = {0.05, -0.1, 0.15, 0.2, 0.25, -0.3, 0.35, 0.4, 0.45, -0.5, "
    scaled += "0.55, 0.6}"
    before = model_with(sig, inits, f"h = Mul(s, x)\ny = {node}")
    after = model_with(sig, f"{inits}, {scaled}", f"y = {after_node}")
    run(before, after)


@pytest.mark.parametrize(
    ("scale", "extra"),
    [
        ("float[4] s = {1, 2, 3, 4}", ""),  # not a scalar
        ("float[1,1,1] s = {0.5}", ""),  # would make x rank 3
        ("float s = {0.5}", "\nz = MatMul(x, w)"),  # w is read by another node too
        ("float s = {0.5}", "\nz = Relu(h)"),  # the Mul output is read by another node too
    ],
)
def test_input_scale_kept(scale: str, extra: str) -> None:
    outs = ", float[2,3] z" if "MatMul" in extra else ", float[2,4] z" if extra else ""
    sig = f"(float[2,4] x) => (float[2,3] y{outs})"
    body = "h = Mul(x, s)\ny = Gemm(h, w, b)" + extra
    if scale.startswith("float[1,1,1]"):
        sig = "(float[2,4] x) => (float[1,2,3] y)"
        body = "h = Mul(x, s)\ny = MatMul(h, w)"
    run(model_with(sig, f"{W}, {B}, {scale}", body), None)
