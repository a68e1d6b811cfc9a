"""Transpose rules: composed and identity permutations."""

from __future__ import annotations

from .helpers import check, model


def test_transpose_pair_with_identity_composition_removed() -> None:
    body = "t = Transpose<perm = [1, 0]>(x)\nu = Transpose<perm = [1, 0]>(t)\ny = Relu(u)"
    r = check(model(body), model("y = Relu(x)"))
    assert r.stats["fuse_transposes"] == 1


def test_transpose_pair_fuses_into_one() -> None:
    sig = "(float[2,3,4] x) => (float[4,2,3] y)"
    body = "t = Transpose<perm = [1, 2, 0]>(x)\ny = Transpose<perm = [1, 2, 0]>(t)"
    check(model(body, sig), model("y = Transpose<perm = [2, 0, 1]>(x)", sig))


def test_default_perm_transposes_cancel_when_rank_known() -> None:
    check(model("t = Transpose(x)\nu = Transpose(t)\ny = Relu(u)"), model("y = Relu(x)"))


def test_identity_perm_transpose_removed() -> None:
    check(model("t = Transpose<perm = [0, 1]>(x)\ny = Relu(t)"), model("y = Relu(x)"))


def test_transpose_kept_when_rank_unknown_or_perm_not_identity() -> None:
    check(model("t = Transpose(x)\nu = Transpose(t)\ny = Relu(u)", "(float[] x) => (float[] y)"))
    check(model("y = Transpose<perm = [1, 0]>(x)", "(float[2,3] x) => (float[3,2] y)"))


def test_shared_inner_transpose_stays_for_its_other_reader() -> None:
    sig = "(float[2,3] x) => (float[2,3] y, float[3,2] z)"
    body = (
        "t = Transpose<perm = [1, 0]>(x)\nu = Transpose<perm = [1, 0]>(t)\ny = Relu(u)\nz = Neg(t)"
    )
    after = "t = Transpose<perm = [1, 0]>(x)\ny = Relu(x)\nz = Neg(t)"
    check(model(body, sig), model(after, sig))
