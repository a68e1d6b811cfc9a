"""neffkit.dims: --dims text, checks against the model, and the sizes given inputs have."""

from __future__ import annotations

import numpy as np
import onnx.parser
import pytest
from onnx import TensorProto, helper

import neffkit
from neffkit.api import random_inputs
from neffkit.dims import check_dims, format_dims, input_dims, parse_dims, symbolic_dims
from neffkit.errors import NeffkitError
from neffkit.frontends.onnx import load
from neffkit.testing.text import model_text

_TWO = onnx.parser.parse_model(
    model_text("""
    g (float[batch, seq, 4] x, int64[batch, seq] ids, float[?, 2] u) => (float[batch, seq, 4] y) {
        y = Relu(x)
    }
    """, opset=18)
)


def test_parse_dims_reads_names_and_sizes() -> None:
    assert parse_dims("batch=2,seq=16") == {"batch": 2, "seq": 16}
    assert parse_dims(" batch = 2 ") == {"batch": 2}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("batch", "'batch' is not name=value"),
        ("=2", "'=2' is not name=value"),
        ("batch=2,,seq=3", "empty entry"),
        ("batch=two", "the size of 'batch' is 'two', not an integer"),
        ("batch=0", "the size of 'batch' must be positive, got 0"),
        ("batch=-3", "must be positive, got -3"),
        ("batch=2,batch=3", "'batch' is given twice"),
    ],
)
def test_parse_dims_names_the_problem(text: str, match: str) -> None:
    with pytest.raises(NeffkitError, match=match):
        parse_dims(text)


def test_symbolic_dims_and_check() -> None:
    g = load(_TWO)
    assert symbolic_dims(g) == ["batch", "seq"]
    assert check_dims(g, {"seq": 5}) == {"seq": 5}
    want = r"no dim named 'sequence' \(symbolic dims: batch, seq\)"
    with pytest.raises(NeffkitError, match=want):
        check_dims(g, {"sequence": 5})
    with pytest.raises(NeffkitError, match="positive integer"):
        check_dims(g, {"seq": 0})


def test_random_inputs_give_one_size_per_name_and_default_the_rest() -> None:
    g = load(_TWO)
    feeds = random_inputs(g, 0, dims={"batch": 2}, default_size=5)
    assert feeds["x"].shape == (2, 5, 4)
    assert feeds["ids"].shape == (2, 5)  # the same names get the same sizes in every input
    assert feeds["u"].shape == (5, 2)  # an unnamed dim takes the default size
    assert input_dims(g, feeds) == {"batch": 2, "seq": 5}
    assert random_inputs(g, 0)["x"].shape == (1, 1, 4)  # the library default stays 1
    with pytest.raises(NeffkitError, match="no dim named 'b'"):
        random_inputs(g, 0, dims={"b": 2})


def test_format_dims() -> None:
    assert format_dims({"batch": 3, "?": 3}) == "batch=3,?=3"
    assert format_dims({}) == "-"
    assert input_dims(load(_TWO), {"x": np.zeros((3, 7, 4), np.float32)}) == {"batch": 3, "seq": 7}


@pytest.mark.parametrize("dims", [[("batch", 2)], "batch=2", 2])
def test_dims_of_the_wrong_type_are_a_neffkit_error(dims, tmp_path) -> None:
    # a list of pairs or the CLI's text form is not a dict: a clear error, not AttributeError
    path = tmp_path / "m.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    for call in (
        lambda: neffkit.verify(str(path), str(path), dims=dims),
        lambda: neffkit.optimize(str(path), dims=dims),
        lambda: random_inputs(neffkit.load(path), 0, dims=dims),
    ):
        with pytest.raises(NeffkitError, match="dims must be a name -> size dict"):
            call()
