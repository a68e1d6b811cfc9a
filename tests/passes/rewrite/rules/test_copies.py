"""Rules that drop copies: Identity, Dropout, one-input Concat, no-op Slice / Pad / Expand /
Tile, and Where with a constant condition: before/after, non-cases, numbers, fixed point."""

from __future__ import annotations

import pytest

from .helpers import check, model, model_with, run


def test_identity_removed() -> None:
    r = check(model("t = Identity(x)\ny = Relu(t)"), model("y = Relu(x)"))
    assert r.stats == {"drop_identity": 1, "rewrites": 1, "dead_nodes_removed": 1}


def test_identity_feeding_an_output_gives_its_name_to_the_producer() -> None:
    check(model("t = Relu(x)\ny = Identity(t)"), model("y = Relu(x)"))


def test_identity_from_input_to_output_stays() -> None:
    check(model("y = Identity(x)"))


def test_dropout_removed_opset12_without_training_mode() -> None:
    check(model("t = Dropout(x)\ny = Relu(t)"), model("y = Relu(x)"))


def test_dropout_removed_when_training_mode_is_constant_false() -> None:
    body = """
        r = Constant<value = float {0.5}>()
        f = Constant<value = bool {0}>()
        t = Dropout(x, r, f)
        y = Relu(t)
    """
    check(model(body), model("y = Relu(x)"))


def test_dropout_removed_opset10_ratio_attribute() -> None:
    check(
        model("t = Dropout<ratio = 0.3>(x)\ny = Relu(t)", opset=10), model("y = Relu(x)", opset=10)
    )


def test_dropout_removed_opset6_is_test() -> None:
    # onnxruntime has no Dropout-6 kernel: structure only
    before = model("t = Dropout<is_test = 1>(x)\ny = Relu(t)", opset=6)
    check(before, model("y = Relu(x)", opset=6), numeric=False)


def test_dropout_kept_when_training_mode_is_not_constant() -> None:
    sig = "(float[2,3] x, bool train) => (float[2,3] y)"
    check(model("r = Constant<value = float {0.5}>()\nt = Dropout(x, r, train)\ny = Relu(t)", sig))


def test_dropout_kept_when_mask_is_read() -> None:
    sig = "(float[2,3] x) => (float[2,3] y, bool[2,3] m)"
    check(model("t, m = Dropout(x)\ny = Relu(t)", sig))


def test_dropout_kept_opset6_training() -> None:
    check(model("t = Dropout(x)\ny = Relu(t)", opset=6))


def test_single_input_concat_removed() -> None:
    check(model("t = Concat<axis = 0>(x)\ny = Relu(t)"), model("y = Relu(x)"))


def test_two_input_concat_kept() -> None:
    check(model("y = Concat<axis = 0>(x, x)", "(float[2,3] x) => (float[4,3] y)"))


BIG = 9223372036854775807


@pytest.mark.parametrize(
    ("starts", "ends", "axes"),
    [("0", str(BIG), "1"), ("0, 0", "2, 3", "0, 1"), ("-2", "100", "0"), ("0, -5", "2, 3", None)],
)
def test_noop_slice_removed(starts: str, ends: str, axes: str | None) -> None:
    n = len(starts.split(","))
    lines = [
        f"s = Constant<value = int64[{n}] {{{starts}}}>()",
        f"e = Constant<value = int64[{n}] {{{ends}}}>()",
    ]
    if axes is None:
        lines.append("t = Slice(x, s, e)")  # axes default to 0..n-1, steps to 1
    else:
        ones = ", ".join(["1"] * n)
        lines.append(f"a = Constant<value = int64[{n}] {{{axes}}}>()")
        lines.append(f"one = Constant<value = int64[{n}] {{{ones}}}>()")
        lines.append("t = Slice(x, s, e, a, one)")
    check(model("\n".join(lines) + "\ny = Relu(t)"), model("y = Relu(x)"))


def test_noop_slice_opset9_attributes_removed() -> None:
    body = "t = Slice<starts = [0], ends = [1000], axes = [1]>(x)\ny = Relu(t)"
    check(model(body, opset=9), model("y = Relu(x)", opset=9))


@pytest.mark.parametrize(
    ("sig", "starts", "ends", "steps"),
    [
        ("(float[2,3] x) => (float[2,2] y)", "0", "2", "1"),
        ("(float[2,3] x) => (float[2,3] y)", "-1", str(-BIG), "-1"),
        ("(float[2,N] x) => (float[2,N] y)", "0", str(BIG), "1"),
    ],
)
def test_slice_that_moves_data_kept(sig: str, starts: str, ends: str, steps: str) -> None:
    body = f"""
        s = Constant<value = int64[1] {{{starts}}}>()
        e = Constant<value = int64[1] {{{ends}}}>()
        a = Constant<value = int64[1] {{1}}>()
        st = Constant<value = int64[1] {{{steps}}}>()
        y = Slice(x, s, e, a, st)
    """
    check(model(body, sig))


def test_noop_pad_removed() -> None:
    body = "p = Constant<value = int64[4] {0, 0, 0, 0}>()\nt = Pad(x, p)\ny = Relu(t)"
    check(model(body), model("y = Relu(x)"))
    check(
        model("t = Pad<pads = [0, 0, 0, 0]>(x)\ny = Relu(t)", opset=10),
        model("y = Relu(x)", opset=10),
    )


def test_real_pad_kept() -> None:
    sig = "(float[2,3] x) => (float[2,4] y)"
    check(model("p = Constant<value = int64[4] {0, 1, 0, 0}>()\ny = Pad(x, p)", sig))


@pytest.mark.parametrize(
    "shape", ["int64[2] {1, 3}", "int64[1] {3}", "int64[2] {2, 3}", "int64[0] {}"]
)
def test_noop_expand_removed(shape: str) -> None:
    body = f"s = Constant<value = {shape}>()\nt = Expand(x, s)\ny = Relu(t)"
    check(model(body), model("y = Relu(x)"))


def test_broadcasting_expand_kept() -> None:
    sig = "(float[2,3] x) => (float[2,2,3] y)"
    check(model("s = Constant<value = int64[3] {2, 1, 3}>()\ny = Expand(x, s)", sig))


def test_noop_tile_removed_and_real_tile_kept() -> None:
    body = "r = Constant<value = int64[2] {1, 1}>()\nt = Tile(x, r)\ny = Relu(t)"
    check(model(body), model("y = Relu(x)"))
    sig = "(float[2,3] x) => (float[2,6] y)"
    check(model("r = Constant<value = int64[2] {1, 2}>()\ny = Tile(x, r)", sig))


@pytest.mark.parametrize(("cond", "kept"), [("{0, 0, 0}", "b"), ("{1, 1, 1}", "a")])
def test_where_with_a_constant_condition_picks_one_side(cond: str, kept: str) -> None:
    sig = "(float[2,3] a, float[2,3] b) => (float[2,3] y)"
    before = model_with(sig, f"bool[3] k = {cond}", "w = Where(k, a, b)\ny = Relu(w)")
    after = model_with(sig, f"bool[3] k = {cond}", f"y = Relu({kept})")
    run(before, after)


def test_where_picks_a_scalar_side_only_when_it_has_the_result_shape() -> None:
    sig = "(float[2,3] b) => (float[2,3] y)"
    inits = "bool[1,1] k = {0}, float s = {-10000.0}"
    run(
        model_with(sig, inits, "w = Where(k, s, b)\ny = Relu(w)"),
        model_with(sig, inits, "y = Relu(b)"),
    )
    # all true would pick the scalar: it does not have the result's shape
    inits_true = "bool[1,1] k = {1}, float s = {-10000.0}"
    run(model_with(sig, inits_true, "w = Where(k, s, b)\ny = Relu(w)"), None)


@pytest.mark.parametrize(
    ("sig", "inits"),
    [
        # mixed condition
        ("(float[2,3] a, float[2,3] b) => (float[2,3] y)", "bool[3] k = {0, 1, 0}"),
        # the condition grows the result
        ("(float[3] a, float[3] b) => (float[2,3] y)", "bool[2,3] k = {0, 0, 0, 0, 0, 0}"),
    ],
)
def test_where_kept(sig: str, inits: str) -> None:
    run(model_with(sig, inits, "y = Where(k, a, b)"), None)


def test_where_condition_from_an_input_kept() -> None:
    sig = "(bool[3] k, float[3] a, float[3] b) => (float[3] y)"
    run(model_with(sig, "float[1] unused = {0}", "y = Where(k, a, b)"), None)
