"""dedup keeps one copy of each distinct constant across scopes and drops copy nodes."""

from __future__ import annotations

from neffkit.ir.text import parse
from neffkit.passes import PassContext
from neffkit.passes.deduplicate_tensors import DeduplicateTensors
from neffkit.testing import check_rewrite
from neffkit.testing.text import model_text

DEDUP = DeduplicateTensors()


def test_equal_initializers_and_constant_nodes_merge() -> None:
    g = check_rewrite(
        DEDUP,
        model_text("""m (float[3] x) => (float[3] y)
           <float[3] w1 = {1.0, 2.0, 3.0}, float[3] w2 = {1.0, 2.0, 3.0}> {
            c = Constant<value = float[3] {1.0, 2.0, 3.0}>()
            a = Add(x, w1) b = Mul(a, w2) y = Sub(b, c) }"""),
        model_text("""m (float[3] x) => (float[3] y) <float[3] w1 = {1.0, 2.0, 3.0}> {
            a = Add(x, w1) b = Mul(a, w1) y = Sub(b, w1) }"""),
    )
    assert len(g.initializers) == 1


def test_same_bytes_different_dtype_or_shape_stay_apart() -> None:
    check_rewrite(
        DeduplicateTensors(constant_nodes=False),
        model_text("""m (float[2,2] x, int32[4] i) => (float[2,2] y, int32[4] j)
           <float[2,2] w1 = {1.0, 2.0, 3.0, 4.0}, float[4] w2 = {1.0, 2.0, 3.0, 4.0},
            int32[4] w3 = {1, 2, 3, 4}> {
            r = Reshape(w2, s) s = Constant<value = int64[2] {2, 2}>()
            y = Add(x, w1) j = Add(i, w3) }""").replace(
            "r = Reshape(w2, s) s = Constant<value = int64[2] {2, 2}>()",
            "s = Constant<value = int64[2] {2, 2}>() r = Reshape(w2, s) t = Add(r, w1)",
        ),
        None,
    )


def test_constant_in_a_body_merges_with_the_outer_copy() -> None:
    check_rewrite(
        DEDUP,
        model_text("""m (bool c, float[2] x) => (float[2] y) <float[2] w = {5.0, 6.0}> {
            t = Add(x, w)
            y = If(c) <then_branch = g1 () => (float[2] a) {
                            k = Constant<value = float[2] {5.0, 6.0}>() a = Mul(t, k) },
                       else_branch = g2 () => (float[2] b) { b = Identity(t) }>
        }"""),
        model_text("""m (bool c, float[2] x) => (float[2] y) <float[2] w = {5.0, 6.0}> {
            t = Add(x, w)
            y = If(c) <then_branch = g1 () => (float[2] a) { a = Mul(t, w) },
                       else_branch = g2 () => (float[2] b) { b = t }>
        }""").replace("b = t", "b = Identity(t)"),
        ctx=PassContext(),
    )


def test_identity_and_same_type_cast_copies_are_removed() -> None:
    check_rewrite(
        DEDUP,
        model_text("""m (float[2] x) => (float[2] y) {
            a = Identity(x) b = Cast<to = 1>(a) c = Relu(b) y = Identity(c) }"""),
        model_text("m (float[2] x) => (float[2] y) { y = Relu(x) }"),
    )


def test_cast_that_changes_type_and_broadcasting_expand_stay() -> None:
    check_rewrite(
        DeduplicateTensors(constant_nodes=False),
        model_text("""m (float[2] x) => (double[2] y, float[3,2] z) {
            s = Constant<value = int64[2] {3, 2}>()
            y = Cast<to = 11>(x) z = Expand(x, s) }"""),
        None,
    )


def test_overridable_initializers_are_kept_when_asked() -> None:
    text = """<ir_version: 3, opset_import: ["" : 9]>
        m (float[2] x, float[2] w1, float[2] w2) => (float[2] y)
        <float[2] w1 = {1.0, 2.0}, float[2] w2 = {1.0, 2.0}> {
            a = Add(x, w1) y = Mul(a, w2) }"""
    g = parse(text)
    assert DEDUP.run(g, PassContext(keep_overridable_inputs=True)).changed is False
    g = parse(text)
    assert DEDUP.run(g, PassContext()).changed is True
    assert [v.name for v in g.inputs] == ["x", "w1"]


def test_constant_nodes_become_initializers_except_graph_outputs() -> None:
    g = check_rewrite(
        DEDUP,
        model_text("""m (float[2] x) => (float[2] y, int64[1] k) {
            a = Constant<value_float = 2.5>()
            b = Constant<value = float[2] {1.0, 3.0}>()
            k = Constant<value_ints = [7]>()
            s = Mul(x, a) y = Add(s, b) }"""),
        model_text("""m (float[2] x) => (float[2] y, int64[1] k)
            <float a = {2.5}, float[2] b = {1.0, 3.0}> {
            k = Constant<value_ints = [7]>()
            s = Mul(x, a) y = Add(s, b) }"""),
    )
    assert sorted(g.initializers) == ["a", "b"]


def test_expand_that_keeps_the_shape_is_removed() -> None:
    sig = "m (float[2,3] x) => (float[2,3] y) <int64[2] s = {1, 3}>"
    check_rewrite(
        DeduplicateTensors(constant_nodes=False),
        model_text(sig + " { e = Expand(x, s) y = Relu(e) }"),
        model_text(sig + " { y = Relu(x) }"),
    )
