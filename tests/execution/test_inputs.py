"""Binding inputs to a graph (errors name the input), random inputs (dtype, shape, dims,
ranges, seeds) and ``.npz`` inputs: the one place each is done."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx.parser
import pytest

import neffkit
from neffkit.errors import BackendError, NeffkitError
from neffkit.execution.inputs import bind, check_inputs, npz_inputs, random_inputs, type_str
from neffkit.testing.text import model_text


def _graph(signature: str, body: str = "") -> neffkit.Graph:
    text = model_text(f"g {signature} {{ {body} }}", opset=18, ir_version=9)
    return neffkit.load(onnx.parser.parse_model(text))


N = np.int64(1)
MIXED = _graph(
    "(float[batch,3] f, float16[2] h, bfloat16[2,2] b, int64[batch] i, bool[4] m, "
    "int32[2] attention_mask) => (float[batch,3] y)",
    "y = Identity(f)",
)


def test_bind_matches_a_list_or_a_dict_and_converts_to_arrays() -> None:
    g = _graph("(float[2] x, int64[] n) => (float[2] y)", "y = Identity(x)")
    by_list = bind(g, [np.array([1.0, 2.0], np.float32), np.int64(3)])
    by_dict = bind(g, {"n": np.array(3), "x": np.array([1, 2], np.float32)})
    assert list(by_list) == list(by_dict) == ["x", "n"]  # the graph's order
    assert by_list["n"].shape == () and isinstance(by_list["n"], np.ndarray)


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ({"x": np.zeros(2, np.float32)}, r"missing n\); it takes \['x', 'n'\]"),
        ({"x": 0, "n": 0, "z": 0}, r"unknown z"),
        ([np.zeros(2, np.float32)], r"takes 2 inputs \['x', 'n'\], got 1"),
        ({"x": np.zeros(2), "n": N}, r"input 'x' expects float\[2\], got float64"),
        ({"x": np.zeros(3, np.float32), "n": N}, r"input 'x' expects shape float\[2\], got \[3\]"),
        ({"x": [[1.0], [2.0, 3.0]], "n": np.int64(1)}, r"input 'x' is not an array"),
        ({"x": None, "n": np.int64(1)}, r"input 'x' expects float\[2\], got None"),
        ("x", "inputs must be a list of arrays or a name -> array dict, got str"),
    ],
)  # fmt: skip
def test_bind_errors_name_the_input(inputs, says: str) -> None:
    g = _graph("(float[2] x, int64[] n) => (float[2] y)", "y = Identity(x)")
    with pytest.raises(BackendError, match=says):
        bind(g, inputs)


def test_check_inputs_accepts_symbolic_dims_of_any_size() -> None:
    g = _graph("(float[batch,3] x) => (float[batch,3] y)", "y = Identity(x)")
    check_inputs(g, {"x": np.zeros((7, 3), np.float32)})
    with pytest.raises(BackendError, match=r"input 'x' expects shape float\[batch,3\]"):
        check_inputs(g, {"x": np.zeros((7, 4), np.float32)})
    assert type_str(g.inputs[0].type) == "float[batch,3]"


def test_random_inputs_respect_dtypes_shapes_and_dims() -> None:
    feeds = random_inputs(MIXED, seed=1, dims={"batch": 5})
    assert {k: (v.dtype, v.shape) for k, v in feeds.items()} == {
        "f": (np.dtype(np.float32), (5, 3)),
        "h": (np.dtype(np.float16), (2,)),
        "b": (np.dtype(ml_dtypes.bfloat16), (2, 2)),
        "i": (np.dtype(np.int64), (5,)),
        "m": (np.dtype(bool), (4,)),
        "attention_mask": (np.dtype(np.int32), (2,)),
    }
    assert feeds["i"].min() >= 0 and feeds["i"].max() < 10
    assert (feeds["attention_mask"] == 1).all()  # a mask is all ones
    bind(MIXED, feeds)  # what random_inputs makes always binds
    assert random_inputs(MIXED, seed=1, default_size=4)["f"].shape == (4, 3)


def test_random_inputs_are_the_same_for_a_seed_and_differ_across_seeds() -> None:
    a, b, c = (random_inputs(MIXED, seed=s, dims={"batch": 2}) for s in (3, 3, 4))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["f"], c["f"])


def test_random_inputs_in_given_ranges() -> None:
    feeds = random_inputs(MIXED, seed=0, dims={"batch": 50}, floats=(-2.0, 2.0), ints=(-4, 5))
    assert np.abs(feeds["f"]).max() <= 2.0
    assert feeds["i"].min() >= -4 and feeds["i"].max() <= 4
    assert feeds["i"].min() < 0  # negative values too, with 50 draws


def test_random_inputs_refuse_dims_the_model_lacks_and_bad_sizes() -> None:
    with pytest.raises(NeffkitError, match="seq"):
        random_inputs(MIXED, dims={"seq": 2})
    with pytest.raises(NeffkitError, match="default_size must be positive, got 0"):
        random_inputs(MIXED, default_size=0)


def test_npz_inputs_by_name_and_by_position(tmp_path) -> None:
    g = _graph("(float[2] x, int64[] n) => (float[2] y)", "y = Identity(x)")
    x, n = np.ones(2, np.float32), np.array(4, np.int64)
    np.savez(tmp_path / "named.npz", n=n, x=x)
    np.savez(tmp_path / "positional.npz", x, n)
    for name in ("named.npz", "positional.npz"):
        feeds = npz_inputs(g, tmp_path / name)
        np.testing.assert_array_equal(feeds["x"], x)
    np.savez(tmp_path / "bad.npz", x=x.astype(np.float64), n=n)
    with pytest.raises(NeffkitError, match=r"bad.npz: input 'x' expects float\[2\]"):
        npz_inputs(g, tmp_path / "bad.npz")
