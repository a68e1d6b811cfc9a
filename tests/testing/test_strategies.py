"""The graph strategies draw valid graphs: every op, every option, the planted patterns, good
shrinking and few rejections. "Valid" means: the IR verifier holds, the exported model passes
the ONNX checker with full (strict) shape inference, onnxruntime runs it, and every output has
exactly the dtype and shape the strategy declared."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import find, given, settings
from onnx import TensorProto

from neffkit.backends import onnxruntime as ort_backend
from neffkit.backends.onnx import to_onnx
from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import np_dtype
from neffkit.ir.text import parse, print_graph
from neffkit.ir.verifier import verify
from neffkit.testing import graphs, random_feeds
from neffkit.testing.strategies import CONTROL_OPS, OPS, PLANTS, generation_stats

FAST = settings(max_examples=12, deadline=None, derandomize=True, database=None)
ALL_DTYPES = ("float32", "int64", "float64", "int32", "bool")


def check_valid(graph: Graph) -> list[np.ndarray]:
    """Asserts the graph is valid (see the module docstring); returns onnxruntime's outputs."""
    verify(graph)
    model = to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    outs = ort_backend.run(model, random_feeds(graph))
    assert len(outs) == len(graph.outputs)
    for v, o in zip(graph.outputs, outs):
        assert o.dtype == np_dtype(v.dtype), (v, o.dtype)
        # symbolic dims (a Loop's growing values and its scan outputs) may be any size
        assert len(o.shape) == len(v.shape), (v, o.shape)
        assert all(type(d) is not int or d == n for d, n in zip(v.shape, o.shape)), (v, o.shape)
        if o.dtype.kind == "f":  # the numeric guards keep values finite
            assert np.all(np.isfinite(o)), v
    return outs


def op_types(graph: Graph) -> set[str]:
    return {n.op_type for n in graph.all_nodes()}


def test_at_least_forty_ops_in_every_family_the_issue_names() -> None:
    assert len(OPS) >= 40
    wanted = (
        "Add Sub Mul Div Pow Max Min Equal Less Greater Where Cast MatMul Gemm Conv MaxPool "
        "AveragePool GlobalAveragePool Reshape Transpose Squeeze Unsqueeze Flatten Concat Split "
        "Slice Gather ReduceSum ReduceMean ReduceMax Softmax LayerNormalization Loop If"
    ).split()
    assert not set(wanted) - set(OPS)


@pytest.mark.parametrize("op", OPS)
def test_every_op_gives_valid_graphs(op: str) -> None:
    seen: list[bool] = []

    @FAST
    @given(graphs(ops=[op], max_ops=4, dtypes=ALL_DTYPES))
    def run(graph: Graph) -> None:
        check_valid(graph)
        seen.append(op in op_types(graph))

    run()
    # the op must really be drawn (how often depends on hypothesis' constant pool, which
    # changes with the modules a test session has imported)
    assert sum(seen) >= max(1, len(seen) // 4)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(graphs(max_ops=12, max_depth=2, dtypes=ALL_DTYPES))
def test_big_nested_graphs_are_valid_and_print_back(graph: Graph) -> None:
    check_valid(graph)
    text = print_graph(graph)
    assert print_graph(parse(text)) == text


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(graphs(dtypes=["float64"], max_inputs=1, max_rank=2, max_dim=3))
def test_options_bound_inputs_and_dtypes(graph: Graph) -> None:
    assert len(graph.inputs) == 1
    (x,) = graph.inputs
    assert x.dtype == TensorProto.DOUBLE
    assert 1 <= len(x.shape) <= 2 and all(1 <= d <= 3 for d in x.shape)
    values = [o for n in graph.all_nodes() for o in n.outputs]
    values += [v for g in graph.all_graphs() for v in g.initializers.values()]
    assert all(v.dtype != TensorProto.FLOAT for v in values)  # float32 is not enabled


HELPERS = {"Abs", "Add", "Clip", "Constant", "Identity", "Cast", "Greater", "ReduceMax", "Less"}


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(graphs(ops=["Relu", "Transpose", "If"], plants=False))
def test_ops_option_limits_the_ops(graph: Graph) -> None:
    # guards, constants and If conditions may add a few helper ops; nothing else appears
    assert (
        op_types(graph) <= {"Relu", "Transpose", "If", "Neg", "Not", "Mul", "Sub", "Max"} | HELPERS
    )


def test_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="unknown ops"):
        graphs(ops=["NoSuchOp"])
    with pytest.raises(ValueError, match="unknown dtypes"):
        graphs(dtypes=["complex64"])
    with pytest.raises(ValueError, match="none of the ops"):
        graphs(ops=["Conv"], dtypes=["int64"])
    with pytest.raises(ValueError, match="unknown plants"):
        graphs(plants=["nothing"])
    with pytest.raises(ValueError, match="min_ops"):
        graphs(min_ops=3, max_ops=2)


# -- the planted patterns ----------------------------------------------------------------------


def _consts(graph: Graph) -> list[bytes]:
    out = []
    for g in graph.all_graphs():
        out += [
            v.const.numpy().tobytes() + bytes(str(v.const.shape), "ascii")
            for v in g.initializers.values()
        ]
        out += [
            n.attr("value").numpy().tobytes() + bytes(str(n.attr("value").shape), "ascii")
            for n in g
            if n.op_type == "Constant"
        ]
    return out


def _is_const(v: Value | None) -> bool:
    if v is None or v.is_initializer:
        return v is not None
    return v.producer is not None and v.producer.op_type == "Constant"


def _key(n: Node) -> tuple:
    return (n.op_type, tuple(id(v) for v in n.inputs), tuple(sorted(n.attributes)))


def _has_plant(plant: str, graph: Graph) -> bool:
    nodes = list(graph)
    if plant == "dup-const":
        consts = _consts(graph)
        return len(consts) != len(set(consts))
    if plant == "repeat":
        keys = [_key(n) for n in nodes if n.op_type != "Constant"]
        return len(keys) != len(set(keys))
    if plant == "dead":
        outs = set(graph.outputs)
        return any(all(not o.num_uses and o not in outs for o in n.outputs) for n in nodes)
    if plant == "copy-chain":
        copies = {"Identity", "Cast", "Reshape", "Expand", "Transpose", "Squeeze", "Slice"}
        return any(n.op_type in copies and n.outputs[0].type == n.inputs[0].type for n in nodes)
    if plant == "transpose-pair":
        return any(
            n.op_type == "Transpose"
            and n.inputs[0].producer is not None
            and n.inputs[0].producer.op_type == "Transpose"
            for n in nodes
        )
    if plant == "const-expr":
        return any(n.inputs and all(_is_const(v) for v in n.inputs) for n in nodes)
    assert plant == "shape-expr"
    return any(
        n.op_type == "Reshape"
        and n.inputs[1].producer is not None
        and n.inputs[1].producer.op_type == "Shape"
        for n in nodes
    )


@pytest.mark.parametrize("plant", PLANTS)
def test_each_plant_shows_up(plant: str) -> None:
    found: list[bool] = []

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(graphs(ops=["Relu", "Add"], plants=[plant], min_ops=4))
    def run(graph: Graph) -> None:
        check_valid(graph)
        found.append(_has_plant(plant, graph))

    run()
    assert sum(found) >= 3, f"{plant}: {sum(found)} of {len(found)}"


def test_control_flow_and_conv_variants_show_up() -> None:
    seen: set[str] = set()

    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    @given(graphs(ops=["Loop", "If", "Conv", "Add"], plants=False, max_ops=6))
    def run(graph: Graph) -> None:
        for n in graph.all_nodes():
            if n.op_type == "If":
                cond = n.inputs[0]
                const = cond.is_initializer or cond.producer.op_type == "Constant"
                seen.add("if-constant" if const else "if-computed")
            elif n.op_type == "Loop":
                seen.add("loop-bounded" if n.inputs[1] is not None else "loop-static")
                if len(n.outputs) > len(n.inputs) - 2:
                    seen.add("loop-scan")
            elif n.op_type == "Conv":
                groups, c = n.attr("group", 1), n.inputs[0].shape[1]
                seen.add("depthwise" if groups == c > 1 else "grouped" if groups > 1 else "conv")
                if n.attr("auto_pad", "NOTSET") != "NOTSET":
                    seen.add("auto-pad")
                if any(d > 1 for d in n.attr("dilations", [1])):
                    seen.add("dilated")

    run()
    assert {"if-constant", "if-computed", "loop-bounded", "loop-static", "loop-scan"} <= seen
    assert {"conv", "depthwise", "grouped", "auto-pad", "dilated"} <= seen


# -- shrinking and rejections ------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Conv", "If", "Gemm", "Slice"])
def test_shrinks_to_a_tiny_graph(op: str) -> None:
    found = find(
        graphs(),
        lambda g: op in op_types(g),
        settings=settings(max_examples=2000, deadline=None, derandomize=True, database=None),
    )
    assert sum(len(g) for g in found.all_graphs()) <= 3


def test_most_draws_are_accepted() -> None:
    before = generation_stats()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(graphs())
    def run(graph: Graph) -> None:
        pass

    run()
    after = generation_stats()
    started = after["started"] - before["started"]
    finished = after["finished"] - before["finished"]
    # the strategy filters nothing; hypothesis itself abandons some draws (its size cap for
    # early examples and replayed mutations that run past their recorded choices)
    assert finished >= 300
    assert 1 - finished / started < 0.35, (started, finished)


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(graphs(dtypes=["float32", "int64", "bool"]))
def test_random_feeds_are_deterministic_and_small(graph: Graph) -> None:
    a, b = random_feeds(graph, seed=3), random_feeds(graph, seed=3)
    assert a.keys() == b.keys() == {v.name for v in graph.inputs}
    for k, x in a.items():
        np.testing.assert_array_equal(x, b[k])
        if x.dtype.kind in "fi":
            assert np.abs(x).max(initial=0) <= 4


def test_control_ops_are_drawable_on_their_own() -> None:
    for op in CONTROL_OPS:
        graph = find(
            graphs(ops=[op], plants=False),
            lambda g, op=op: op in op_types(g),
            settings=settings(deadline=None, derandomize=True, database=None),
        )
        check_valid(graph)
