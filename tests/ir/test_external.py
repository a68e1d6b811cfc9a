"""External data: ranges checked at load, every read re-checked, large weights never loaded
twice (hashed and compared in chunks, saved back external)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import neffkit
from neffkit.errors import FrontendError
from neffkit.passes.base import PassContext
from neffkit.passes.deduplicate_tensors import DeduplicateTensors

N = 4096


def _external(name: str, location: str, offset: int, length: int | None, dims: list[int]):
    tp = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
    tp.data_location = TensorProto.EXTERNAL
    fields = [("location", location), ("offset", str(offset))]
    if length is not None:
        fields.append(("length", str(length)))
    for k, v in fields:
        e = tp.external_data.add()
        e.key, e.value = k, v
    return tp


def _model(folder, *, offset: int = 0, length: int | None = N * 4, twin: bool = False) -> str:
    """``y = x + w (+ w2)`` with ``w`` (and a byte-equal ``w2``) in ``folder/w.bin``."""
    w = np.arange(N, dtype=np.float32)
    (folder / "w.bin").write_bytes(w.tobytes() * 2)
    inits = [_external("w", "w.bin", offset, length, [N])]
    nodes = [helper.make_node("Add", ["x", "w"], ["y"])]
    out = "y"
    if twin:
        inits.append(_external("w2", "w.bin", N * 4, N * 4, [N]))
        nodes.append(helper.make_node("Add", ["y", "w2"], ["z"]))
        out = "z"
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [N])],
        inits,
    )
    path = folder / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.mark.parametrize(
    ("offset", "length", "match"),
    [
        (-4, N * 4, "offset -4 .*negative"),
        (0, -1, "length -1 .*negative"),
        (N * 8 - 8, N * 4, "beyond the end"),
        (N * 8 + 1, N * 4, "beyond the end"),
        (0, N * 4 - 4, f"has length {N * 4 - 4} but the tensor's dtype and dims need {N * 4}"),
    ],
)
def test_bad_ranges_are_refused_at_load_naming_the_tensor(tmp_path, offset, length, match) -> None:
    path = _model(tmp_path, offset=offset, length=length)
    with pytest.raises(FrontendError, match=f"tensor 'w'.*{match}"):
        neffkit.load(path)


def test_a_missing_length_is_the_tensors_size(tmp_path) -> None:
    g = neffkit.load(_model(tmp_path, offset=N * 4, length=None))
    w = g.initializers["w"].const
    assert w._external.length == N * 4
    assert np.array_equal(w.numpy(), np.arange(N, dtype=np.float32))


def test_a_file_swapped_for_a_link_after_load_is_not_read(tmp_path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    path = _model(inner, twin=True)
    g = neffkit.load(path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"SECRET-MARKER-" * (N * 8 // 14 + 1))
    os.unlink(inner / "w.bin")
    os.symlink(secret, inner / "w.bin")
    w = g.initializers["w"].const
    for read in (w.numpy, w.content_hash, w.fresh_numpy, lambda: list(w.byte_chunks())):
        with pytest.raises(FrontendError, match="tensor 'w'.*(not the file checked|link)"):
            read()
    with pytest.raises(FrontendError, match="tensor 'w'"):
        neffkit.save(g, tmp_path / "out" / "m.onnx")
    assert not (tmp_path / "out" / "m.onnx").exists()


def test_a_swap_after_load_reaches_no_output_of_run_or_optimize(tmp_path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    g = neffkit.load(_model(inner, twin=True))
    marker = b"SECRET-MARKER-"
    (tmp_path / "secret.bin").write_bytes(marker * (N * 8 // 14 + 1))
    os.unlink(inner / "w.bin")
    os.symlink(tmp_path / "secret.bin", inner / "w.bin")
    x = np.zeros(N, np.float32)
    for backend in ("torch", "onnxruntime"):
        with pytest.raises(FrontendError, match="tensor 'w'") as e:
            neffkit.run(g, [x], backend=backend)
        assert marker.decode() not in str(e.value)
    with pytest.raises(neffkit.NeffkitError, match="dedup.*tensor 'w'.*refusing to read it"):
        neffkit.optimize(g, copy=False)
    assert sorted(os.listdir(inner)) == ["m.onnx", "w.bin"]


def test_a_folder_on_the_path_swapped_for_a_link_after_load_is_not_read(tmp_path) -> None:
    inner = tmp_path / "inner"
    (inner / "sub").mkdir(parents=True)
    w = np.arange(N, dtype=np.float32)
    (inner / "sub" / "w.bin").write_bytes(w.tobytes())
    g_ = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [N])],
        [_external("w", "sub/w.bin", 0, N * 4, [N])],
    )
    onnx.save(helper.make_model(g_), inner / "m.onnx")
    g = neffkit.load(inner / "m.onnx")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"SECRET-MARKER-" * (N * 4 // 14 + 1))
    os.rename(inner / "sub", inner / "old")
    os.symlink(outside, inner / "sub")
    with pytest.raises(FrontendError, match="tensor 'w'"):
        g.initializers["w"].const.numpy()


def test_a_file_truncated_after_load_is_a_clear_error_when_streamed(tmp_path) -> None:
    g = neffkit.load(_model(tmp_path))
    (tmp_path / "w.bin").write_bytes(b"\0" * 100)
    w = g.initializers["w"].const
    with pytest.raises(FrontendError, match="tensor 'w'.*shorter than when the model was loaded"):
        w.content_hash()


def test_dedup_hashes_and_compares_external_weights_without_loading_them(tmp_path) -> None:
    g = neffkit.load(_model(tmp_path, twin=True))
    w, w2 = g.initializers["w"].const, g.initializers["w2"].const
    result = DeduplicateTensors().run(g, PassContext())
    assert result.changed and result.stats["tensors_merged"] == 1
    assert list(g.initializers) == ["w"]
    assert w._array is None and w2._array is None  # hashed and compared from the file
    assert w.is_external


def test_equals_across_external_and_in_memory_tensors(tmp_path) -> None:
    g = neffkit.load(_model(tmp_path, twin=True))
    w = g.initializers["w"].const
    same = neffkit.ir.Tensor(np.arange(N, dtype=np.float32))
    other = neffkit.ir.Tensor(np.arange(N, dtype=np.float32) + 1)
    assert w.equals(same) and same.equals(w)
    assert w.content_hash() == same.content_hash()
    assert not w.equals(other)
    assert w._array is None


def test_save_keeps_external_data_after_the_weights_were_read(tmp_path) -> None:
    g = neffkit.load(_model(tmp_path, twin=True))
    for v in g.initializers.values():
        v.const.numpy()  # read into memory: no tensor is external any more
    assert g.meta.external_data
    out = tmp_path / "out" / "m.onnx"
    neffkit.save(g, out)
    assert (tmp_path / "out" / "m.onnx.data").stat().st_size >= 2 * N * 4
    back = onnx.load(str(out), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in back.graph.initializer)


def test_fresh_numpy_reads_a_private_copy_and_caches_nothing(tmp_path) -> None:
    g = neffkit.load(_model(tmp_path))
    w = g.initializers["w"].const
    a = w.fresh_numpy()
    a[0] = 99.0
    assert a.flags.writeable and w._array is None
    assert w.numpy()[0] == 0.0


@pytest.mark.parametrize(
    ("dtype", "values", "raw"),
    [
        (TensorProto.INT4, [1, 2, 3, 4, 5], bytes([0x21, 0x43, 0x05])),
        (TensorProto.INT2, [0, 1, -2, -1, 1], bytes([0b11100100, 0b01])),
    ],
)
def test_packed_external_data_reads_exactly_its_packed_size(tmp_path, dtype, values, raw) -> None:
    # the bytes of a packed type are (n * bits + 7) // 8, and only those are read: without a
    # length the rest of the file is not taken, and a longer length is refused
    (tmp_path / "w.bin").write_bytes(raw + b"\xff" * 50_000)

    def model(length: int | None) -> str:
        t = TensorProto(name="w", data_type=dtype, dims=[len(values)])
        t.data_location = TensorProto.EXTERNAL
        entries = {"location": "w.bin", "offset": "0"}
        if length is not None:
            entries["length"] = str(length)
        for k, v in entries.items():
            e = t.external_data.add()
            e.key, e.value = k, v
        g = helper.make_graph(
            [helper.make_node("Cast", ["w"], ["y"], to=TensorProto.FLOAT)],
            "g",
            [],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [len(values)])],
            [t],
        )
        path = tmp_path / f"m{length}.onnx"
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 25)]), path)
        return str(path)

    for length in (len(raw), None):
        g = neffkit.load(model(length))
        assert g.initializers["w"].const.nbytes == len(raw)
        (y,) = neffkit.run(g, {}, backend="torch")
        assert y.tolist() == [float(v) for v in values]
    with pytest.raises(FrontendError, match=f"has length 40000 but .* need {len(raw)} bytes"):
        neffkit.load(model(40000))
