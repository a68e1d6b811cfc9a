"""The ONNX package's test material as plain cases: node cases in memory, shipped model folders
and light models read from disk, with their recorded inputs and outputs decoded."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from neffkit.testing.onnx_cases import (
    SEQUENCE_CASE_KEYS,
    Case,
    _as_array,
    _read_pb,
    all_model_paths,
    data_dir,
    is_plain_tensor_case,
    light_cases,
    model_dir_cases,
    node_cases,
    sequence_cases,
)


def _by_name(cases: list[Case] | tuple[Case, ...], name: str) -> Case:
    (case,) = [c for c in cases if c.name == name]
    return case


def test_the_data_folder_is_the_onnx_packages() -> None:
    assert os.path.isdir(data_dir())
    assert data_dir().startswith(os.path.dirname(onnx.__file__))


def test_node_cases_are_read_once_with_their_ops_and_data() -> None:
    cases = node_cases()
    assert cases is node_cases()  # cached: generating them takes seconds
    assert len(cases) > 1000
    relu = _by_name(cases, "test_relu")
    assert relu.op_types == ("Relu",)
    assert relu.model is not None and relu.load_model() is relu.model
    ((inputs, outputs),) = relu.data_sets
    np.testing.assert_array_equal(outputs[0], np.maximum(inputs[0], 0))


def test_is_plain_tensor_case() -> None:
    assert is_plain_tensor_case(_by_name(node_cases(), "test_relu"))
    sequences = [c for c in node_cases() if c.name.startswith("test_sequence_insert")]
    assert sequences and not any(is_plain_tensor_case(c) for c in sequences)


def test_model_folders_are_read_from_disk_with_their_data_sets() -> None:
    cases = model_dir_cases(("simple",))
    assert cases and all(c.name.startswith("simple/") for c in cases)
    relu = _by_name(cases, "simple/test_single_relu_model")
    assert relu.model is None and relu.path is not None and relu.path.endswith("model.onnx")
    assert relu.load_model().graph.node[0].op_type == "Relu"
    assert relu.data_sets
    for inputs, outputs in relu.data_sets:
        np.testing.assert_array_equal(outputs[0], np.maximum(inputs[0], 0))


def test_an_unknown_group_has_no_cases() -> None:
    assert model_dir_cases(("no-such-group",)) == []


def test_light_models_get_the_inputs_their_outputs_were_computed_from() -> None:
    cases = light_cases()
    assert cases and all(c.name.startswith("light/light_") for c in cases)
    for case in cases:
        ((inputs, outputs),) = case.data_sets
        assert inputs and outputs
        for x in inputs:
            assert x.dtype == np.float32
            np.testing.assert_allclose(x.ravel(), np.arange(x.size) / x.size, rtol=1e-6)


def test_all_model_paths_are_onnx_files() -> None:
    paths = all_model_paths()
    assert paths == sorted(paths)
    assert all(p.endswith(".onnx") and os.path.isfile(p) for p in paths)
    assert any(p.endswith(os.path.join("test_single_relu_model", "model.onnx")) for p in paths)


def test_sequence_cases_are_named_for_sequences_or_optionals() -> None:
    cases = sequence_cases()
    assert cases
    assert all(any(k in c.name for k in SEQUENCE_CASE_KEYS) for c in cases)
    assert any(c.name.startswith("simple/") for c in cases)
    # their recorded values are arrays, lists of arrays, or None (an empty optional)
    kinds = set()
    for c in cases:
        for inputs, outputs in c.data_sets:
            for v in list(inputs) + list(outputs):
                kinds.add(type(v).__name__)
    assert {"ndarray", "list"} <= kinds


def test_as_array_makes_tensors_numpy_arrays() -> None:
    scalar = _as_array(np.float32(2.0))
    assert isinstance(scalar, np.ndarray) and scalar.shape == ()
    proto = numpy_helper.from_array(np.arange(3, dtype=np.int64))
    np.testing.assert_array_equal(_as_array(proto), np.arange(3))
    nested = _as_array([np.int8(1), [proto]])
    assert isinstance(nested[0], np.ndarray) and isinstance(nested[1][0], np.ndarray)
    assert _as_array(None) is None


def test_read_pb_reads_tensors_sequences_and_optionals(tmp_path) -> None:
    tensor = tmp_path / "t.pb"
    tensor.write_bytes(numpy_helper.from_array(np.ones(2, np.float32)).SerializeToString())
    np.testing.assert_array_equal(_read_pb(str(tensor)), np.ones(2, np.float32))

    seq = tmp_path / "s.pb"
    seq.write_bytes(numpy_helper.from_list([np.zeros(1), np.ones(2)]).SerializeToString())
    double = helper.make_tensor_type_proto(TensorProto.DOUBLE, None)
    seq_type = helper.make_sequence_type_proto(double)
    got = _read_pb(str(seq), seq_type)
    assert isinstance(got, list) and [a.shape for a in got] == [(1,), (2,)]

    opt = tmp_path / "o.pb"
    opt.write_bytes(numpy_helper.from_optional(None, name="o").SerializeToString())
    opt_type = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    assert _read_pb(str(opt), opt_type) is None

