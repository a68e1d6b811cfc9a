"""The ``aten``-node contract (neffkit/ir/aten.py), and passes treating such nodes as opaque:
the default pipeline neither folds, merges nor retypes them, and keeps the recorded types."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from neffkit.errors import VerificationError
from neffkit.ir import Graph, Node, Tensor, TensorType, Value
from neffkit.ir import aten as contract
from neffkit.optimize import optimize

SCHEMA = "aten::special_i0e(Tensor self) -> Tensor"


def test_split_tensor_arg() -> None:
    assert contract.split_tensor_arg("self") == ("self", None)
    assert contract.split_tensor_arg("tensors.3") == ("tensors", 3)
    assert contract.split_tensor_arg("a.b") == ("a.b", None)


def _aten(inputs: list[Value | None], entries: list[str]) -> Node:
    n = Node("special_i0e", inputs, domain=contract.DOMAIN)
    n.set_attr(contract.SCHEMA, SCHEMA)
    n.set_attr(contract.TENSOR_ARGS, entries)
    return n


def test_tensor_args_match_the_inputs() -> None:
    x = Value("x", TensorType(TensorProto.FLOAT, [2]))
    n = _aten([x], ["self"])
    assert contract.is_aten(n) and contract.tensor_args(n) == ["self"]
    with pytest.raises(VerificationError, match="1 inputs but 2 tensor_args entries"):
        contract.tensor_args(_aten([x], ["self", "other"]))
    assert not contract.is_aten(Node("Relu", [x]))


def test_default_pipeline_keeps_aten_nodes_and_their_types() -> None:
    g = Graph("opaque", opset_imports={"": 18, "aten": 1})
    x = g.add_input(Value("x", TensorType(TensorProto.FLOAT, ["n"])))
    c = g.add_initializer(Value("c", TensorType(TensorProto.FLOAT, [3]),
                                const=Tensor(np.array([1.0, 2.0, 3.0], np.float32))))  # fmt: skip
    recorded = TensorType(TensorProto.FLOAT, [None])
    outs = []
    for src in (c, x, x):  # on a constant: not folded; twice on x: not merged
        n = g.append(_aten([src], ["self"]))
        n.outputs[0].type = recorded
        outs.append(n.outputs[0])
    total = g.append(Node("Add", [outs[1], outs[2]])).outputs[0]
    g.set_outputs([outs[0], total])
    result, report = optimize(g, target="torch", verify=False)
    kept = [n for n in result if n.domain == contract.DOMAIN]
    assert len(kept) == 3
    assert [n.outputs[0].type for n in kept] == [recorded] * 3
    assert [n.inputs[0].name for n in kept] == ["c", "x", "x"]
    assert result.opset_imports["aten"] == 1
