"""Element types while lowering (neffkit/backends/torch/helpers/dtypes.py)."""

from __future__ import annotations

import numpy as np
import onnx.parser
import pytest
from onnx import TensorProto as TP

import neffkit.backends.torch as tb
from neffkit.backends.torch.convert import Unsupported
from neffkit.backends.torch.helpers.dtypes import torch_dtype
from neffkit.frontends.onnx import load

_F = np.float32


def test_intermediate_dtype_is_inferred() -> None:
    # No value_info: the ReduceSum input's int32 dtype is followed through Abs and Cast.
    model = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 13]>\n'
        "g (float[2,3] x) => (int32[2] y) { a = Constant<value = int64[1] {1}>()\n"
        "c = Cast<to=6>(x)\n b = Abs(c)\n y = ReduceSum<keepdims=0>(b, a) }"
    )
    gm = tb.compile(load(model))
    assert "dtype = torch.int32" in gm.code and "getattr" not in gm.code
    out = tb.run(load(model), [np.array([[1.5, -2, 3], [4, 5, -6]], _F)])[0]
    assert out.dtype == np.int32 and out.tolist() == [6, 15]


def test_an_element_type_torch_lacks_is_unsupported() -> None:
    assert str(torch_dtype(TP.FLOAT16)) == "torch.float16"
    with pytest.raises(Unsupported, match="torch has no dtype for ONNX"):
        torch_dtype(TP.STRING)
