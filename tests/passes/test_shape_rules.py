"""``shape_rules``: the static type rules shape-infer applies before onnx's inference.

Checked against ground truth: the onnx backend node cases' recorded outputs, onnx's own
inference on the same models, and the types the graph generator tracks by construction.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto, helper

from neffkit.frontends.onnx import load
from neffkit.ir.core import Graph
from neffkit.ir.tensor import onnx_dtype
from neffkit.ir.types import TensorType, type_from_proto
from neffkit.passes.base import PassContext
from neffkit.passes.infer_shapes import InferShapes, _apply_rules
from neffkit.passes.shape_rules import RULES
from neffkit.testing import graphs
from neffkit.testing.onnx_cases import is_plain_tensor_case, node_cases


def _strip(graph: Graph) -> None:
    """Forgets every node output's type (what the rules must find again)."""
    for g in graph.all_graphs():
        for node in g:
            for v in node.outputs:
                v.type = None


def _typed(graph: Graph) -> dict[str, TensorType]:
    out = {}
    for g in graph.all_graphs():
        for node in g:
            for v in node.outputs:
                if isinstance(v.type, TensorType) and v.type.is_static and v.name:
                    out[v.name] = v.type
    return out


def _covered(case) -> bool:  # noqa: ANN001 - a Case
    return bool(case.op_types) and all(op in RULES for op in case.op_types)


def test_rules_match_recorded_outputs_and_onnx_inference_on_node_cases() -> None:
    compared_outputs = compared_values = 0
    failures = []
    for case in node_cases():
        if not _covered(case) or not is_plain_tensor_case(case):
            continue
        model = case.load_model()
        graph = load(model)
        _strip(graph)
        _apply_rules(graph)
        typed = _typed(graph)
        # 1. the recorded outputs are the truth
        for vi, arr in zip(model.graph.output, case.data_sets[0][1] if case.data_sets else []):
            t = typed.get(vi.name)
            if t is None or not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
                continue
            compared_outputs += 1
            want = (onnx_dtype(arr.dtype), tuple(arr.shape))
            if vi.type.tensor_type.elem_type != want[0]:
                continue  # bfloat16 / float8 outputs are recorded in a carrier dtype
            if (t.dtype, t.shape) != want:
                failures.append(f"{case.name}: {vi.name} typed {t}, recorded {want}")
        # 2. onnx's inference agrees wherever it knows the type
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001, S112 - onnx cannot infer it: nothing to compare
            continue
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            t, ref = typed.get(vi.name), type_from_proto(vi.type)
            if t is None or not isinstance(ref, TensorType) or not ref.is_static:
                continue
            compared_values += 1
            if t != ref:
                failures.append(f"{case.name}: {vi.name} typed {t}, onnx infers {ref}")
    assert not failures, "\n".join(failures[:20])
    # the comparison is not vacuous: the rules typed a good share of the cases' outputs
    assert compared_outputs >= 300, compared_outputs
    assert compared_values >= 300, compared_values


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(graphs(min_ops=3, max_ops=14, max_depth=0))
def test_rules_match_the_generator_types(graph: Graph) -> None:
    truth = _typed(graph)
    _strip(graph)
    _apply_rules(graph)
    typed = _typed(graph)
    for name, t in typed.items():
        assert truth.get(name) == t, f"{name}: typed {t}, built as {truth.get(name)}"


def test_rules_type_most_of_a_generated_graph() -> None:
    """A chain of covered ops is typed entirely by the rules, without onnx's inference."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"]),
        helper.make_node("Add", ["a", "b"], ["c"]),
        helper.make_node("Relu", ["c"], ["d"]),
        helper.make_node("Transpose", ["d"], ["e"], perm=[1, 0]),
        helper.make_node("Reshape", ["e", "s"], ["f"]),
        helper.make_node("ReduceMean", ["f"], ["g"], axes=[-1], keepdims=0),
    ]
    inits = [
        onnx.numpy_helper.from_array(np.ones((4, 6), np.float32), "w"),
        onnx.numpy_helper.from_array(np.ones(6, np.float32), "b"),
        onnx.numpy_helper.from_array(np.array([3, 0, -1], np.int64), "s"),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
            [helper.make_tensor_value_info("g", TensorProto.FLOAT, None)],
            inits,
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    graph = load(model)
    typed, remaining = _apply_rules(graph)
    assert typed == 6 and not remaining
    assert graph.outputs[0].type == TensorType(TensorProto.FLOAT, (3, 2))
    result = InferShapes().run(load(model), PassContext())
    assert result.stats == {"values_typed_by_rules": 6}  # onnx's inference was not needed


def _one(op: str, inputs, attrs=None, consts=(), opset=18, outputs=1):  # noqa: ANN001, ANN202
    """The rules' output types of one node on static inputs ``[(name, dtype, shape)]``."""
    ins = [helper.make_tensor_value_info(n, dt, s) for n, dt, s in inputs]
    inits = [onnx.numpy_helper.from_array(np.asarray(a), n) for n, a in consts]
    names = [n for n, _, _ in inputs] + [n for n, _ in consts]
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    model = helper.make_model(
        helper.make_graph(
            [node], "g", ins, [helper.make_tensor_value_info(o, 0, None) for o in outs], inits
        ),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    graph = load(model)
    _apply_rules(graph)
    return [
        v.type if v.type is not None and v.type.dtype and v.type.is_static else None
        for v in graph.outputs
    ]


F = TensorProto.FLOAT


@pytest.mark.parametrize(
    ("target", "attrs", "opset", "want"),
    [
        ([0, -1], {}, 18, (2, 12)),
        ([0, 0, 4], {}, 18, (2, 3, 4)),
        ([-1], {}, 18, (24,)),
        ([4, -1, 0], {"allowzero": 1}, 18, None),  # -1 with a literal 0: invalid
        ([5, -1], {}, 18, None),  # 24 is not a multiple of 5
        ([2, 3, 5], {}, 18, None),  # wrong element count
        ([0, -1], {}, 4, None),  # Reshape-1 took the shape as an attribute
    ],
)
def test_reshape(target, attrs, opset, want) -> None:  # noqa: ANN001
    got = _one("Reshape", [("x", F, [2, 3, 4])], attrs, [("s", np.array(target, np.int64))], opset)
    assert got[0] == (None if want is None else TensorType(F, want))


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps", "want"),
    [
        ([1], [-1], [0], [1], (8, 4)),
        ([-1], [-100], [0], [-1], (10, 4)),
        ([8], [2], [0], [-3], (2, 4)),
        ([0, 1], [2**62, 3], [1, 0], [2, 1], (2, 2)),
        ([20], [30], [0], [1], (0, 4)),
        ([0], [5], [0], [0], None),  # step 0 is invalid
    ],
)
def test_slice(starts, ends, axes, steps, want) -> None:  # noqa: ANN001
    consts = [(n, np.array(a, np.int64)) for n, a in zip("seap", (starts, ends, axes, steps))]
    got = _one("Slice", [("x", F, [10, 4])], None, consts)
    assert got[0] == (None if want is None else TensorType(F, want))
    if want is not None:  # numpy's slicing agrees
        x = np.zeros((10, 4))
        idx = [slice(None)] * 2
        for s, e, a, p in zip(starts, ends, axes, steps):
            idx[a] = slice(s, e, p)
        assert x[tuple(idx)].shape == want


@pytest.mark.parametrize(
    ("attrs", "want"),
    [
        ({"pads": [1, 1, 1, 1]}, (1, 8, 7, 9)),
        ({"strides": [2, 2]}, (1, 8, 3, 4)),
        ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (1, 8, 4, 5)),
        ({"auto_pad": "VALID", "dilations": [2, 2]}, (1, 8, 3, 5)),
        ({"group": 3}, None),  # 3 input channels per group x 3 groups != 3 channels
    ],
)
def test_conv(attrs, want) -> None:  # noqa: ANN001
    got = _one("Conv", [("x", F, [1, 3, 7, 9]), ("w", F, [8, 3, 3, 3])], attrs)
    assert got[0] == (None if want is None else TensorType(F, want))


def test_squeeze_axes_by_opset() -> None:
    assert _one("Squeeze", [("x", F, [1, 3, 1])], {"axes": [0]}, opset=11)[0] == TensorType(
        F, (3, 1)
    )
    got = _one("Squeeze", [("x", F, [1, 3, 1])], None, [("a", np.array([-1], np.int64))], 13)
    assert got[0] == TensorType(F, (1, 3))
    assert _one("Squeeze", [("x", F, [1, 3, 1])], None, opset=13)[0] == TensorType(F, (3,))
    # squeezing a dim that is not 1 is invalid: no type
    assert _one("Squeeze", [("x", F, [1, 3, 1])], {"axes": [1]}, opset=11)[0] is None


def test_legacy_broadcast_and_non_static_inputs_are_left_to_onnx() -> None:
    assert _one("Add", [("a", F, [2, 3]), ("b", F, [3])], {"broadcast": 1}, opset=6)[0] is None
    assert _one("Add", [("a", F, [2, 1]), ("b", F, [4])])[0] == TensorType(F, (2, 4))
    assert _one("Add", [("a", F, [2, 3]), ("b", F, [4])])[0] is None  # not broadcastable
    assert _one("Add", [("a", F, ["N", 3]), ("b", F, [3])])[0] is None  # symbolic: onnx's job


def test_shape_infer_falls_back_to_onnx_for_what_the_rules_leave() -> None:
    """A symbolic batch dim: the rules type nothing, onnx's inference keeps the symbol."""
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["y"], ["z"])],
            "g",
            [helper.make_tensor_value_info("x", F, ["N", 3])],
            [helper.make_tensor_value_info("z", F, None)],
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    graph = load(model)
    result = InferShapes().run(graph, PassContext())
    assert result.changed and "values_typed_by_rules" not in result.stats
    assert graph.outputs[0].type == TensorType(F, ("N", 3))


def test_an_overridable_input_is_typed_by_its_declaration_not_its_default() -> None:
    """IR v3: an initializer that is also a graph input may be fed with another shape."""
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["w"], ["y"])],
            "g",
            [helper.make_tensor_value_info("w", F, ["N", 3])],
            [helper.make_tensor_value_info("y", F, None)],
            [onnx.numpy_helper.from_array(np.ones((2, 3), np.float32), "w")],
        ),
        opset_imports=[helper.make_opsetid("", 9)],
        ir_version=3,
    )
    graph = load(model)
    typed, remaining = _apply_rules(graph)
    assert typed == 0 and remaining  # left to onnx, which keeps the symbol


def test_overridable_shape_operands_are_not_read_when_kept_overridable() -> None:
    """Reshape's shape is an IR v3 input with a default: a caller may feed another shape."""
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Reshape", ["x", "s"], ["y"])],
            "g",
            [
                helper.make_tensor_value_info("x", F, [2, 6]),
                helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
            ],
            [helper.make_tensor_value_info("y", F, None)],
            [onnx.numpy_helper.from_array(np.array([3, 4], np.int64), "s")],
        ),
        opset_imports=[helper.make_opsetid("", 9)],
        ir_version=4,
    )
    graph = load(model)
    assert _apply_rules(graph, keep_overridable_inputs=True) == (0, True)
    graph = load(model)  # by default such inputs are constants (fold and simplify agree)
    assert _apply_rules(graph) == (1, False)
    assert graph.outputs[0].type == TensorType(F, (3, 4))


def test_where_onnxruntime_departs_from_the_spec_the_rules_give_up() -> None:
    big = np.array([2**63 - 1], np.int64)
    consts = [("s", np.array([3])), ("e", big), ("a", np.array([0])), ("p", np.array([-1]))]
    assert _one("Slice", [("x", F, [5, 2])], None, consts)[0] is None
    pool = {"kernel_shape": [2], "dilations": [2], "auto_pad": "SAME_UPPER"}
    assert _one("MaxPool", [("x", F, [1, 1, 8])], pool, opset=11)[0] is None
    assert _one("Flatten", [("x", F, [2, 3, 4])], {"axis": -1}, opset=9)[0] is None
    assert _one("Flatten", [("x", F, [2, 3, 4])], {"axis": -1}, opset=11)[0] == TensorType(
        F, (6, 4)
    )
