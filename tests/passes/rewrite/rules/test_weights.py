"""Folding constant affine maps into weights: BatchNormalization into Conv / Gemm, per-channel
Mul / Add into Conv, Gemm, MatMul and BatchNormalization."""

from __future__ import annotations

import re

import numpy as np
import pytest

from neffkit.ir.text import parse
from neffkit.passes import PassContext
from neffkit.passes.simplify import Simplify
from neffkit.testing.text import model_text

from .helpers import batchnorm_params, check, model, tensor


def _conv_bn(
    xshape: str, wshape: tuple[int, ...], *, bias: bool, group: int = 1, extra: str = ""
) -> str:
    rng = np.random.default_rng(1)
    m = wshape[0]
    bn_inits, bn_args = batchnorm_params(m, rng)
    inits = [tensor("w", rng.standard_normal(wshape).astype(np.float32)), bn_inits]
    if bias:
        inits.append(tensor("b", rng.standard_normal(m).astype(np.float32)))
    conv_args = "x, w, b" if bias else "x, w"
    pads = ", ".join(["1"] * (2 * (len(wshape) - 2)))
    body = f"""
        c = Conv<group = {group}, pads = [{pads}]>({conv_args})
        y = BatchNormalization<epsilon = 0.001>(c, {bn_args})
        {extra}
    """
    sig = f"(float[{xshape}] x) => (float y)"
    return model_text(f"m {sig} <{', '.join(inits)}> {{{body}}}")


@pytest.mark.parametrize(
    ("xshape", "wshape", "bias", "group"),
    [
        ("1,2,5,5", (3, 2, 3, 3), True, 1),
        ("1,2,5,5", (3, 2, 3, 3), False, 1),
        ("2,4,6", (4, 2, 3), True, 2),
        ("1,2,3,4,4", (2, 1, 3, 3, 3), False, 2),
    ],
)
def test_batchnorm_folds_into_conv(xshape: str, wshape: tuple, bias: bool, group: int) -> None:
    r = check(_conv_bn(xshape, wshape, bias=bias, group=group), ops=["Conv"])
    assert r.stats["fold_batchnorm_into_conv"] == 1


def test_batchnorm_fold_keeps_the_output_name_and_shared_weights() -> None:
    g = parse(_conv_bn("1,2,5,5", (3, 2, 3, 3), bias=True, extra="z = Conv(x, w)"))
    g.add_output(next(n for n in g if n.op_type == "Conv" and len(n.inputs) == 2).outputs[0])
    w_before = g.initializers["w"].const.numpy().copy()
    Simplify().run(g, PassContext())
    assert [v.name for v in g.outputs][0] == "y"
    np.testing.assert_array_equal(g.initializers["w"].const.numpy(), w_before)
    assert [n.op_type for n in g] == ["Conv", "Conv"]


def test_batchnorm_kept_when_conv_output_has_another_reader() -> None:
    text = _conv_bn("1,2,5,5", (3, 2, 3, 3), bias=True, extra="z = Relu(c)")
    text = text.replace("=> (float y)", "=> (float y, float z)")
    check(text)


def test_batchnorm_kept_when_weights_are_an_input() -> None:
    text = _conv_bn("1,2,5,5", (3, 2, 3, 3), bias=False)
    text = text.replace("(float[1,2,5,5] x)", "(float[1,2,5,5] x, float[3,2,3,3] w)")
    check(text.replace(text[text.index("float[3,2,3,3] w =") : text.index("float[3] scale")], ""))


def test_training_batchnorm_kept() -> None:
    text = _conv_bn("1,2,5,5", (3, 2, 3, 3), bias=True)
    check(text.replace("BatchNormalization<", "BatchNormalization<training_mode = 1, "))


def _gemm_bn(trans_b: int, with_c: bool, beta: float = 1.0) -> str:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 4) if trans_b else (4, 5)).astype(np.float32)
    bn_inits, bn_args = batchnorm_params(5, rng)
    inits = [tensor("w", w), bn_inits, tensor("c", rng.standard_normal(5).astype(np.float32))]
    gemm_args = "x, w, c" if with_c else "x, w"
    body = f"""
        g = Gemm<transB = {trans_b}, beta = {beta}>({gemm_args})
        y = BatchNormalization(g, {bn_args})
    """
    sig = "(float[3,4] x) => (float[3,5] y)"
    return model_text(f"m {sig} <{', '.join(inits)}> {{{body}}}")


@pytest.mark.parametrize(
    ("trans_b", "with_c", "beta"), [(0, True, 1.0), (1, True, 0.5), (1, False, 1.0)]
)
def test_batchnorm_folds_into_gemm(trans_b: int, with_c: bool, beta: float) -> None:
    r = check(_gemm_bn(trans_b, with_c, beta), ops=["Gemm"])
    assert r.stats["fold_batchnorm_into_gemm"] == 1


def test_batchnorm_after_gemm_with_input_weights_kept() -> None:
    text = _gemm_bn(0, True).replace("(float[3,4] x)", "(float[3,4] x, float[4,5] w)")
    check(text.replace(text[text.index("float[4,5] w =") : text.index("float[5] scale")], ""))


def test_conv_mul_add_fold_into_the_conv() -> None:
    sig = "(float[1,1,3,3] x) => (float[1,2,3,3] y)"
    before = """
        w = Constant<value = float[2,1,1,1] {1, 2}>()
        b = Constant<value = float[2] {0.5, -1}>()
        s = Constant<value = float[2,1,1] {2, 3}>()
        d = Constant<value = float[2,1,1] {1, 1}>()
        c = Conv(x, w, b)
        m = Mul(c, s)
        y = Add(m, d)
    """
    # W * s = {2, 6}; b * s + d = {2, -2}; the intermediate bias b * s is dropped, not left over
    after = f"""{sig} <float[2,1,1,1] w_mul = {{2, 6}}, float[2] b_mul_add = {{2, -2}}> {{
        y = Conv(x, w_mul, b_mul_add)
    }}"""
    r = check(model(before, sig), model_text(f"m {after}"))
    assert r.stats["fold_mul_into_conv"] == 1 and r.stats["fold_add_into_conv"] == 1


def _conv_affine(
    xshape: str,
    wshape: tuple[int, ...],
    ops: list[tuple[str, tuple[int, ...]]],
    *,
    bias: bool = True,
    group: int = 1,
    swap: bool = False,
    extra: str = "",
    outs: str = "float y",
) -> str:
    """Conv followed by Mul / Add by constants of the given shapes (``swap``: constant first)."""
    rng = np.random.default_rng(6)
    inits = [tensor("w", rng.standard_normal(wshape).astype(np.float32))]
    if bias:
        inits.append(tensor("b", rng.standard_normal(wshape[0]).astype(np.float32)))
    pads = ", ".join(["1"] * (2 * (len(wshape) - 2)))
    lines = [f"c = Conv<group = {group}, pads = [{pads}]>(x, w{', b' if bias else ''})"]
    prev = "c"
    for k, (op, shape) in enumerate(ops):
        inits.append(tensor(f"k{k}", rng.uniform(0.5, 2.0, shape).astype(np.float32)))
        out = "y" if k == len(ops) - 1 else f"t{k}"
        args = f"k{k}, {prev}" if swap else f"{prev}, k{k}"
        lines.append(f"{out} = {op}({args})")
        prev = out
    body = "\n".join(lines + [extra])
    sig = f"(float[{xshape}] x) => ({outs})"
    return model_text(f"m {sig} <{', '.join(inits)}> {{\n{body}\n}}")


@pytest.mark.parametrize(
    ("xshape", "wshape", "ops", "bias", "group", "swap"),
    [
        ("1,2,5,5", (3, 2, 3, 3), [("Mul", (3, 1, 1)), ("Add", (3, 1, 1))], True, 1, False),
        ("1,2,5,5", (3, 2, 3, 3), [("Mul", (1, 3, 1, 1)), ("Add", ())], False, 1, True),
        ("2,4,6", (4, 2, 3), [("Mul", (4, 1)), ("Add", (1,))], True, 2, False),
        ("1,2,5,5", (3, 2, 3, 3), [("Add", (3, 1, 1)), ("Mul", (1, 3, 1, 1))], False, 1, False),
        ("1,2,5,5", (3, 2, 3, 3), [("Mul", ())], True, 1, True),
        ("1,2,3,4,4", (2, 1, 3, 3, 3), [("Add", (2, 1, 1, 1))], False, 2, False),
    ],
)
def test_mul_and_add_fold_into_conv(
    xshape: str, wshape: tuple, ops: list, bias: bool, group: int, swap: bool
) -> None:
    text = _conv_affine(xshape, wshape, ops, bias=bias, group=group, swap=swap)
    check(text, ops=["Conv"])


def test_conv_fold_keeps_shared_weights() -> None:
    text = _conv_affine("1,2,5,5", (3, 2, 3, 3), [("Mul", (3, 1, 1))], extra="z = Conv(x, w, b)")
    g = parse(text.replace("(float y)", "(float y, float z)"))
    w_before = g.initializers["w"].const.numpy().copy()
    Simplify().run(g, PassContext())
    np.testing.assert_array_equal(g.initializers["w"].const.numpy(), w_before)
    assert [n.op_type for n in g] == ["Conv", "Conv"]
    assert [n.inputs[1].name for n in g] == ["w_mul", "w"]


@pytest.mark.parametrize(
    ("xshape", "ops", "extra", "outs"),
    [
        ("1,2,5,5", [("Mul", (1, 1, 5, 5))], "", "float y"),  # per position, not per channel
        ("1,2,3,3", [("Mul", (3,))], "", "float y"),  # along the last axis
        ("1,2,5,5", [("Add", (1, 1, 3, 1, 1))], "", "float y"),  # grows the rank
        ("1,2,5,5", [("Mul", (3, 1, 1))], "z = Relu(c)", "float y, float z"),  # c read twice
    ],
)
def test_conv_mul_add_kept(xshape: str, ops: list, extra: str, outs: str) -> None:
    check(_conv_affine(xshape, (3, 2, 3, 3), ops, extra=extra, outs=outs))


def test_conv_mul_with_input_weights_kept() -> None:
    text = _conv_affine("1,2,5,5", (3, 2, 3, 3), [("Mul", (3, 1, 1))], bias=False)
    text = text.replace("(float[1,2,5,5] x)", "(float[1,2,5,5] x, float[3,2,3,3] w)")
    check(text.replace(text[text.index("float[3,2,3,3] w =") : text.index("float[3,1,1] k0")], ""))


GEMM_SIG = "(float[3,2] x) => (float[3,2] y)"
BW = "bw = Constant<value = float[2,2] {1, 2, 3, 4}>()"
CC = "cc = Constant<value = float[2] {1, -1}>()"
SC = "sc = Constant<value = float[2] {2, 0.5}>()"
D11 = "d = Constant<value = float[1,2] {1, 1}>()"


def test_gemm_mul_add_fold_into_the_gemm() -> None:
    gemm = "g = Gemm<beta = 0.5>(x, bw, cc)\nm = Mul(sc, g)\ny = Add(m, d)"
    before = f"{BW}\n{CC}\n{SC}\n{D11}\n{gemm}"
    # B * c = {2, 1, 6, 2} (columns scaled); beta * C * c + d = 0.5 * {2, -0.5} + 1 = {2, 0.75}
    inits = "float[2,2] bw_mul = {2, 1, 6, 2}, float[1,2] cc_mul_add = {2, 0.75}"
    after = f"{GEMM_SIG} <{inits}> {{ y = Gemm<beta = 1.0>(x, bw_mul, cc_mul_add) }}"
    r = check(model(before, GEMM_SIG), model_text(f"m {after}"))
    assert r.stats["fold_mul_into_gemm"] == 1 and r.stats["fold_add_into_gemm"] == 1


@pytest.mark.parametrize(
    ("gemm", "tail", "ops"),
    [
        ("Gemm<transB = 1>(x, bw, cc)", "m = Mul(g, sc)\ny = Add(d, m)", ["Gemm"]),
        ("Gemm<transB = 1, alpha = 2.0>(x, bw)", "m = Add(g, d)\ny = Mul(m, sc)", ["Gemm"]),
        ("Gemm(x, bw, cm)", "y = Mul(g, sc)", ["Gemm"]),
        ("Gemm<beta = 2.0>(x, bw)", "y = Add(g, sc)", ["Constant", "Gemm"]),  # B stays
    ],
)
def test_mul_and_add_fold_into_gemm(gemm: str, tail: str, ops: list[str]) -> None:
    cm = "cm = Constant<value = float[3,1] {1, 2, 3}>()"
    uses = gemm + tail
    consts = [c for c in (BW, CC, SC, D11, cm) if re.search(rf"\b{c.split()[0]}\b", uses)]
    body = "\n".join([*consts, f"g = {gemm}", tail])
    check(model(body, GEMM_SIG), ops=ops)


@pytest.mark.parametrize(
    "tail",
    [
        "r = Constant<value = float[3,1] {1, 2, 3}>()\ny = Mul(g, r)",  # per row
        "r = Constant<value = float[3,2] {1, 2, 3, 4, 5, 6}>()\ny = Add(g, r)",  # full [M, N]
        "y = Mul(g, x)",  # not a constant
    ],
)
def test_gemm_mul_add_kept(tail: str) -> None:
    check(model(f"{BW}\n{CC}\ng = Gemm(x, bw, cc)\n{tail}", GEMM_SIG))


def test_gemm_mul_kept_when_gemm_output_is_read_twice() -> None:
    sig = "(float[3,2] x) => (float[3,2] y, float[3,2] z)"
    check(model(f"{BW}\n{SC}\ng = Gemm(x, bw)\ny = Mul(g, sc)\nz = Relu(g)", sig))


MM_SIG = "(float[2,3,2] x) => (float[2,3,2] y)"


def test_matmul_mul_folds_into_the_weights() -> None:
    before = f"{BW}\n{SC}\nh = MatMul(x, bw)\ny = Mul(h, sc)"
    after = f"""{MM_SIG} <float[2,2] bw_mul = {{2, 1, 6, 2}}> {{ y = MatMul(x, bw_mul) }}"""
    r = check(model(before, MM_SIG), model_text(f"m {after}"))
    assert r.stats == {"fold_mul_into_matmul": 1, "rewrites": 1, "dead_nodes_removed": 3}


@pytest.mark.parametrize(
    ("sig", "scale"),
    [
        ("(float[2,3,2] x) => (float[2,3,2] y)", "float[1,1,2] {2, 0.5}"),
        ("(float[2] x) => (float[2] y)", "float[2] {2, 0.5}"),  # a vector times B
        ("(float[3,2] x) => (float[3,2] y)", "float {3}"),  # then MatMul -> Gemm is not needed
    ],
)
def test_matmul_mul_fold_shapes(sig: str, scale: str) -> None:
    body = f"{BW}\nsc = Constant<value = {scale}>()\nh = MatMul(x, bw)\ny = Mul(sc, h)"
    check(model(body, sig), ops=["MatMul"])


@pytest.mark.parametrize(
    ("sig", "scale"),
    [
        ("(float[2,3,2] x) => (float[2,3,2] y)", "float[3,1] {1, 2, 3}"),  # per row
        ("(float[3,2] x) => (float[1,3,2] y)", "float[1,1,2] {2, 0.5}"),  # grows the rank
        ("(float[] x) => (float[] y)", "float[1,2] {2, 0.5}"),  # rank of x unknown
    ],
)
def test_matmul_mul_kept(sig: str, scale: str) -> None:
    check(model(f"{BW}\nsc = Constant<value = {scale}>()\nh = MatMul(x, bw)\ny = Mul(h, sc)", sig))


BN_SIG = "(float[1,2,2,2] x) => (float[1,2,2,2] y)"
BN_PARAMS = """
    sc = Constant<value = float[2] {1, 2}>()
    bi = Constant<value = float[2] {0, 1}>()
    mu = Constant<value = float[2] {0.5, -0.5}>()
    va = Constant<value = float[2] {1, 4}>()
"""


def test_batchnorm_mul_add_fold_into_the_batchnorm() -> None:
    before = f"""{BN_PARAMS}
        k = Constant<value = float[2,1,1] {{2, 3}}>()
        d = Constant<value = float[2,1,1] {{1, 1}}>()
        n = BatchNormalization(x, sc, bi, mu, va)
        m = Mul(n, k)
        y = Add(d, m)
    """
    # scale * k = {2, 6}; bias * k + d = {1, 4}
    after = f"""{BN_SIG} <float[2] sc_mul = {{2, 6}}, float[2] bi_mul_add = {{1, 4}}> {{
        mu = Constant<value = float[2] {{0.5, -0.5}}>()
        va = Constant<value = float[2] {{1, 4}}>()
        y = BatchNormalization(x, sc_mul, bi_mul_add, mu, va)
    }}"""
    r = check(model(before, BN_SIG), model_text(f"m {after}"))
    assert r.stats["fold_mul_into_batchnorm"] == 1 and r.stats["fold_add_into_batchnorm"] == 1


def test_conv_batchnorm_mul_add_become_one_conv() -> None:
    s3 = "s3 = Constant<value = float[3,1,1] {2, 3, 4}>()"
    tail = f"{s3}\nm = Mul(y, s3)\nz = Add(m, s3)"
    text = _conv_bn("1,2,5,5", (3, 2, 3, 3), bias=True, extra=tail)
    r = check(text.replace("=> (float y)", "=> (float z)"), ops=["Conv"])
    assert r.stats["fold_batchnorm_into_conv"] == 1


@pytest.mark.parametrize(
    ("sig", "k", "bn_attrs"),
    [
        (BN_SIG, "float[2] {2, 3}", ""),  # along the last axis
        (BN_SIG, "float[1,2,2,2] {1, 2, 3, 4, 5, 6, 7, 8}", ""),  # per element
        ("(float[] x) => (float[] y)", "float[2,1,1] {2, 3}", ""),  # rank of x unknown
        (BN_SIG, "float[2,1,1] {2, 3}", "<training_mode = 1>"),
    ],
)
def test_batchnorm_mul_kept(sig: str, k: str, bn_attrs: str) -> None:
    bn = f"n = BatchNormalization{bn_attrs}(x, sc, bi, mu, va)"
    body = f"{BN_PARAMS}\nk = Constant<value = {k}>()\n{bn}\ny = Mul(n, k)"
    check(model(body, sig))
