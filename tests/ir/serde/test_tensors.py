"""``sparse_to_dense``: a sparse tensor's indices, dims and dense size are checked before it
is expanded, in one or two dimensional index form, and loading a model runs the checks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import neffkit
from neffkit.errors import FrontendError
from neffkit.ir.serde.tensors import MAX_DENSE_BYTES, sparse_to_dense
from tests.helpers import save_model

N = 8


def _sparse(values: list[float], idx: list, dims: list[int]) -> onnx.SparseTensorProto:
    sp = onnx.SparseTensorProto()
    sp.values.CopyFrom(numpy_helper.from_array(np.array(values, np.float32), "s"))
    sp.indices.CopyFrom(numpy_helper.from_array(np.array(idx, np.int64), "s_idx"))
    sp.dims.extend(dims)
    return sp


def _inline(idx: list[int] | None = None, dims: list[int] | None = None) -> onnx.SparseTensorProto:
    return _sparse([1.0, 2.0], [1, 5] if idx is None else idx, [N] if dims is None else dims)


@pytest.mark.parametrize(
    ("sparse", "match"),
    [
        (_inline(idx=[1, 8]), r"index 8 \(entry 1\) is out of range for dims \[8\]"),
        (_inline(idx=[-1, 2]), "index -1 .*out of range"),
        (_inline(idx=[1, 2, 3]), r"indices have shape \[3\], expected \[2\] or \[2, 1\]"),
        (_inline(dims=[2**20, 2**20]), "needs 4398046511104 bytes, more than"),
        (_inline(dims=[-8]), "negative dimension"),
    ],
)
def test_malformed_sparse_initializers_are_clear_errors(tmp_path, sparse, match) -> None:
    with pytest.raises(FrontendError, match=f"m.onnx: sparse tensor 's'.*{match}"):
        sparse_to_dense(sparse, "m.onnx")
    with pytest.raises(FrontendError, match=f"sparse tensor 's'.*{match}"):
        sparse_to_dense(sparse, "m.onnx", check_only=True)
    # loading a model runs the same checks on its sparse initializers
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "s"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [N])],
        sparse_initializer=[sparse],
    )
    path = save_model(tmp_path / "m.onnx", helper.make_model(g))
    with pytest.raises(FrontendError, match=f"sparse tensor 's'.*{match}"):
        neffkit.load(path)


def test_two_dimensional_sparse_indices_are_checked_per_axis() -> None:
    dense = sparse_to_dense(_sparse([1.0, 2.0], [[0, 3], [1, 0]], [2, 4]), "m.onnx")
    assert dense[0, 3] == 1.0 and dense[1, 0] == 2.0 and dense.sum() == 3.0
    with pytest.raises(FrontendError, match=r"index \[0, 4\] .*out of range"):
        sparse_to_dense(_sparse([1.0, 2.0], [[0, 4], [1, 0]], [2, 4]), "m.onnx")


def test_flat_indices_place_the_values_and_check_only_expands_nothing() -> None:
    dense = sparse_to_dense(_inline(), "m.onnx")
    want = np.zeros(N, np.float32)
    want[[1, 5]] = [1.0, 2.0]
    assert dense.dtype == np.float32 and np.array_equal(dense, want)
    assert sparse_to_dense(_inline(), "m.onnx", check_only=True) is None


def test_no_values_give_zeros() -> None:
    dense = sparse_to_dense(_sparse([], np.zeros((0, 2), np.int64).tolist(), [2, 3]), "m")
    assert dense.shape == (2, 3) and not dense.any()


def test_external_data_is_refused_without_a_file() -> None:
    sp = _inline()
    sp.values.data_location = TensorProto.EXTERNAL
    with pytest.raises(FrontendError, match="stores data externally but was not loaded"):
        sparse_to_dense(sp, "m.onnx")


def test_float_indices_are_refused() -> None:
    sp = _inline()
    sp.indices.CopyFrom(numpy_helper.from_array(np.array([1.0, 5.0], np.float32), "s_idx"))
    with pytest.raises(FrontendError, match="indices have type float32, expected int64"):
        sparse_to_dense(sp, "m.onnx")


def test_the_size_limit_is_in_bytes_of_the_dense_form() -> None:
    # float32: MAX_DENSE_BYTES / 4 elements fit; one more element does not
    fits = MAX_DENSE_BYTES // 4
    with pytest.raises(FrontendError, match=f"needs {(fits + 1) * 4} bytes"):
        sparse_to_dense(_inline(dims=[fits + 1]), "m.onnx", check_only=True)
    assert sparse_to_dense(_inline(dims=[fits]), "m.onnx", check_only=True) is None
