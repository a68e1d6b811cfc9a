"""Conversions the torch lowerings share (neffkit/backends/torch/convert.py): Python names for
ONNX names, Constant node values, arrays to torch and back."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx.parser
import pytest
import torch

from neffkit.backends.torch.convert import (
    Unsupported,
    constant_attr_value,
    py_name,
    to_numpy,
    to_torch,
)
from neffkit.errors import BackendError
from neffkit.frontends.onnx import load


@pytest.mark.parametrize(
    ("hint", "want"),
    [
        ("x", "x"),
        ("conv1/weight:0", "conv1_weight_0"),
        ("0", "v_0"),
        ("", "v"),
        ("class", "class_"),
        ("self", "self_"),
        ("torch", "torch_"),
        ("::", "v"),
    ],
)
def test_py_name_is_a_valid_identifier(hint: str, want: str) -> None:
    assert py_name(hint) == want
    assert want.isidentifier()


def _constant(attr: str) -> np.ndarray:
    model = onnx.parser.parse_model(
        f'<ir_version: 8, opset_import: ["" : 17]>\ng () => (y) {{ y = Constant<{attr}>() }}'
    )
    return constant_attr_value(next(iter(load(model))))


@pytest.mark.parametrize(
    ("attr", "want"),
    [
        ("value = float[2] {1.5, 2}", np.array([1.5, 2], np.float32)),
        ("value_float = 2.5", np.array(2.5, np.float32)),
        ("value_int = 7", np.array(7, np.int64)),
        ("value_floats = [1.0, 2.0]", np.array([1, 2], np.float32)),
        ("value_ints = [3, 4]", np.array([3, 4], np.int64)),
    ],
)
def test_constant_attr_value_reads_every_numeric_form(attr: str, want: np.ndarray) -> None:
    got = _constant(attr)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_a_string_constant_is_unsupported() -> None:
    with pytest.raises(Unsupported):
        _constant('value_string = "a"')
    assert issubclass(Unsupported, BackendError)


def test_bfloat16_and_float8_round_trip() -> None:
    for dt, tdt in ((ml_dtypes.bfloat16, torch.bfloat16), (ml_dtypes.float8_e4m3fn, None)):
        arr = np.array([1.0, -2.5, 0.125], dtype=dt)
        t = to_torch(arr)
        if tdt is not None:
            assert t.dtype == tdt
        back = to_numpy(t)
        assert back.dtype == arr.dtype
        np.testing.assert_array_equal(back.astype(np.float32), arr.astype(np.float32))


def test_to_torch_copies_unless_told_not_to() -> None:
    arr = np.arange(4, dtype=np.float32)
    assert to_torch(arr).data_ptr() != arr.ctypes.data
    assert to_torch(arr, copy=False).data_ptr() == arr.ctypes.data


def test_strings_are_unsupported() -> None:
    with pytest.raises(Unsupported, match="string tensors"):
        to_torch(np.array(["a"]))
