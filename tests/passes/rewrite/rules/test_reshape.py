"""Reshape / Squeeze / Unsqueeze rules and the shape tensors they read."""

from __future__ import annotations

import pytest

from neffkit.testing.text import model_text

from .helpers import check, model

S6 = "s6 = Constant<value = int64[1] {6}>()"
S32 = "s32 = Constant<value = int64[2] {3, 2}>()"


def test_reshape_chain_fuses() -> None:
    sig = "(float[2,3] x) => (float[3,2] y)"
    before = f"{S6}\n{S32}\na = Reshape(x, s6)\ny = Reshape(a, s32)"
    check(model(before, sig), model(f"{S32}\ny = Reshape(x, s32)", sig))


def test_flatten_then_reshape_fuses() -> None:
    sig = "(float[2,3] x) => (float[3,2] y)"
    before = f"{S32}\na = Flatten<axis = 0>(x)\ny = Reshape(a, s32)"
    check(model(before, sig), model(f"{S32}\ny = Reshape(x, s32)", sig))


def test_unsqueeze_and_squeeze_then_reshape_fuse() -> None:
    sig = "(float[2,3] x) => (float[3,2] y)"
    ax = "ax = Constant<value = int64[1] {0}>()"
    chain = "a = Unsqueeze(x, ax)\nb = Squeeze(a, ax)\nc = Unsqueeze(b, ax)\ny = Reshape(c, s32)"
    before = f"{ax}\n{S32}\n{chain}"
    check(model(before, sig), model(f"{S32}\ny = Reshape(x, s32)", sig))


def test_reshape_chain_kept_when_outer_shape_copies_a_dim() -> None:
    sig = "(float[2,3] x) => (float[3,2,1] y)"
    s = "s = Constant<value = int64[3] {0, 2, 1}>()"
    check(model(f"{S32}\n{s}\na = Reshape(x, s32)\ny = Reshape(a, s)", sig))


@pytest.mark.parametrize("target", ["2, 3", "0, -1", "2, -1", "-1, 3"])
def test_reshape_to_same_shape_removed(target: str) -> None:
    n = len(target.split(","))
    body = f"s = Constant<value = int64[{n}] {{{target}}}>()\na = Reshape(x, s)\ny = Relu(a)"
    check(model(body), model("y = Relu(x)"))


def test_reshape_to_same_symbolic_shape_removed() -> None:
    sig = "(float[N,3] x) => (float[N,3] y)"
    body = "s = Constant<value = int64[2] {-1, 3}>()\na = Reshape(x, s)\ny = Relu(a)"
    check(model(body, sig), model("y = Relu(x)", sig))


def test_reshape_to_other_shape_kept() -> None:
    check(model(f"{S32}\ny = Reshape(x, s32)", "(float[2,3] x) => (float[3,2] y)"))
    sig = "(float[N,3] x) => (float[3,N] y)"
    check(model("s = Constant<value = int64[2] {3, -1}>()\ny = Reshape(x, s)", sig))
    sig = "(float[] x) => (float[2,3] y)"
    check(model("s = Constant<value = int64[2] {2, 3}>()\ny = Reshape(x, s)", sig))


def test_squeeze_of_unsqueeze_cancels_opset13() -> None:
    ax = "ax = Constant<value = int64[1] {1}>()"
    check(
        model(f"{ax}\na = Unsqueeze(x, ax)\nb = Squeeze(a, ax)\ny = Relu(b)"), model("y = Relu(x)")
    )


def test_unsqueeze_of_squeeze_cancels_opset11_attributes() -> None:
    sig = "(float[1,3] x) => (float[1,3] y)"
    body = "a = Squeeze<axes = [0]>(x)\nb = Unsqueeze<axes = [0]>(a)\ny = Relu(b)"
    check(model(body, sig, opset=11), model("y = Relu(x)", sig, opset=11))


def test_squeeze_unsqueeze_negative_axes_cancel() -> None:
    body = """
        m1 = Constant<value = int64[1] {-1}>()
        two = Constant<value = int64[1] {2}>()
        a = Unsqueeze(x, m1)
        b = Squeeze(a, two)
        y = Relu(b)
    """
    check(model(body), model("y = Relu(x)"))


def test_squeeze_unsqueeze_other_axes_kept() -> None:
    sig = "(float[2,1] x) => (float[1,2] y)"
    body = """
        a0 = Constant<value = int64[1] {0}>()
        a2 = Constant<value = int64[1] {2}>()
        a = Unsqueeze(x, a0)
        y = Squeeze(a, a2)
    """
    check(model(body, sig))
    check(model("a = Unsqueeze<axes = [0]>(x)\ny = Squeeze(a)", sig, opset=11))


SHAPE_PIECES = """
    s = Shape(x)
    i = Constant<value = int64 {1}>()
    t = Gather<axis = 0>(s, i)
    ax = Constant<value = int64[1] {0}>()
    u = Unsqueeze(t, ax)
"""
RS_SIG = "(float[1,T,8] x) => (float[1,T,2,4] y)"


def test_reshape_target_from_shape_pieces_becomes_a_constant() -> None:
    before = f"""{SHAPE_PIECES}
        one = Constant<value = int64[1] {{1}}>()
        tail = Constant<value = int64[2] {{2, 4}}>()
        c = Concat<axis = 0>(one, u, tail)
        y = Reshape(x, c)
    """
    after = f"{RS_SIG} <int64[4] y_shape = {{1, -1, 2, 4}}> {{ y = Reshape(x, y_shape) }}"
    r = check(model(before, RS_SIG), model_text(f"m {after}"))
    assert r.stats["constant_reshape_target"] == 1


@pytest.mark.parametrize(
    ("sig", "pieces", "target"),
    [
        # through Cast: int32 pieces, the shape cast to int64
        (
            RS_SIG,
            "a = Constant<value = int32[1] {1}>()\nb = Constant<value = int32[2] {2, 4}>()\n"
            "u32 = Cast<to = 6>(u)\nc32 = Concat<axis = 0>(a, u32, b)\nc = Cast<to = 7>(c32)",
            "1, -1, 2, 4",
        ),
        # every piece known (the dim gathered is static): no -1 needed
        (
            "(float[1,8,T] x) => (float[8,T] y)",
            "m = Constant<value = int64[1] {-1}>()\nc = Concat<axis = 0>(u, m)",
            "8, -1",
        ),
        # a 0 (allowzero=0) copies a static nonzero dim of x
        (
            RS_SIG,
            "z = Constant<value = int64[1] {0}>()\nb = Constant<value = int64[2] {2, 4}>()\n"
            "c = Concat<axis = 0>(z, u, b)",
            "0, -1, 2, 4",
        ),
    ],
)
def test_reshape_target_variants(sig: str, pieces: str, target: str) -> None:
    n = len(target.split(","))
    before = f"{SHAPE_PIECES}\n{pieces}\ny = Reshape(x, c)"
    after = f"{sig} <int64[{n}] y_shape = {{{target}}}> {{ y = Reshape(x, y_shape) }}"
    check(model(before, sig), model_text(f"m {after}"))


@pytest.mark.parametrize(
    ("sig", "pieces", "allowzero"),
    [
        # two unknown pieces
        (
            "(float[N,T,8] x) => (float[N,T,2,4] y)",
            "i0 = Constant<value = int64 {0}>()\nn = Gather<axis = 0>(s, i0)\n"
            "un = Unsqueeze(n, ax)\nb = Constant<value = int64[2] {2, 4}>()\n"
            "c = Concat<axis = 0>(un, u, b)",
            0,
        ),
        # allowzero=1 with an explicit 0 piece: -1 cannot go with it
        (
            RS_SIG,
            "z = Constant<value = int64[1] {0}>()\nb = Constant<value = int64[2] {2, 4}>()\n"
            "c = Concat<axis = 0>(z, u, b)",
            1,
        ),
        # a 0 that copies a symbolic dim, which may be 0: -1 would be undetermined
        (
            "(float[N,T,8] x) => (float[N,T,2,4] y)",
            "z = Constant<value = int64[1] {0}>()\nb = Constant<value = int64[2] {2, 4}>()\n"
            "c = Concat<axis = 0>(z, u, b)",
            0,
        ),
        # a -1 already there besides the unknown piece
        (
            RS_SIG,
            "m = Constant<value = int64[1] {-1}>()\nb = Constant<value = int64[2] {2, 4}>()\n"
            "c = Concat<axis = 0>(m, u, b)",
            0,
        ),
        # a piece of unknown length
        (
            "(float[1,T,8] x, int64[K] p) => (float[1,T,2,4] y)",
            "b = Constant<value = int64[2] {2, 4}>()\nc = Concat<axis = 0>(p, u, b)",
            0,
        ),
    ],
)
def test_reshape_target_kept(sig: str, pieces: str, allowzero: int) -> None:
    body = f"{SHAPE_PIECES}\n{pieces}\ny = Reshape<allowzero = {allowzero}>(x, c)"
    check(model(body, sig))


def test_gather_of_a_static_dim_becomes_a_constant() -> None:
    sig = "(float[1,T,8] x) => (int64[2] y)"
    before = """
        s = Shape(x)
        i = Constant<value = int64[2] {0, -1}>()
        d = Gather<axis = 0>(s, i)
        y = Add(d, d)
    """
    after = f"{sig} <int64[2] d_value = {{1, 8}}> {{ y = Add(d_value, d_value) }}"
    r = check(model(before, sig), model_text(f"m {after}"))
    assert r.stats["fold_gather_of_shape"] == 1


def test_gather_of_shape_kept_for_a_symbolic_dim_or_an_output() -> None:
    body = "s = Shape(x)\ni = Constant<value = int64 {1}>()\nd = Gather(s, i)\ny = Neg(d)"
    check(model(body, "(float[1,T,8] x) => (int64 y)"))
    body = "s = Shape(x)\ni = Constant<value = int64 {0}>()\ny = Gather(s, i)"
    check(model(body, "(float[1,T,8] x) => (int64 y)"))


def _ax(name: str, axes: str) -> str:
    return f"{name} = Constant<value = int64[{len(axes.split(','))}] {{{axes}}}>()"


@pytest.mark.parametrize(
    ("a1", "a2", "sig", "axes"),
    [
        ("0", "3", "(float[2,3] x) => (float[1,2,3,1] y)", "0, 3"),
        ("-1", "-4", "(float[2,3] x) => (float[1,2,3,1] y)", "0, 3"),
        ("1", "2", "(float[1,5] x) => (float[1,1,1,5] y)", "1, 2"),  # BERT's attention mask
        ("0, 2", "1", "(float[3] x) => (float[1,1,3,1] y)", "0, 1, 3"),
    ],
)
def test_unsqueeze_chain_fuses(a1: str, a2: str, sig: str, axes: str) -> None:
    before = f"{_ax('a1', a1)}\n{_ax('a2', a2)}\nu = Unsqueeze(x, a1)\ny = Unsqueeze(u, a2)"
    n = len(axes.split(","))
    after = f"{sig} <int64[{n}] y_axes = {{{axes}}}> {{ y = Unsqueeze(x, y_axes) }}"
    r = check(model(before, sig), model_text(f"m {after}"))
    assert r.stats["fuse_unsqueezes"] == 1


def test_unsqueeze_chain_fuses_opset11_attributes() -> None:
    sig = "(float[2,3] x) => (float[1,2,3,1] y)"
    before = "u = Unsqueeze<axes = [-1]>(x)\ny = Unsqueeze<axes = [0]>(u)"
    after = "y = Unsqueeze<axes = [0, 3]>(x)"
    check(model(before, sig, opset=11), model(after, sig, opset=11))


def test_unsqueeze_chain_kept() -> None:
    sig = "(float[2,3] x) => (float[1,2,3,1] y, float[2,3,1] z)"
    body = f"{_ax('a1', '2')}\n{_ax('a2', '0')}\nu = Unsqueeze(x, a1)\ny = Unsqueeze(u, a2)"
    check(model(f"{body}\nz = Neg(u)", sig))  # the inner result is read elsewhere
    sig = "(float[] x) => (float[] y)"
    check(model(body.replace("{2}", "{-1}"), sig))  # a negative axis on an unknown rank


@pytest.mark.parametrize(("a1", "a2"), [("0", "1"), ("-2", "-3"), ("2", "0"), ("0", None)])
def test_squeeze_chain_fuses(a1: str, a2: str | None) -> None:
    sig = "(float[1,2,1,3] x) => (float[2,3] y)"
    lines = [_ax("a1", a1), "u = Squeeze(x, a1)"]
    lines += ["y = Squeeze(u)"] if a2 is None else [_ax("a2", a2), "y = Squeeze(u, a2)"]
    after = f"{sig} <int64[2] y_axes = {{0, 2}}> {{ y = Squeeze(x, y_axes) }}"
    r = check(model("\n".join(lines), sig), model_text(f"m {after}"))
    assert r.stats["fuse_squeezes"] == 1


def test_squeeze_chain_fuses_opset11_attributes() -> None:
    sig = "(float[1,2,1,3] x) => (float[2,3] y)"
    before = "u = Squeeze<axes = [2]>(x)\ny = Squeeze<axes = [0]>(u)"
    check(model(before, sig, opset=11), model("y = Squeeze<axes = [0, 2]>(x)", sig, opset=11))


def test_squeeze_chain_kept() -> None:
    sig = "(float[1,2,1,3] x) => (float[2,3] y, float[2,1,3] z)"
    body = f"{_ax('a1', '0')}\n{_ax('a2', '1')}\nu = Squeeze(x, a1)\ny = Squeeze(u, a2)"
    check(model(f"{body}\nz = Neg(u)", sig))  # the inner result is read elsewhere
    sig = "(float[] x) => (float[] y)"
    check(model(body.replace("{0}", "{-4}"), sig))  # a negative axis on an unknown rank
    sig = "(float[1,N,1,3] x) => (float[N,3] y)"
    check(model(f"{_ax('a1', '0')}\nu = Squeeze(x, a1)\ny = Squeeze(u)", sig))  # N may be 1
