"""Torch lowering of ``aten``-domain nodes (neffkit/backends/torch/ops/aten.py): TorchScript
operators with no ONNX form, lifted by the TorchScript frontend, run as they are; the lowered
module scripts; the contract survives an ONNX round trip (bools come back as ints)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from onnx import TensorProto

from neffkit.backends.torch import to_torchscript
from neffkit.backends.torch.lowering import lower_graph
from neffkit.errors import BackendError
from neffkit.execution import Runner
from neffkit.frontends.torchscript import load_torchscript
from neffkit.ir import Graph, Node, Tensor, TensorType, Value
from neffkit.ir.serde import decode_model, to_onnx

nn = torch.nn


class Special(nn.Module):
    """Ops with no ONNX form: a special function, a Scalar overload, a dtype keyword."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.special.i0e(x) + torch.special.xlogy(x, 2.0)
        return y + torch.cumprod(x, 1, dtype=torch.float64).float() + torch.logcumsumexp(x, 2)


def _round_trip(graph: Graph) -> Graph:
    return decode_model(to_onnx(graph))


@pytest.mark.parametrize("examples", [True, False])
def test_special_ops_lifted_run_as_the_module(examples: bool) -> None:
    x = torch.rand(2, 5, 6) + 0.1
    # without example inputs the output dtypes come from a meta run (cumprod's is float64)
    graph = load_torchscript(torch.jit.script(Special()), example_inputs=(x,) if examples else None)
    ops = sorted(n.op_type for n in graph if n.domain == "aten")
    assert ops == ["cumprod", "logcumsumexp", "special_i0e", "xlogy"]
    want = Special()(x).numpy()
    for g in (graph, _round_trip(graph)):
        np.testing.assert_allclose(Runner(g, "torch")([x.numpy()])[0], want, rtol=1e-5)
    module, how = to_torchscript(graph)
    assert how == "script"
    assert "torch.ops.aten.xlogy(x, 2.0)" in lower_graph(graph).code
    np.testing.assert_allclose(module(x)[0].numpy(), want, rtol=1e-5)


def test_fused_transformer_layer_from_a_trace_runs() -> None:
    # traced with the fast path on: one aten::_transformer_encoder_layer_fwd, no ONNX form
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, activation="gelu").eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        traced = torch.jit.trace(layer, (x,))
        want = layer(x).numpy()
    graph = load_torchscript(traced, example_inputs=(x,))
    assert [n.op_type for n in graph] == ["_transformer_encoder_layer_fwd"]
    back = _round_trip(graph)
    assert back.nodes[0].attr("use_gelu") == 1  # a bool comes back from ONNX as an int
    for g in (graph, back):
        got = Runner(g, "torch")([x.numpy()])[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    module, how = to_torchscript(back)
    assert how == "script"
    with torch.no_grad():
        np.testing.assert_allclose(module(x)[0].numpy(), want, rtol=1e-4, atol=1e-5)


# -- hand-built nodes: every way an argument can arrive ------------------------------------------


def _graph(inputs: list[tuple[str, int, list[Any] | None]]) -> tuple[Graph, list[Value]]:
    g = Graph("aten_test", opset_imports={"": 18, "aten": 1})
    return g, [g.add_input(Value(n, TensorType(dt, shape))) for n, dt, shape in inputs]


def _aten(g: Graph, schema: str, inputs: list[Value], tensor_args: list[str],
          outputs: int = 1, **attrs: Any) -> list[Value]:  # fmt: skip
    op = schema.split("(")[0].split("::")[1].split(".")[0]
    n = Node(op, inputs, domain="aten", num_outputs=outputs)
    n.set_attr("schema", schema)
    n.set_attr("tensor_args", tensor_args)
    for k, v in attrs.items():
        n.set_attr(k, v)
    g.append(n)
    for v in n.outputs:
        v.type = TensorType(TensorProto.FLOAT, None)
    return list(n.outputs)


def _run(g: Graph, feeds: list[np.ndarray]) -> list[np.ndarray]:
    out = Runner(g, "torch")(feeds)
    scripted, how = to_torchscript(g)
    assert how == "script"
    again = scripted(*[torch.from_numpy(f) for f in feeds])
    for a, b in zip(out, again, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    return out


def test_tensor_list_run_time_int_and_keyword_dtype() -> None:
    g, (a, b, d) = _graph([("a", TensorProto.FLOAT, [2, 3]), ("b", TensorProto.FLOAT, [2, 3]),
                           ("d", TensorProto.INT64, [])])  # fmt: skip
    (cat,) = _aten(g, "aten::cat(Tensor[] tensors, int dim=0) -> Tensor", [a, b],
                   ["tensors.0", "tensors.1"], dim=1)  # fmt: skip
    (cum,) = _aten(g, "aten::cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor",
                   [cat, d], ["self", "dim"], dtype=7)  # fmt: skip
    cum.type = TensorType(TensorProto.DOUBLE, None)
    g.set_outputs([cum])
    x, y = np.ones((2, 3), np.float32), np.full((2, 3), 2, np.float32)
    for dim in (0, 1):
        (got,) = _run(g, [x, y, np.array(dim)])
        want = np.cumsum(np.concatenate([x, y], 1), axis=dim, dtype=np.float64)
        np.testing.assert_array_equal(got, want)


def test_multiple_outputs_and_omitted_defaults() -> None:
    g, (x,) = _graph([("x", TensorProto.FLOAT, [3, 4])])
    values, indices = _aten(
        g, "aten::max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, "
        "Tensor indices)", [x], ["self"], outputs=2, dim=1,
    )  # fmt: skip
    indices.type = TensorType(TensorProto.INT64, None)
    g.set_outputs([values, indices])
    data = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    got_values, got_indices = _run(g, [data])
    np.testing.assert_array_equal(got_values, data.max(1))
    np.testing.assert_array_equal(got_indices, data.argmax(1))


def test_keyword_only_argument_after_an_omitted_default() -> None:
    # sum.dim_IntList(self, dim, keepdim=False, *, dtype): keepdim omitted, dtype given
    g, (x,) = _graph([("x", TensorProto.FLOAT, [2, 3])])
    (s,) = _aten(g, "aten::sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, "
                 "ScalarType? dtype=None) -> Tensor", [x], ["self"], dim=[1], dtype=7)  # fmt: skip
    s.type = TensorType(TensorProto.DOUBLE, None)
    g.set_outputs([s])
    (got,) = _run(g, [np.ones((2, 3), np.float32)])
    assert got.dtype == np.float64 and got.tolist() == [3.0, 3.0]


@pytest.mark.parametrize(
    ("schema", "tensor_args", "message"),
    [
        ("aten::no_such_op(Tensor self) -> Tensor", ["self"], "has no operator aten::no_such_op"),
        ("aten::special_i0e.nope(Tensor self) -> Tensor", ["self"], "special_i0e.nope"),
        ("aten::special_i0e(Tensor self) -> Tensor", ["self", "self"], "1 inputs but 2"),
        ("aten::cumsum(Tensor self, int dim) -> Tensor", ["self"], "argument 'dim'"),
        ("not a schema", ["self"], "unreadable schema"),
        # a model file is data: no op that reads files, touches storage or writes its arguments
        (
            "aten::from_file(str filename, bool? shared=None, int? size=0, *, ScalarType? "
            "dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) "
            "-> Tensor",
            [],
            "reaches outside the graph",
        ),
        (
            "aten::add_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)",
            ["self", "other"],
            "writes its arguments",
        ),
        ("aten::resize(Tensor self, SymInt[] size) -> Tensor", ["self"], "outside the graph"),
        (
            "aten::cat(Tensor[] tensors, int dim=0) -> Tensor",
            ["tensors.1000000000"],
            "element 1000000000",
        ),
    ],
)
def test_a_node_the_lowering_cannot_call_is_a_backend_error(
    schema: str, tensor_args: list[str], message: str
) -> None:
    g, (x,) = _graph([("x", TensorProto.FLOAT, [2])])
    n = Node(schema.split("(")[0].split("::")[-1].split(".")[0], [x], domain="aten")
    n.set_attr("schema", schema)
    n.set_attr("tensor_args", tensor_args)
    g.append(n)
    g.set_outputs(list(n.outputs))
    with pytest.raises(BackendError, match=message):
        lower_graph(g)


def test_run_time_int_list_and_constant_int_list_inputs() -> None:
    # an int[] argument computed at run time arrives as a 1-D int64 input; one known while
    # lowering (a constant) reaches torch as Python ints
    g, (x, shape) = _graph([("x", TensorProto.FLOAT, [2, 3]), ("shape", TensorProto.INT64, [2])])
    (y,) = _aten(g, "aten::reshape(Tensor(a) self, SymInt[] shape) -> Tensor(a)", [x, shape],
                 ["self", "shape"])  # fmt: skip
    fixed = g.add_initializer(Value("fixed", TensorType(TensorProto.INT64, [1]),
                                    const=Tensor(np.array([6], np.int64))))  # fmt: skip
    (z,) = _aten(g, "aten::reshape(Tensor(a) self, SymInt[] shape) -> Tensor(a)", [y, fixed],
                 ["self", "shape"])  # fmt: skip
    g.set_outputs([y, z])
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    got_y, got_z = _run(g, [data, np.array([3, 2], np.int64)])
    np.testing.assert_array_equal(got_y, data.reshape(3, 2))
    np.testing.assert_array_equal(got_z, data.reshape(6))
    assert "torch.ops.aten.reshape(reshape, [6])" in lower_graph(g).code
