"""cse merges identical nodes, commutative ones too, and reaches into subgraphs."""

from __future__ import annotations

from neffkit.passes.eliminate_common_subexpressions import EliminateCommonSubexpressions
from neffkit.testing import check_rewrite
from neffkit.testing.text import model_text

CSE = EliminateCommonSubexpressions()


def test_identical_nodes_merge() -> None:
    check_rewrite(
        CSE,
        model_text("""m (float[2,2] x, float[2,2] w) => (float[2,2] y) {
            a = MatMul(x, w) b = MatMul(x, w) y = Add(a, b) }"""),
        model_text("""m (float[2,2] x, float[2,2] w) => (float[2,2] y) {
            a = MatMul(x, w) y = Add(a, a) }"""),
    )


def test_commutative_inputs_match_swapped_but_others_do_not() -> None:
    check_rewrite(
        CSE,
        model_text(
            "m (float[2] x, float[2] z) => (float[2] y) {"
            " a = Add(x, z) b = Add(z, x) y = Sub(a, b) }"
        ),
        model_text("m (float[2] x, float[2] z) => (float[2] y) { a = Add(x, z) y = Sub(a, a) }"),
    )
    check_rewrite(
        CSE,
        model_text(
            "m (float[2] x, float[2] z) => (float[2] y) {"
            " a = Sub(x, z) b = Sub(z, x) y = Add(a, b) }"
        ),
        None,
    )


def test_different_attributes_do_not_merge() -> None:
    check_rewrite(
        CSE,
        model_text("""m (float[2,3] x) => (float[3,2] y, float[2,3] z) {
            y = Transpose<perm = [1, 0]>(x) z = Transpose<perm = [0, 1]>(x) }"""),
        None,
    )


def test_equal_constant_nodes_merge_and_random_ops_never_do() -> None:
    check_rewrite(
        CSE,
        model_text("""m (float[2] x) => (float[2] y) {
            a = Constant<value = float[2] {1.0, 2.0}>()
            b = Constant<value = float[2] {1.0, 2.0}>()
            s = Add(x, a) t = Add(x, b) y = Mul(s, t) }"""),
        model_text("""m (float[2] x) => (float[2] y) {
            a = Constant<value = float[2] {1.0, 2.0}>()
            s = Add(x, a) y = Mul(s, s) }"""),
    )
    check_rewrite(
        CSE,
        model_text("""m (float[2] x) => (float[2] y) {
            a = RandomUniformLike(x) b = RandomUniformLike(x) y = Add(a, b) }"""),
        None,
        numeric=False,
    )


def test_body_expression_reuses_the_outer_value() -> None:
    check_rewrite(
        CSE,
        model_text("""m (bool c, float[2] x) => (float[2] y) {
            t = Exp(x)
            y = If(c) <then_branch = g1 () => (float[2] a) { e = Exp(x) a = Add(e, t) },
                       else_branch = g2 () => (float[2] b) { b = Identity(t) }>
        }"""),
        model_text("""m (bool c, float[2] x) => (float[2] y) {
            t = Exp(x)
            y = If(c) <then_branch = g1 () => (float[2] a) { a = Add(t, t) },
                       else_branch = g2 () => (float[2] b) { b = Identity(t) }>
        }"""),
    )


def test_sibling_branches_do_not_share() -> None:
    check_rewrite(
        CSE,
        model_text("""m (bool c, float[2] x) => (float[2] y) {
            y = If(c) <then_branch = g1 () => (float[2] a) { a = Exp(x) },
                       else_branch = g2 () => (float[2] b) { b = Exp(x) }>
        }"""),
        None,
    )
