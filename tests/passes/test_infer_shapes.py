"""``shape-infer``: onnx shape inference copied onto the IR, never losing what is known."""

from __future__ import annotations

import time

import onnx
import pytest
from onnx import TensorProto

import neffkit
from neffkit.ir.core import Graph, Value
from neffkit.ir.text import parse, print_body
from neffkit.ir.types import TensorType
from neffkit.passes import PassContext, PassManager, PassResult, get_pass
from neffkit.passes.fold_constants import FoldConstants
from neffkit.passes.infer_shapes import InferShapes, refine
from neffkit.testing import run_checked
from neffkit.testing.synthetic import synthetic_model
from neffkit.testing.text import model_text

F = TensorProto.FLOAT


def infer(g: Graph, **options: object) -> PassResult:
    """Runs the pass and checks it with ``run_checked`` (shapes only: no numbers compared)."""
    return run_checked(InferShapes(**options), g, numeric=False)


def by_name(g: Graph) -> dict[str, Value]:
    return {v.name: v for n in g.all_nodes() for v in n.outputs}


CHAIN = model_text("""
    m (float[N, 4] x) => (float[N, 2] y)
        <float[4, 8] w = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
                            1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8},
         int64[3] s = {0, 2, 4}, int64[2] s2 = {-1, 8}, int64[2] s3 = {0, 2}> {
        h = MatMul(x, w)
        r = Reshape(h, s)
        t = Transpose<perm = [0, 2, 1]>(r)
        q = Reshape(t, s2)
        p = ReduceSum<axes = [1], keepdims = 0>(q)
        u = Reshape(h, s3)
        y = Relu(u)
    }""")


def test_matmul_reshape_chain_keeps_the_symbolic_batch() -> None:
    g = parse(CHAIN)
    result = infer(g)
    assert result.changed is True
    v = by_name(g)
    assert v["h"].type == TensorType(F, ("N", 8))
    assert v["r"].type == TensorType(F, ("N", 2, 4))
    assert v["t"].type == TensorType(F, ("N", 4, 2))
    # -1 over a symbolic dim: onnx names it unk__<k>; that symbol is not copied
    assert v["q"].type == TensorType(F, (None, 8))
    assert v["p"].type == TensorType(F, (None,))
    assert result.stats == {"values_refined": 6}
    assert g.inputs[0].type == TensorType(F, ("N", 4))


def test_known_dims_and_symbols_are_never_lost() -> None:
    g = parse(
        model_text("""
        m (float[N, 4] x) => (float[B, 4] y) {
            y = Relu(x)
        }""")
    )
    infer(g)
    # onnx says N, the declaration says B: the declared symbol stays
    assert g.outputs[0].type == TensorType(F, ("B", 4))


def test_refine_rules() -> None:
    # ? + 4 -> 4;  ? + N -> N;  N + 4 -> 4;  4 + ? -> 4;  N + M -> N;  N + unk__0 -> N
    old = TensorType(F, (None, None, "N", 4, "N", "N"))
    new = TensorType(F, (4, "M", 4, None, "M", "unk__0"))
    assert refine(old, new) == TensorType(F, (4, "M", 4, 4, "N", "N"))
    assert refine(TensorType(F, (2, 3)), TensorType(F, (2, 3))) is None
    assert refine(TensorType(F, (2, 3)), TensorType(F, (None, None))) is None
    assert refine(TensorType(F, (2, 3)), TensorType(F, (2,))) is None  # rank conflict
    assert refine(TensorType(F, None), TensorType(TensorProto.INT64, (2,))) is None  # dtype
    assert refine(None, TensorType(F, ("unk__3", 2))) == TensorType(F, (None, 2))
    assert refine(TensorType(0, None), TensorType(F, None)) == TensorType(F, None)
    assert refine(TensorType(F, (2,)), None) is None


def test_data_propagation_makes_a_computed_reshape_static() -> None:
    text = model_text("""
        m (float[2, 3, 4] x) => (float[?, ?] y) <int64[1] zero = {0}, int64[1] m1 = {-1}> {
            s = Shape(x)
            d = Gather<axis = 0>(s, zero)
            t = Concat<axis = 0>(d, m1)
            y = Reshape(x, t)
        }""")
    g = parse(text)
    infer(g, data_prop=True)
    assert g.outputs[0].type == TensorType(F, (2, 12))
    g = parse(text)
    infer(g, data_prop=False)
    assert g.outputs[0].type != TensorType(F, (2, 12))


def test_subgraph_values_get_shapes() -> None:
    g = parse(
        model_text("""
        m (int64 n, bool c, float[2, 3] x) => (float[2, 3] out) {
            out = Loop(n, c, x) <body = b (int64 i, bool ci, float[2, 3] v)
                => (bool co, float[2, 3] r) {
                co = Identity(ci)
                e = Exp(v)
                t = Transpose<perm = [1, 0]>(e)
                r = Transpose<perm = [1, 0]>(t)
            }>
        }""")
    )
    assert infer(g).changed is True
    v = by_name(g)
    assert v["e"].type == TensorType(F, (2, 3))
    assert v["t"].type == TensorType(F, (3, 2))


def test_nothing_to_add_is_not_a_change() -> None:
    g = parse(
        model_text("""
        m (float[2] x) => (float[2] y) {
            y = Relu(x)
        }""")
    )
    assert InferShapes().run(g, PassContext()).changed is False


def test_inference_failure_leaves_the_graph_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise onnx.shape_inference.InferenceError("[ShapeInferenceError] boom")

    g = parse(CHAIN)
    before = print_body(g)
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", boom)
    result = InferShapes().run(g, PassContext())
    assert result == PassResult(False, {"failed": 1})
    assert print_body(g) == before


def test_custom_ops_do_not_stop_inference() -> None:
    g = parse(
        model_text(
            """
            m (float[2, 3] x) => (float[?, ?] y) {
                a = Exp(x)
                b = com.example.Mystery(a)
                y = Relu(b)
            }""",
            domains={"com.example": 1},
        )
    )
    assert infer(g).changed is True
    assert by_name(g)["a"].type == TensorType(F, (2, 3))


def test_shapes_let_fold_fold_shape_of_an_intermediate() -> None:
    g = parse(
        model_text("""
        m (float[N, 4] x) => (float[N, 2, 4] y)
            <float[4, 8] w = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
                                1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8},
             int64[2] head = {-1, 2}, int64[1] four = {4}> {
            h = MatMul(x, w)
            s = Shape<start = 1>(h)
            k = Div(s, four)
            t = Concat<axis = 0>(head, k)
            y = Reshape(h, t)
        }""")
    )
    report = PassManager("fold,shape-infer,fold,dce", verify_each=True).run(g)
    records = [(r.name, r.changed) for r in report.records]
    assert records == [("fold", False), ("shape-infer", True), ("fold", True), ("dce", True)]
    assert [n.op_type for n in g] == ["MatMul", "Reshape"]


def test_registered_with_options() -> None:
    assert get_pass("shape-infer") is InferShapes
    assert [o[0] for o in InferShapes.options()] == ["data-prop"]
    assert InferShapes(data_prop=False).spec() == "shape-infer{data-prop=false}"


@pytest.mark.parametrize("size", [10_000, 100_000])
def test_synthetic_models_are_inferred_quickly(size: int) -> None:
    g = neffkit.load(synthetic_model(size))
    start = time.perf_counter()
    result = InferShapes().run(g, PassContext())
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = FoldConstants().run(g, PassContext())
    second = time.perf_counter() - start
    print(f"{len(g)} nodes: shape-infer {first:.2f}s, fold {second:.2f}s")
    assert result.changed is True and again.changed is False
    assert all(v.type is not None and v.type.is_static for n in g for v in n.outputs)
    assert first + second < 30


def _deep_if_chain(depth: int) -> onnx.ModelProto:
    """``depth`` Ifs each nested in the then-branch of the one above; the deepest branch
    reshapes ``x`` by a shape computed at the top (data propagation across every level) and
    runs a Loop whose body declares no shapes. Built in place: protobuf refuses to copy
    messages this deep."""
    h = onnx.helper
    model = h.make_model(
        h.make_graph(
            [
                h.make_node("Shape", ["x"], ["sx"]),
                h.make_node("Gather", ["sx", "zero"], ["d0"], axis=0),
                h.make_node("Concat", ["d0", "m1"], ["shape"], axis=0),
            ],
            "top",
            [
                h.make_tensor_value_info("c", TensorProto.BOOL, []),
                h.make_tensor_value_info("n", TensorProto.INT64, []),
                h.make_tensor_value_info("x", F, [2, 3, 4]),
            ],
            [h.make_tensor_value_info("y0", F, None)],
            [
                h.make_tensor("zero", TensorProto.INT64, [1], [0]),
                h.make_tensor("m1", TensorProto.INT64, [1], [-1]),
                h.make_tensor("w", F, [12, 5], [0.5] * 60),
                h.make_tensor("zeros", F, [2, 5], [0.0] * 10),
            ],
        ),
        opset_imports=[h.make_opsetid("", 18)],
    )
    g = model.graph
    for k in range(depth):
        node = g.node.add()
        node.CopyFrom(h.make_node("If", ["c"], [f"y{k}"]))
        other = node.attribute.add()
        other.CopyFrom(
            h.make_attribute(
                "else_branch",
                h.make_graph(
                    [h.make_node("Identity", ["zeros"], [f"e{k}"])],
                    f"else{k}",
                    [],
                    [h.make_tensor_value_info(f"e{k}", F, None)],
                ),
            )
        )
        then = node.attribute.add()
        then.name, then.type = "then_branch", onnx.AttributeProto.GRAPH
        g = then.g
        g.name = f"then{k}"
        g.output.append(
            h.make_tensor_value_info(f"y{k}" if k == depth - 1 else f"y{k + 1}", F, None)
        )
    body = h.make_graph(
        [h.make_node("Identity", ["ci"], ["co"]), h.make_node("Exp", ["v"], ["ev"])],
        "body",
        [
            h.make_tensor_value_info("i", TensorProto.INT64, []),
            h.make_tensor_value_info("ci", TensorProto.BOOL, []),
            h.make_tensor_value_info("v", F, None),
        ],
        [
            h.make_tensor_value_info("co", TensorProto.BOOL, []),
            h.make_tensor_value_info("ev", F, None),
        ],
    )
    g.node.extend(
        [
            h.make_node("Reshape", ["x", "shape"], ["deep_r"]),
            h.make_node("MatMul", ["deep_r", "w"], ["deep_m"]),
            h.make_node("Loop", ["n", "c", "deep_m"], [f"y{depth - 1}"], body=body),
        ]
    )
    return model


def test_graphs_nested_deeper_than_onnx_parses_are_inferred_in_pieces() -> None:
    # onnx's parser refuses a model nested ~32 subgraphs deep as a whole; the pass infers it
    # in pieces, and the deepest values get the types they get in a shallow model
    deep = _deep_if_chain(45)
    with pytest.raises(Exception, match="[Ee]xceed|malformed|pars"):
        onnx.shape_inference.infer_shapes(deep, strict_mode=False)
    shallow_g, deep_g = neffkit.load(_deep_if_chain(3)), neffkit.load(deep)
    # called directly: run_checked prints the graph with onnx's printer, which parses it too
    assert "pieces" not in InferShapes().run(shallow_g, PassContext()).stats
    assert InferShapes().run(deep_g, PassContext()).stats["pieces"] == 1
    shallow, found = by_name(shallow_g), by_name(deep_g)
    assert found["deep_r"].type == TensorType(F, (2, 12))  # a shape computed 45 levels up
    assert found["deep_m"].type == TensorType(F, (2, 5))
    for name in ("deep_r", "deep_m", "ev"):
        assert found[name].type == shallow[name].type, name
