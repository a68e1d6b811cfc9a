"""The frontend reads no byte outside the model's folder, whichever route a tensor takes
(initializer, sparse initializer, tensor and sparse attributes, in subgraphs too). Malformed
sparse tensors: tests/frontends/test_sparse.py."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import AttributeProto, TensorProto, helper, numpy_helper

import neffkit
from neffkit.cli import main
from neffkit.errors import FrontendError

MARKER = b"OUTSIDE-MARKER-7f3a!"
N = 8


def _ext(name: str, dtype: int, dims: list[int], location: str) -> TensorProto:
    tp = TensorProto(name=name, data_type=dtype, dims=dims)
    tp.data_location = TensorProto.EXTERNAL
    e = tp.external_data.add()
    e.key, e.value = "location", location
    return tp


def _sparse(values: TensorProto, indices: TensorProto, dims: list[int]) -> onnx.SparseTensorProto:
    sp = onnx.SparseTensorProto()
    sp.values.CopyFrom(values)
    sp.indices.CopyFrom(indices)
    sp.dims.extend(dims)
    return sp


def _inline_sparse(name: str = "s", idx: list[int] | None = None, dims: list[int] | None = None):
    idx = [1, 5] if idx is None else idx
    values = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), name)
    indices = numpy_helper.from_array(np.array(idx, np.int64), name + "_idx")
    return _sparse(values, indices, [N] if dims is None else dims)


def _model(nodes, inits=(), sparse=(), out: str = "y"):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [N])],
        list(inits),
        sparse_initializer=list(sparse),
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _add_of(name: str) -> list:
    return [helper.make_node("Add", ["x", name], ["y"])]


def _constant(loc: str, name: str = "c") -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=_ext(name, TensorProto.FLOAT, [N], loc))


def _if_with(body_nodes, body_out: str, sparse=()) -> list:
    body = helper.make_graph(
        body_nodes,
        "body",
        [],
        [helper.make_tensor_value_info(body_out, TensorProto.FLOAT, [N])],
        sparse_initializer=list(sparse),
    )
    cond = helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True)))
    return [cond, helper.make_node("If", ["cond"], ["y"], then_branch=body, else_branch=body)]


def _loop_with(body_nodes, body_out: str) -> list:
    body = helper.make_graph(
        body_nodes + [helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info(body_out, TensorProto.FLOAT, [N]),
        ],
    )
    trip = helper.make_node("Constant", [], ["trip"], value=numpy_helper.from_array(np.int64(1)))
    cond = helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True)))
    loop = helper.make_node("Loop", ["trip", "cond"], ["scan"], body=body)
    squeeze = helper.make_node("ReduceSum", ["scan"], ["y"], axes=[0], keepdims=0)
    return [trip, cond, loop, squeeze]


def _routes(loc: str) -> dict[str, onnx.ModelProto]:
    """One model per route by which a tensor can name external data at ``loc``."""
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    idx = numpy_helper.from_array(np.array([1, 5], np.int64), "s_idx")
    vals = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "s")
    sparse_vals = _sparse(_ext("s", f32, [2], loc), idx, [N])
    sparse_idx = _sparse(vals, _ext("s_idx", i64, [2], loc), [N])
    sparse_attr = helper.make_node("Constant", [], ["c"])
    a = sparse_attr.attribute.add()
    a.name, a.type = "sparse_value", AttributeProto.SPARSE_TENSOR
    a.sparse_tensor.CopyFrom(sparse_vals)
    tensors_attr = helper.make_node("Identity", ["x"], ["y"])
    a = tensors_attr.attribute.add()
    a.name, a.type = "tables", AttributeProto.TENSORS
    a.tensors.add().CopyFrom(_ext("t", f32, [N], loc))
    return {
        "dense initializer": _model(_add_of("w"), [_ext("w", f32, [N], loc)]),
        "sparse values": _model(_add_of("s"), sparse=[sparse_vals]),
        "sparse indices": _model(_add_of("s"), sparse=[sparse_idx]),
        "Constant attribute": _model([_constant(loc), *_add_of("c")]),
        "sparse Constant attribute": _model([sparse_attr, *_add_of("c")]),
        "tensors attribute": _model([tensors_attr]),
        "Constant in an If body": _model(_if_with([_constant(loc)], "c")),
        "Constant in a Loop body": _model(_loop_with([_constant(loc)], "c")),
        "sparse initializer in an If body": _model(
            _if_with([helper.make_node("Identity", ["s"], ["o"])], "o", [sparse_vals])
        ),
    }


@pytest.fixture
def folders(tmp_path):
    """``tmp_path/model`` for the model; an outside file full of the marker next to it."""
    inner = tmp_path / "model"
    inner.mkdir()
    (tmp_path / "outside.bin").write_bytes(MARKER * 64)
    os.symlink(tmp_path / "outside.bin", inner / "link.bin")
    return tmp_path, inner


LOCATIONS = {
    "dotdot": ("../outside.bin", "outside"),
    "absolute": (None, "absolute"),
    "link": ("link.bin", "through a link"),
}


@pytest.mark.parametrize("route", list(_routes("x")))
@pytest.mark.parametrize("how", list(LOCATIONS))
def test_every_route_to_an_outside_file_is_refused(folders, route, how) -> None:
    tmp_path, inner = folders
    loc, match = LOCATIONS[how]
    loc = loc or str(tmp_path / "outside.bin")
    path = inner / "m.onnx"
    onnx.save(_routes(loc)[route], path)
    with pytest.raises(FrontendError, match=match):
        neffkit.load(path)


@pytest.mark.parametrize("route", list(_routes("x")))
def test_no_outside_byte_reaches_run_optimize_or_inspect(folders, route, capsys) -> None:
    tmp_path, inner = folders
    path = inner / "m.onnx"
    onnx.save(_routes("../outside.bin")[route], path)
    out = tmp_path / "out"
    out.mkdir()
    for argv in (
        ["run", str(path), "-o", str(out / "y.npz")],
        ["run", str(path), "--backend", "onnxruntime", "-o", str(out / "y2.npz")],
        ["optimize", str(path), "-o", str(out / "o.onnx")],
        ["optimize", str(path), "-o", str(out / "o2.onnx"), "--no-verify"],
        ["inspect", str(path)],
        ["inspect", str(path), "--json"],
    ):
        assert main(argv) == 2, argv
        printed = capsys.readouterr()
        assert "outside" in printed.err
        assert MARKER.decode() not in printed.out + printed.err
    assert os.listdir(out) == []
    assert not [f for f in os.listdir(inner) if f != "m.onnx" and f != "link.bin"]


def test_sparse_external_data_inside_the_folder_is_read_and_kept_inline(tmp_path) -> None:
    (tmp_path / "s.bin").write_bytes(np.array([1.5, -2.0], np.float32).tobytes())
    (tmp_path / "i.bin").write_bytes(np.array([1, 6], np.int64).tobytes())
    sp = _sparse(
        _ext("s", TensorProto.FLOAT, [2], "s.bin"), _ext("s_idx", TensorProto.INT64, [2], "i.bin"),
        [N],
    )  # fmt: skip
    onnx.save(_model(_add_of("s"), sparse=[sp]), tmp_path / "m.onnx")
    g = neffkit.load(tmp_path / "m.onnx")
    want = np.zeros(N, np.float32)
    want[[1, 6]] = [1.5, -2.0]
    assert np.array_equal(g.initializers["s"].const.numpy(), want)
    assert g.meta.external_data
    exported = neffkit.to_onnx(g)
    (back,) = exported.graph.sparse_initializer
    assert back.values.data_location != TensorProto.EXTERNAL
    assert back.indices.data_location != TensorProto.EXTERNAL
    x = np.ones(N, np.float32)
    # the ONNX checker cannot read sparse indices from external data and refuses the model;
    # check=False runs it anyway, from neffkit's checked, inlined copy
    with pytest.raises(FrontendError, match="invalid ONNX model"):
        neffkit.run(tmp_path / "m.onnx", [x], backend="onnxruntime")
    (y,) = neffkit.run(tmp_path / "m.onnx", [x], backend="onnxruntime", check=False)
    assert np.array_equal(y, x + want)


def test_attributes_decoded_without_a_folder_refuse_external_data(folders) -> None:
    from neffkit.frontends.onnx import decode_attribute

    tmp_path, _ = folders
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a relative location must not resolve against the current directory
    try:
        t = helper.make_attribute("value", _ext("c", TensorProto.FLOAT, [N], "outside.bin"))
        ts = helper.make_attribute("vs", [_ext("c", TensorProto.FLOAT, [N], "outside.bin")])
        values = _ext("s", TensorProto.FLOAT, [2], "outside.bin")
        sp = _sparse(values, _inline_sparse().indices, [N])
        sa = helper.make_attribute("sparse_value", sp)
        for ap in (t, ts, sa):
            with pytest.raises(FrontendError, match="not loaded from a file"):
                decode_attribute(ap)
    finally:
        os.chdir(cwd)


def test_a_constant_with_external_data_runs_on_onnxruntime_from_a_checked_copy(
    tmp_path, monkeypatch
) -> None:
    (tmp_path / "c.bin").write_bytes(np.arange(N, dtype=np.float32).tobytes())
    onnx.save(_model([_constant("c.bin"), *_add_of("c")]), tmp_path / "m.onnx")
    g = neffkit.load(tmp_path / "m.onnx")
    assert g.meta.external_data
    exported = neffkit.to_onnx(g)
    (const,) = [n for n in exported.graph.node if n.op_type == "Constant"]
    assert const.attribute[0].t.data_location != TensorProto.EXTERNAL  # written inline
    import onnxruntime

    seen = []
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(
        onnxruntime, "InferenceSession", lambda src, *a, **k: seen.append(src) or real(src, *a, **k)
    )
    x = np.ones(N, np.float32)
    (y,) = neffkit.run(tmp_path / "m.onnx", [x], backend="onnxruntime")
    assert np.array_equal(y, x + np.arange(N, dtype=np.float32))
    assert seen and str(tmp_path) not in str(seen[0])  # not the user's file, read by ORT itself


def test_external_data_inside_a_model_local_function_is_refused(tmp_path) -> None:
    # functions stay protos (never read through neffkit's checked path), so a Constant whose
    # value lives in external data cannot be allowed there, inside the folder or not
    (tmp_path / "c.bin").write_bytes(np.ones(4, np.float32).tobytes())
    value = TensorProto(name="c", data_type=TensorProto.FLOAT, dims=[4])
    value.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "c.bin"), ("offset", "0"), ("length", "16")):
        e = value.external_data.add()
        e.key, e.value = k, v
    body = [
        helper.make_node("Constant", [], ["c"], value=value),
        helper.make_node("Add", ["a", "c"], ["b"]),
    ]
    f = helper.make_function("local", "addc", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    g = helper.make_graph(
        [helper.make_node("addc", ["x"], ["y"], domain="local")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    m = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
        functions=[f],
    )
    path = tmp_path / "f.onnx"
    onnx.save(m, path)
    for check in (True, False):
        with pytest.raises(FrontendError, match="function 'local.addc' holds a tensor stored as"):
            neffkit.load(path, check=check)
    assert main(["run", str(path), "--no-check"]) == 2
