"""``fold``: constant folding, shapes included, in one onnxruntime run, with a size policy."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import neffkit
from neffkit.backends.onnx import to_onnx
from neffkit.backends.onnxruntime import run as ort_run
from neffkit.execution.compare import compare_all, explain
from neffkit.execution.inputs import random_inputs
from neffkit.ir.clone import clone_graph
from neffkit.ir.core import Graph
from neffkit.ir.text import normalize, parse, print_body
from neffkit.passes import PassContext, PassManager, PassResult, get_pass
from neffkit.passes.eliminate_dead_code import EliminateDeadCode
from neffkit.passes.fold_constants import FoldConstants
from neffkit.passes.infer_shapes import InferShapes
from neffkit.testing import run_checked
from neffkit.testing.synthetic import synthetic_model
from neffkit.testing.text import model_text


def fold(
    g: Graph,
    ctx: PassContext | None = None,
    *,
    numeric: bool = False,
    feeds: dict[str, np.ndarray] | None = None,
    **options: object,
) -> PassResult:
    """Runs the pass and checks it with ``run_checked`` (numbers only when ``numeric``)."""
    return run_checked(FoldConstants(**options), g, ctx=ctx, numeric=numeric, feeds=feeds)


def tidy(g: Graph) -> str:
    """The text after ``dce`` (fold leaves unused initializers to it)."""
    EliminateDeadCode().run(g, PassContext())
    return print_body(g)


def check_folds(before_text: str, after_text: str, **options: object) -> PassResult:
    g = parse(before_text)
    result = fold(g, numeric=True, **options)
    assert result.changed is True
    assert tidy(g) == normalize(after_text)
    return result


def check_unchanged(text: str, ctx: PassContext | None = None, **options: object) -> PassResult:
    g = parse(text)
    result = fold(g, ctx, **options)
    assert result.changed is False
    assert print_body(g) == normalize(text)
    return result


# -- what folds -------------------------------------------------------------------------------


def test_initializer_arithmetic_becomes_an_initializer() -> None:
    result = check_folds(
        model_text("""
        m (float[2] x) => (float[2] y) <float[2] w = {1, 2}, float[2] b = {3, 4}> {
            wb = Add(w, b)
            ww = Mul(wb, w)
            y = Mul(x, ww)
        }"""),
        model_text("""
        m (float[2] x) => (float[2] y) <float[2] ww = {4, 12}> {
            y = Mul(x, ww)
        }"""),
    )
    assert result.stats == {"nodes_folded": 2, "constants_created": 1, "bytes_created": 8}


def test_constant_node_chain_folds_and_its_constants_go() -> None:
    g = parse(
        model_text("""
        m (float[3] x) => (float[3] y) {
            a = Constant<value = float[3] {1, 2, 3}>()
            b = Constant<value_float = 2.0>()
            c = Mul(a, b)
            d = Neg(c)
            y = Add(x, d)
        }""")
    )
    result = fold(g, numeric=True)
    assert result.changed is True
    # the Constant nodes are gone without dce: fold removes what only it read
    assert print_body(g) == normalize(
        model_text("""
        m (float[3] x) => (float[3] y) <float[3] d = {-2, -4, -6}> {
            y = Add(x, d)
        }""")
    )


def test_shape_chain_folds_to_a_static_reshape() -> None:
    result = check_folds(
        model_text("""
        m (float[2, 3, 4] x) => (float[2, 12] y, int64 n) <int64[1] zero = {0}> {
            s = Shape(x)
            one = Constant<value = int64[1] {1}>()
            three = Constant<value = int64[1] {3}>()
            d0 = Gather<axis = 0>(s, zero)
            tail = Slice(s, one, three)
            p = ReduceProd<keepdims = 1>(tail)
            t = Concat<axis = 0>(d0, p)
            y = Reshape(x, t)
            n = Size(x)
        }"""),
        model_text("""
        m (float[2, 3, 4] x) => (float[2, 12] y, int64 n)
            <int64[2] t = {2, 12}, int64 n = {24}> {
            y = Reshape(x, t)
        }"""),
    )
    assert result.stats["nodes_folded"] == 6


def test_shape_slice_of_static_dims_folds_under_a_symbolic_batch() -> None:
    check_folds(
        model_text("""
        m (float[N, 3, 4] x) => (float[N, 12] y) <int64[1] minus1 = {-1}> {
            s = Shape<start = 1>(x)
            p = ReduceProd<keepdims = 1>(s)
            t = Concat<axis = 0>(minus1, p)
            y = Reshape(x, t)
        }"""),
        model_text("""
        m (float[N, 3, 4] x) => (float[N, 12] y) <int64[2] t = {-1, 12}> {
            y = Reshape(x, t)
        }"""),
    )


def test_constant_of_shape_folds() -> None:
    check_folds(
        model_text("""
        m (float[2, 3] x) => (float[2, 3] y) {
            s = Shape(x)
            c = ConstantOfShape<value = float[1] {0.5}>(s)
            y = Add(x, c)
        }"""),
        model_text("""
        m (float[2, 3] x) => (float[2, 3] y) <float[2, 3] c = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5}> {
            y = Add(x, c)
        }"""),
    )


def test_loop_body_folds_with_outer_constants() -> None:
    check_folds(
        model_text("""
        m (int64 n, bool c, float[2] x) => (float[2] out) <float[2] w = {1, 2}> {
            k = Constant<value = float[2] {3, 4}>()
            out = Loop(n, c, x) <body = b (int64 i, bool ci, float[2] v) => (bool co, float[2] r) {
                co = Identity(ci)
                kw = Mul(k, w)
                kn = Neg(kw)
                r = Add(v, kn)
            }>
        }"""),
        model_text("""
        m (int64 n, bool c, float[2] x) => (float[2] out) {
            out = Loop(n, c, x) <body = b (int64 i, bool ci, float[2] v) => (bool co, float[2] r)
                <float[2] kn = {-3, -8}> {
                co = Identity(ci)
                r = Add(v, kn)
            }>
        }"""),
    )


def test_if_branch_output_folds() -> None:
    check_folds(
        model_text("""
        m (bool c, float[2] x) => (float[2] out) {
            out = If(c) <then_branch = t () => (float[2] a) {
                k = Constant<value = float[2] {3, 4}>()
                a = Neg(k)
            }, else_branch = e () => (float[2] b) {
                b = Identity(x)
            }>
        }"""),
        model_text("""
        m (bool c, float[2] x) => (float[2] out) {
            out = If(c) <then_branch = t () => (float[2] a) <float[2] a = {-3, -4}> {
            }, else_branch = e () => (float[2] b) {
                b = Identity(x)
            }>
        }"""),
    )


def _model(nodes: list, inits: list, inputs: list, outputs: list) -> Graph:
    graph = helper.make_graph(nodes, "m", inputs, outputs, inits)
    return neffkit.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_dtypes_stay_exact_float16() -> None:
    w = np.array([0.1, 1.5, -2.25], np.float16)
    g = _model(
        [
            helper.make_node("Mul", ["w", "w"], ["ww"]),
            helper.make_node("Add", ["x", "ww"], ["y"]),
        ],
        [numpy_helper.from_array(w, "w")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [3])],
    )
    assert fold(g, numeric=True).changed is True
    ww = g.initializers["ww"].const
    assert ww.numpy().dtype == np.float16
    np.testing.assert_array_equal(ww.numpy(), w * w)


def test_an_op_onnxruntime_lacks_falls_back_to_the_reference_evaluator() -> None:
    # onnxruntime has no uint16 Add: the run is split, the Add evaluated by onnx's reference
    result = check_folds(
        model_text("""
        m (uint16[2] x, float[2] f) => (uint16[4] y, float[2] z)
            <uint16[2] a = {1, 2}, uint16[2] b = {3, 4}, float[2] w = {1, 2}> {
            ab = Add(a, b)
            y = Concat<axis = 0>(x, ab)
            wn = Neg(w)
            ww = Mul(wn, w)
            z = Add(f, ww)
        }"""),
        model_text("""
        m (uint16[2] x, float[2] f) => (uint16[4] y, float[2] z)
            <uint16[2] ab = {4, 6}, float[2] ww = {-1, -4}> {
            y = Concat<axis = 0>(x, ab)
            z = Add(f, ww)
        }"""),
    )
    assert result.stats["nodes_folded"] == 3


def test_numbers_agree_with_onnxruntime_through_the_pass_manager() -> None:
    g = parse(
        model_text("""
        m (float[N, 4] x) => (float[N, 2, 2] y) <float[4, 4] w = {
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
            float[4] b = {0.5, -0.5, 1, -1}> {
            wt = Transpose<perm = [1, 0]>(w)
            ws = Div(wt, b)
            h = MatMul(x, ws)
            s = Shape<start = 1>(h)
            two = Constant<value = int64[1] {2}>()
            half = Div(s, two)
            m1 = Constant<value = int64[1] {-1}>()
            t = Concat<axis = 0>(m1, two, half)
            y = Reshape(h, t)
        }""")
    )
    report = PassManager("shape-infer,fold,dce", verify_each=True).run(g)
    assert report.changed
    assert not any(n.op_type in ("Shape", "Concat", "Transpose", "Div") for n in g)
    second = PassManager("fold", verify_each=True).run(g)
    assert not second.changed


# -- what does not fold -----------------------------------------------------------------------


def test_non_constant_input_does_not_fold() -> None:
    check_unchanged(
        model_text("""
        m (float[2] x) => (float[2] y) <float[2] w = {1, 2}> {
            a = Add(x, w)
            y = Neg(a)
        }""")
    )


def test_random_ops_do_not_fold() -> None:
    check_unchanged(
        model_text("""
        m (float[2] x) => (float[2] y) {
            r = RandomNormal<shape = [2]>()
            s = Abs(r)
            y = Add(x, s)
        }""")
    )


def test_symbolic_shape_does_not_fold() -> None:
    check_unchanged(
        model_text("""
        m (float[N, 3] x) => (int64[2] s, int64 n) {
            s = Shape(x)
            n = Size(x)
        }""")
    )


def test_value_above_the_size_cap_is_not_created() -> None:
    text = model_text("""
        m (float[1000, 1000] x) => (float[1000, 1000] y) <int64[2] s = {1000, 1000}> {
            c = ConstantOfShape<value = float[1] {1}>(s)
            y = Add(x, c)
        }""")
    result = check_unchanged(text, ctx=PassContext(max_constant_bytes=1_000_000))
    assert result.stats == {"skipped_too_large": 1}
    result = check_unchanged(text, max_bytes=1000)
    assert result.stats == {"skipped_too_large": 1}


def test_huge_intermediate_is_never_computed() -> None:
    # 40 GB of zeros: estimated from the folded shape, so never evaluated; the shape folds
    g = parse(
        model_text("""
        m (float x) => (float y) <int64[1] a = {100000}, int64[1] b = {100000}> {
            s = Concat<axis = 0>(a, b)
            c = ConstantOfShape<value = float[1] {1}>(s)
            r = ReduceSum<keepdims = 0>(c)
            y = Add(x, r)
        }""")
    )
    start = time.perf_counter()
    result = fold(g)
    assert time.perf_counter() - start < 5
    assert result.stats["skipped_too_large"] >= 1
    assert tidy(g) == normalize(
        model_text("""
        m (float x) => (float y) <int64[2] s = {100000, 100000}> {
            c = ConstantOfShape<value = float[1] {1}>(s)
            r = ReduceSum<keepdims = 0>(c)
            y = Add(x, r)
        }""")
    )


def test_max_growth_keeps_weights_built_at_run_time() -> None:
    # light_* models: weights are ConstantOfShape of a few numbers; the shape still folds
    before = model_text("""
        m (float[8, 64] x) => (float[8, 64] y) <int64[1] r = {64}> {
            s = Concat<axis = 0>(r, r)
            w = ConstantOfShape<value = float[1] {0.01}>(s)
            y = MatMul(x, w)
        }""")
    g = parse(before)
    result = fold(g, max_growth=10.0)
    assert result.changed is True
    assert result.stats["skipped_too_large"] == 1
    assert tidy(g) == normalize(
        model_text("""
        m (float[8, 64] x) => (float[8, 64] y) <int64[2] s = {64, 64}> {
            w = ConstantOfShape<value = float[1] {0.01}>(s)
            y = MatMul(x, w)
        }""")
    )
    g = parse(before)
    assert fold(g).changed is True
    assert [n.op_type for n in g] == ["MatMul"]
    assert g.initializers["w"].const.shape == (64, 64)


V3 = """<ir_version: 3, opset_import: ["" : 9]>
    m (float[2] x, float[2] w) => (float[2] y) <float[2] w = {1, 2}> {
        n = Neg(w)
        y = Add(x, n)
    }"""


def test_overridable_ir3_input_is_not_a_constant_when_kept() -> None:
    check_unchanged(V3, ctx=PassContext(keep_overridable_inputs=True))


def test_ir3_input_with_initializer_folds_by_default() -> None:
    g = parse(V3)
    assert fold(g).changed is True
    assert [n.op_type for n in g] == ["Add"]
    np.testing.assert_array_equal(g.initializers["n"].const.numpy(), [-1, -2])
    # IR v3 wants every initializer listed as an input: the model moves to IR v4 instead
    assert g.meta.ir_version == 4
    onnx.checker.check_model(to_onnx(g))


def test_dead_foldable_nodes_are_left_to_dce() -> None:
    check_unchanged(
        model_text("""
        m (float[2] x) => (float[2] y) <float[2] w = {1, 2}> {
            dead = Neg(w)
            y = Relu(x)
        }""")
    )


# -- copies of live weights ------------------------------------------------------------------


def _tied_lm(vocab: int = 1000, dim: int = 64, seed: int = 0) -> Graph:
    """GPT-2's tied embedding: ``wte`` feeds ``Gather`` and, transposed, the LM head."""
    rng = np.random.default_rng(seed)
    wte = rng.standard_normal((vocab, dim)).astype(np.float32)
    wpe = rng.standard_normal((8, dim)).astype(np.float32)
    return _model(
        [
            helper.make_node("Gather", ["wte", "ids"], ["e"]),
            helper.make_node("Add", ["e", "wpe"], ["h"]),
            helper.make_node("Transpose", ["wte"], ["wt"], perm=[1, 0]),
            helper.make_node("MatMul", ["h", "wt"], ["logits"]),
        ],
        [numpy_helper.from_array(wte, "wte"), numpy_helper.from_array(wpe, "wpe")],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8, vocab])],
    )


def test_transpose_of_a_tied_embedding_is_not_stored_beside_it() -> None:
    g = _tied_lm()
    result = fold(g)
    assert result.changed is False
    assert result.stats == {"skipped_live_copy": 1}
    assert [n.op_type for n in g] == ["Gather", "Add", "Transpose", "MatMul"]


def test_tied_embedding_through_the_default_pipeline_keeps_its_bytes() -> None:
    from neffkit.passes.manager import constant_bytes

    g = _tied_lm()
    before = constant_bytes(g)
    ids = np.array([[3, 1, 4, 1, 5, 9, 2, 6]], np.int64)
    out, report = neffkit.optimize(g, target="onnxruntime", inputs={"ids": ids})
    assert report.ok
    assert constant_bytes(out) == before == report.passes.bytes_after
    (same,) = compare_all(ort_run(g, {"ids": ids}), ort_run(out, {"ids": ids}))
    assert same.ok, explain(same)
    # the old behaviour, now behind the option: a second, transposed copy of wte
    g = _tied_lm()
    assert fold(g, allow_live_copies=True).stats["bytes_created"] == 1000 * 64 * 4
    EliminateDeadCode().run(g, PassContext())
    assert constant_bytes(g) == 2 * 1000 * 64 * 4 + 8 * 64 * 4


def test_small_tied_weight_is_still_folded() -> None:
    # 16 x 8 floats = 512 bytes: a copy this small costs less than the Transpose it replaces
    g = _tied_lm(vocab=16, dim=8)
    result = fold(g, numeric=True)
    assert result.stats == {"nodes_folded": 1, "constants_created": 1, "bytes_created": 512}
    assert [n.op_type for n in g] == ["Gather", "Add", "MatMul"]


def test_weight_read_only_by_folded_nodes_pays_for_its_copies() -> None:
    # w dies, so its two transposed halves (2 KiB each) replace it byte for byte
    w = np.arange(64 * 16, dtype=np.float32).reshape(64, 16)
    g = _model(
        [
            helper.make_node("Split", ["w"], ["a", "b"], axis=0),
            helper.make_node("Transpose", ["a"], ["ta"], perm=[1, 0]),
            helper.make_node("Transpose", ["b"], ["tb"], perm=[1, 0]),
            helper.make_node("MatMul", ["x", "ta"], ["ya"]),
            helper.make_node("MatMul", ["x", "tb"], ["yb"]),
        ],
        [numpy_helper.from_array(w, "w")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
        [
            helper.make_tensor_value_info("ya", TensorProto.FLOAT, [2, 32]),
            helper.make_tensor_value_info("yb", TensorProto.FLOAT, [2, 32]),
        ],
    )
    result = fold(g, numeric=True)
    assert result.stats["nodes_folded"] == 3
    assert "skipped_live_copy" not in result.stats
    EliminateDeadCode().run(g, PassContext())
    assert sorted(v.const.nbytes for v in g.initializers.values()) == [2048, 2048]


def test_a_value_that_replaces_its_weight_may_be_larger_than_it() -> None:
    # BERT's token-type embedding: Gather of a dead 2 x 256 weight with constant ids is 16x
    # larger, but no copy: growth from what dies is max-growth's to refuse
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 256)).astype(np.float32)
    g = _model(
        [
            helper.make_node("Gather", ["w", "ids"], ["e"]),
            helper.make_node("Add", ["x", "e"], ["y"]),
        ],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.zeros((1, 16), np.int64), "ids"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 256])],
    )
    original = clone_graph(g)
    assert fold(g, numeric=True).stats == {
        "nodes_folded": 1,
        "constants_created": 1,
        "bytes_created": 16384,
    }
    g = clone_graph(original)
    assert fold(g, max_growth=1.0).stats == {"skipped_too_large": 1}


def test_two_folded_copies_of_one_weight_are_refused() -> None:
    # Transpose(w) and Neg(w) would both be stored: w's 4 KiB pay for one of them only, and
    # the node refused keeps w live, so the other one is refused as well
    text = model_text(f"""
        m (float[2, 32] x, float[32, 32] z) => (float[2, 32] y, float[32, 32] s) {{
            w = Constant<value = float[32, 32] {{{", ".join(["0.5"] * 1024)}}}>()
            t = Transpose<perm = [1, 0]>(w)
            y = MatMul(x, t)
            n = Neg(w)
            s = Add(z, n)
        }}""")
    result = check_unchanged(text)
    assert result.stats == {"skipped_live_copy": 2}


# -- registry, options, scale -----------------------------------------------------------------


def test_registered_with_options() -> None:
    cls = get_pass("fold")
    assert cls is FoldConstants
    names = [o[0] for o in cls.options()]
    assert names == ["max-bytes", "max-growth", "allow-live-copies"]
    assert FoldConstants(max_growth=4.0).spec() == "fold{max-growth=4.0}"
    assert FoldConstants(allow_live_copies=True).spec() == "fold{allow-live-copies=true}"


def test_many_foldable_nodes_use_one_evaluation() -> None:
    nodes, inits, x = [], [], "x"
    for i in range(3000):
        inits.append(numpy_helper.from_array(np.full(4, i, np.float32), f"w{i}"))
        nodes += [
            helper.make_node("Neg", [f"w{i}"], [f"n{i}"]),
            helper.make_node("Mul", [f"n{i}", f"n{i}"], [f"m{i}"]),
            helper.make_node("Add", [x, f"m{i}"], [f"y{i}"]),
        ]
        x = f"y{i}"
    g = _model(
        nodes,
        inits,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [4])],
    )
    start = time.perf_counter()
    result = FoldConstants().run(g, PassContext())
    seconds = time.perf_counter() - start
    print(f"fold of 6000 foldable nodes: {seconds:.2f}s")
    assert result.stats["nodes_folded"] == 6000
    assert len(g) == 3000
    assert seconds < 20


def test_synthetic_100k_runs_through_shape_infer_and_fold_quickly() -> None:
    g = neffkit.load(synthetic_model(100_000))
    start = time.perf_counter()
    InferShapes().run(g, PassContext())
    FoldConstants().run(g, PassContext())
    seconds = time.perf_counter() - start
    print(f"shape-infer,fold on {len(g)} nodes: {seconds:.2f}s")
    assert seconds < 30


@pytest.mark.parametrize("seed", [0, 1])
def test_random_inputs_agree_after_folding_a_mixed_model(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    g = _model(
        [
            helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
            helper.make_node("Exp", ["wt"], ["we"]),
            helper.make_node("MatMul", ["x", "we"], ["h"]),
            helper.make_node("Shape", ["h"], ["s"]),
            helper.make_node(
                "ConstantOfShape",
                ["s"],
                ["ones"],
                value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
            ),
            helper.make_node("Add", ["h", "ones"], ["y"]),
        ],
        [numpy_helper.from_array(w, "w")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
    )
    InferShapes().run(g, PassContext())
    assert fold(g, numeric=True, feeds=random_inputs(g, seed=seed)).changed is True
    assert [n.op_type for n in g] == ["MatMul", "Add"]
    assert onnx.checker.check_model(to_onnx(g)) is None


def test_light_model_weights_built_at_run_time_stay_unfolded_under_max_growth() -> None:
    from neffkit.passes.manager import constant_bytes
    from neffkit.testing.onnx_cases import data_dir

    path = f"{data_dir()}/light/light_squeezenet.onnx"
    g = neffkit.load(path)
    PassManager("fold,dce", verify_each=True).run(g)
    assert constant_bytes(g) > 4_000_000  # every ConstantOfShape weight materialized
    g = neffkit.load(path)
    report = PassManager("fold{max-growth=100},dce", verify_each=True).run(g)
    assert report.changed
    assert constant_bytes(g) < 20_000
    assert sum(n.op_type == "ConstantOfShape" for n in g) >= 26


_CAST_FLOATS = np.array(
    [-1e6, -300.5, -9.5, -8.5, -8, -7.5, -2.5, -1.5, -0.5, -0.0, 0.0, 0.25, 0.5, 1.05, 1.5, 2.5,
     3.5, 5.01, 6.5, 7.5, 8, 15.9, 16, 17, 3e9, 1e30, np.nan, np.inf, -np.inf],
    dtype=np.float32,
)  # fmt: skip


@pytest.mark.parametrize(
    "to, attrs",
    [
        (TensorProto.INT4, {}),
        (TensorProto.UINT4, {}),
        (TensorProto.INT2, {}),
        (TensorProto.UINT2, {}),
        (TensorProto.FLOAT4E2M1, {}),
        (TensorProto.FLOAT8E8M0, {}),
        (TensorProto.FLOAT8E8M0, {"saturate": 0, "round_mode": "nearest"}),
    ],
)
def test_cast_to_types_numpy_lacks_folds_as_the_torch_backend_casts(to: int, attrs: dict) -> None:
    # fold computes these casts with neffkit's own rules (neffkit.ir.casts), not onnxruntime's
    # (which rounds float -> int4 half away from zero) nor the installed ml_dtypes'
    x = np.abs(_CAST_FLOATS) if to == TensorProto.FLOAT8E8M0 else _CAST_FLOATS
    nodes = [
        helper.make_node("Cast", ["c"], ["q"], to=to, **attrs),
        helper.make_node("Cast", ["q"], ["y"], to=TensorProto.FLOAT),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [len(x)])],
        [numpy_helper.from_array(x, "c")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 25)])
    graph = neffkit.load(model)
    want = neffkit.run(graph, {}, backend="torch")[0]
    result = fold(graph)
    assert result.changed
    assert len(graph) == 0
    (got,) = neffkit.run(graph, {}, backend="torch")
    np.testing.assert_array_equal(got, want)
