"""Cast rules: exact chains fuse, a Cast to the own type goes."""

from __future__ import annotations

from .helpers import check, model


def test_exact_cast_chain_fuses() -> None:
    sig = "(float16[2,3] x) => (double[2,3] y)"
    assert check(
        model("a = Cast<to = 1>(x)\ny = Cast<to = 11>(a)", sig), model("y = Cast<to = 11>(x)", sig)
    ).changed


def test_int8_through_float16_fuses() -> None:
    sig = "(int8[2,3] x) => (int32[2,3] y)"
    assert check(
        model("a = Cast<to = 10>(x)\ny = Cast<to = 6>(a)", sig), model("y = Cast<to = 6>(x)", sig)
    ).changed


def test_lossy_cast_chain_kept() -> None:
    assert not check(
        model("a = Cast<to = 6>(x)\ny = Cast<to = 1>(a)")
    ).changed  # float -> int32 -> float
    sig = "(int32[2,3] x) => (int64[2,3] y)"
    assert not check(
        model("a = Cast<to = 1>(x)\ny = Cast<to = 7>(a)", sig)
    ).changed  # int32 -> float loses bits


def test_cast_to_own_type_removed() -> None:
    assert check(model("a = Cast<to = 1>(x)\ny = Relu(a)"), model("y = Relu(x)")).changed


def test_double_cast_to_the_same_type_collapses() -> None:
    sig = "(float[2,3] x) => (int32[2,3] y)"
    before = "a = Cast<to = 6>(x)\nb = Cast<to = 6>(a)\ny = Neg(b)"
    assert check(model(before, sig), model("a = Cast<to = 6>(x)\ny = Neg(a)", sig)).changed


def test_type_learned_from_an_output_name_enables_the_cast_rule() -> None:
    # the Identity gives `a` the output's name and type; the Cast before it is revisited
    sig = "(float[2,3] x) => (float[2,3] y, float[2,3] z)"
    before = "a = Relu(x)\nz = Cast<to = 1>(a)\ny = Identity(a)"
    assert check(model(before, sig), model("y = Relu(x)\nz = Identity(y)", sig)).changed


def test_cast_of_unknown_type_kept() -> None:
    assert not check(model("a = Relu(x)\ny = Cast<to = 1>(a)")).changed
