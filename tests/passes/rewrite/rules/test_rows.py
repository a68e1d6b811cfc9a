"""``flatten_row_region``: row-wise regions run on 2-D rows (MatMul + Add -> Gemm): before /
after as text, non-cases, onnxruntime agreement on random inputs (symbolic dims fed as 2), the
changed flag and a fixed point after one run."""

from __future__ import annotations

import time

import pytest

import neffkit
from neffkit.ir.text import parse, print_body
from neffkit.passes import PassContext, PassManager
from neffkit.passes.simplify import Simplify
from neffkit.testing import check_rewrite

from .helpers import B2, W2, B, W, model_with, run


def test_linear_and_layer_norm_run_on_rows() -> None:
    # MatMul + Add + LayerNormalization over [1, 2, 4] feed a Reshape: one Reshape to rows in,
    # the Reshape out fuses with the one that reads the result
    inits = (
        f"{W}, {B}, float[3] s = {{1, 2, 3}}, float[3] t = {{0, 1, 0}}, int64[3] r = {{1, 6, 1}}"
    )
    before = model_with(
        "(float[1,2,4] x) => (float[1,6,1] y)",
        inits,
        "m = MatMul(x, w)\na = Add(m, b)\n"
        "h = LayerNormalization<axis=-1>(a, s, t)\ny = Reshape(h, r)",
    )
    after = model_with(
        "(float[1,2,4] x) => (float[1,6,1] y)",
        f"{inits}, int64[2] rows_shape = {{-1, 4}}, float[2,4] x_rows, float[2,3] a, float[2,3] h",
        "x_rows = Reshape(x, rows_shape)\na = Gemm(x_rows, w, b)\n"
        "h = LayerNormalization<axis=-1>(a, s, t)\ny = Reshape(h, r)",
    )
    run(before, after)


def test_projections_of_one_input_share_its_reshape() -> None:
    # q, k, v of one input: three MatMul + Add pairs -> one Reshape and three Gemms
    inits = f"{W}, {B}, float[4,3] w2 = {{1,2,3,4,5,6,7,8,9,10,11,12}}, int64[4] r = {{1,2,3,1}}"
    body = (
        "m = MatMul(x, w)\na = Add(m, b)\np = Reshape(a, r)\n"
        "m2 = MatMul(x, w2)\na2 = Add(b, m2)\nq = Reshape(a2, r)\n"
        "m3 = MatMul(x, w)\na3 = Add(m3, b)\nk = Reshape(a3, r)"
    )
    sig = "(float[1,2,4] x) => (float[1,2,3,1] p, float[1,2,3,1] q, float[1,2,3,1] k)"
    after = model_with(
        sig,
        f"{inits}, int64[2] rows_shape = {{-1, 4}}, float[2,4] x_rows, float[2,3] a, "
        "float[2,3] a2, float[2,3] a3",
        "x_rows = Reshape(x, rows_shape)\na = Gemm(x_rows, w, b)\np = Reshape(a, r)\n"
        "a2 = Gemm(x_rows, w2, b)\nq = Reshape(a2, r)\na3 = Gemm(x_rows, w, b)\nk = Reshape(a3, r)",
    )
    run(model_with(sig, inits, body), after)


def test_symbolic_rows_and_an_output_read_by_the_region() -> None:
    # [1, T, 4] with T symbolic; the residual Add reads the region's input again; the result is
    # a graph output: it keeps its name, through a Reshape back to [1, T, 4]
    inits = f"{W}, {B}, {W2}, {B2}"
    sig = "(float[1,T,4] x) => (float[1,T,4] y)"
    body = (
        "m = MatMul(x, w)\na = Add(m, b)\nh = Relu(a)\n"
        "m2 = MatMul(h, v)\na2 = Add(c, m2)\ny = Add(a2, x)"
    )
    after = model_with(
        sig,
        f"{inits}, int64[2] rows_shape = {{-1, 4}}, int64[3] rows_shape_1 = {{1, -1, 4}}, "
        "float[T,4] x_rows, float[T,3] a, float[T,3] h, float[T,4] a2, float[T,4] y_rows",
        "x_rows = Reshape(x, rows_shape)\na = Gemm(x_rows, w, b)\nh = Relu(a)\n"
        "a2 = Gemm(h, v, c)\ny_rows = Add(a2, x_rows)\ny = Reshape(y_rows, rows_shape_1)",
    )
    run(model_with(sig, inits, body), after)


def test_reshape_like_producer_fuses_with_the_way_in() -> None:
    # the Unsqueeze that made [1, 2, 4] fuses with the Reshape to rows, which then is x itself
    inits = f"{W}, {B}, int64[1] z = {{0}}, int64[3] r = {{2, 3, 1}}, float[1,2,4] u"
    sig = "(float[2,4] x) => (float[2,3,1] y)"
    body = "u = Unsqueeze(x, z)\nm = MatMul(u, w)\na = Add(m, b)\ny = Reshape(a, r)"
    after = model_with(
        sig,
        f"{W}, {B}, int64[1] z = {{0}}, int64[3] r = {{2, 3, 1}}, float[2,3] a",
        "a = Gemm(x, w, b)\ny = Reshape(a, r)",
    )
    run(model_with(sig, inits, body), after)


def test_position_table_constant_takes_the_row_shape() -> None:
    # Add(x, P[1, 2, 4]) in the region reads P as [2, 4]
    inits = f"{W}, {B}, float[1,2,4] pos = {{1, 2, 3, 4, 5, 6, 7, 8}}, int64[3] r = {{1, 3, 2}}"
    sig = "(float[1,2,4] x) => (float[1,3,2] y)"
    body = "e = Add(x, pos)\nm = MatMul(e, w)\na = Add(m, b)\ny = Reshape(a, r)"
    g = parse(model_with(sig, inits, body))
    Simplify().run(g, PassContext())
    assert [(n.op_type, [v.shape for v in n.inputs]) for n in g] == [
        ("Reshape", [(1, 2, 4), (2,)]),
        ("Add", [(2, 4), (2, 4)]),
        ("Gemm", [(2, 4), (4, 3), (3,)]),
        ("Reshape", [(2, 3), (3,)]),
    ]
    check_rewrite(Simplify(), model_with(sig, inits, body), print_body(g))


def test_softmax_and_elementwise_ops_on_the_last_axis_join_the_region() -> None:
    inits = f"{W}, {B}, {W2}, {B2}, float s = {{2.0}}"
    sig = "(float[1,3,4] x) => (float[1,3,4] y)"
    body = (
        "m = MatMul(x, w)\na = Add(m, b)\nd = Div(a, s)\ne = Erf(d)\nf = Mul(e, a)\n"
        "p = Softmax<axis=-1>(f)\nm2 = MatMul(p, v)\na2 = Add(m2, c)\ny = Add(a2, x)"
    )
    g = parse(model_with(sig, inits, body))
    r = Simplify().run(g, PassContext())
    assert r.stats["flatten_row_region"] == 1 and r.stats["fuse_matmul_add"] == 2
    assert [n.op_type for n in g] == [
        "Reshape", "Gemm", "Div", "Erf", "Mul", "Softmax", "Gemm", "Add", "Reshape",
    ]  # fmt: skip
    check_rewrite(Simplify(), model_with(sig, inits, body), print_body(g))


@pytest.mark.parametrize(
    ("opset", "x", "softmax", "axis_after"),
    [
        (17, "float[2,3,4]", "Softmax<axis=2>", -1),  # static batch and rows: 6 rows
        (12, "float[1,3,4]", "Softmax<axis=2>", 1),  # opset < 13: axis 1 of the 2-D view
        (12, "float[1,3,4]", "LogSoftmax<axis=-1>", 1),
    ],
)
def test_softmax_axis_on_the_rows(opset: int, x: str, softmax: str, axis_after: int) -> None:
    inits = f"{W}, {B}, int64[2] r = {{-1, 3}}"
    body = f"p = {softmax}(x)\nm = MatMul(p, w)\na = Add(m, b)\ny = Reshape(a, r)"
    text = model_with(f"({x} x) => (float[6,3] y)", inits, body, opset=opset)
    g = parse(text)
    Simplify().run(g, PassContext())
    assert [n.op_type for n in g] == ["Reshape", softmax.split("<")[0], "Gemm"]
    assert list(g)[1].attr("axis") == axis_after
    check_rewrite(Simplify(), text, print_body(g))


def test_inside_an_if_branch_the_outer_input_is_reshaped_at_the_branch_start() -> None:
    then = (
        "then_branch = t () => (float[1,2,3,1] ty) {\n"
        "  m = MatMul(x, w)\n  a = Add(m, b)\n  ty = Reshape(a, r)\n}"
    )
    els = "else_branch = e () => (float[1,2,3,1] ey) {\n  ey = Reshape(z, r)\n}"
    inits = f"{W}, {B}, int64[4] r = {{1, 2, 3, 1}}, float[1,2,3] z = {{1,2,3,4,5,6}}"
    text = model_with(
        "(float[1,2,4] x, bool cond) => (float[1,2,3,1] y)",
        inits,
        f"y = If(cond) <{then}, {els}>",
    )
    g = parse(text)
    r = Simplify().run(g, PassContext())
    assert r.stats["flatten_row_region"] == 1
    body = next(iter(g)).subgraphs[0]
    assert [n.op_type for n in body] == ["Reshape", "Gemm", "Reshape"]
    PassManager("simplify", verify_each=True).run(parse(text))


@pytest.mark.parametrize(
    ("sig", "body"),
    [
        # one MatMul + Add from an input to an output: a Reshape in and one out cost more
        ("(float[1,2,4] x) => (float[1,2,3] y)", "m = MatMul(x, w)\ny = Add(m, b)"),
        # no bias: no Gemm to gain
        ("(float[1,2,4] x) => (float[1,6] y)", "m = MatMul(x, w)\ny = Reshape(m, r)"),
        # two symbolic leading dims: no constant shape to go back to
        ("(float[B,T,4] x) => (float[N] y)", "m = MatMul(x, w)\na = Add(m, b)\ny = Reshape(a, f)"),
        # already 2-D: fuse_matmul_add's business, nothing to flatten
        ("(float[2,4] x) => (float[2,3] y)", "m = MatMul(x, w)\na = Sub(m, b)\ny = Relu(a)"),
    ],
)
def test_region_kept(sig: str, body: str) -> None:
    inits = f"{W}, {B}, int64[2] r = {{-1, 6}}, int64[1] f = {{-1}}"
    run(model_with(sig, inits, body), None)


@pytest.mark.parametrize(
    ("first", "rank3"),
    [
        # z broadcasts over the leading dims of x: that Add stays out of the region
        ("e = Add(x, z)", "Add"),
        # Softmax over a leading axis is no row-wise op
        ("e = Softmax<axis=1>(x)", "Softmax"),
    ],
)
def test_what_is_not_row_wise_stays_on_the_full_shape(first: str, rank3: str) -> None:
    inits = f"{W}, {B}, int64[2] r = {{-1, 6}}, float[2,2,4] e"
    sig = "(float[2,2,4] x, float[1,2,4] z) => (float[2,6] y)"
    body = f"{first}\nm = MatMul(e, w)\na = Add(m, b)\ny = Reshape(a, r)"
    g = parse(model_with(sig, inits, body))
    assert Simplify().run(g, PassContext()).stats["flatten_row_region"] == 1
    assert [(n.op_type, len(n.outputs[0].shape)) for n in g] == [
        (rank3, 3),
        ("Reshape", 2),
        ("Gemm", 2),
        ("Reshape", 2),
    ]
    check_rewrite(Simplify(), model_with(sig, inits, body), print_body(g))


def test_shared_table_is_not_copied_into_the_row_shape() -> None:
    # the [1, 256, 4] table is read outside the region too: a [256, 4] copy would add bytes
    table = ", ".join(str(i % 7) for i in range(1024))
    inits = f"{W}, {B}, float[1,256,4] pos = {{{table}}}, int64[2] r = {{-1, 768}}"
    sig = "(float[1,256,4] x, float[1,256,4] z) => (float[1,768] y, float[1,256,4] o)"
    body = "e = Add(x, pos)\nm = MatMul(e, w)\na = Add(m, b)\ny = Reshape(a, r)\no = Mul(z, pos)"
    run(model_with(sig, inits, body), None)


def test_integer_matmul_region_kept() -> None:
    inits = "int32[4,3] w = {1,2,3,4,5,6,7,8,9,10,11,12}, int32[3] b = {1,2,3}, int64[2] r = {1,6}"
    body = "m = MatMul(x, w)\na = Add(m, b)\ny = Reshape(a, r)"
    run(model_with("(int32[1,2,4] x) => (int32[1,6] y)", inits, body), None)


def test_pipeline_reaches_a_fixed_point_on_a_transformer_block() -> None:
    # the default pipeline twice: the second run changes nothing

    inits = f"{W}, {B}, {W2}, {B2}, float[4] s = {{1, 1, 2, 2}}, float[4] t = {{0, 0, 1, 1}}"
    body = (
        "n = LayerNormalization<axis=-1>(x, s, t)\nm = MatMul(n, w)\na = Add(m, b)\n"
        "h = Sigmoid(a)\ng = Mul(a, h)\nm2 = MatMul(g, v)\na2 = Add(m2, c)\ny = Add(a2, x)"
    )
    proto = neffkit.to_onnx(parse(model_with("(float[1,T,4] x) => (float[1,T,4] y)", inits, body)))
    g, report = neffkit.optimize(proto, verify=True)
    assert report.ok
    assert [n.op_type for n in g].count("Gemm") == 2
    _, again = neffkit.optimize(neffkit.to_onnx(g), verify=False)
    assert again.passes.changed is False


def test_rules_are_near_linear_on_many_regions() -> None:
    # 400 independent two-layer blocks (each its own region) simplify in well under a second

    n = 400
    inits = f"{W}, {B}, {W2}, {B2}"
    body = []
    outs = []
    for i in range(n):
        body.append(
            f"m{i} = MatMul(x, w)\na{i} = Add(m{i}, b)\nh{i} = Relu(a{i})\n"
            f"q{i} = MatMul(h{i}, v)\nr{i} = Add(q{i}, c)\ny{i} = Add(r{i}, x)"
        )
        outs.append(f"float[1,2,4] y{i}")
    g = parse(model_with(f"(float[1,2,4] x) => ({', '.join(outs)})", inits, "\n".join(body)))
    t = time.perf_counter()
    r = Simplify().run(g, PassContext())
    assert time.perf_counter() - t < 5.0
    assert r.stats["flatten_row_region"] == n
    ops = [node.op_type for node in g]
    assert ops.count("Gemm") == 2 * n and ops.count("Reshape") == n + 1  # x's Reshape is shared
