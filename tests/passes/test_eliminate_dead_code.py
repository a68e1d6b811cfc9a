"""dce removes dead nodes, unused constants and unused subgraph outputs, and nothing else."""

from __future__ import annotations

from neffkit.passes.eliminate_dead_code import EliminateDeadCode
from neffkit.testing import check_rewrite
from neffkit.testing.text import model_text


def test_dead_chain_goes_in_one_run() -> None:
    check_rewrite(
        EliminateDeadCode(),
        model_text("m (float[2] x) => (float[2] y) { t = Relu(x) u = Exp(t) y = Neg(x) }"),
        model_text("m (float[2] x) => (float[2] y) { y = Neg(x) }"),
    )


def test_unused_initializer_is_removed() -> None:
    check_rewrite(
        EliminateDeadCode(),
        model_text("m (float[2] x) => (float[2] y) <float[2] w = {1.0, 2.0}> { y = Neg(x) }"),
        model_text("m (float[2] x) => (float[2] y) { y = Neg(x) }"),
    )


def test_nothing_dead_is_a_non_case() -> None:
    check_rewrite(
        EliminateDeadCode(),
        model_text("m (float[2] x) => (float[2] y, float[2] z) { y = Neg(x) z = Relu(y) }"),
        None,
    )


def test_value_read_only_inside_a_branch_is_live() -> None:
    check_rewrite(
        EliminateDeadCode(),
        model_text("""m (bool c, float[2] x) => (float[2] y) {
            t = Relu(x)
            y = If(c) <then_branch = g1 () => (float[2] a) { a = Neg(t) },
                       else_branch = g2 () => (float[2] b) { b = Identity(x) }>
        }"""),
        None,
    )


def test_unused_if_output_is_trimmed_from_node_and_branches() -> None:
    check_rewrite(
        EliminateDeadCode(),
        model_text("""m (bool c, float[2] x) => (float[2] y) {
            y, unused = If(c) <then_branch = g1 () => (float[2] a, float[2] a2) {
                                    a = Neg(x) a2 = Exp(x) },
                               else_branch = g2 () => (float[2] b, float[2] b2) {
                                    b = Identity(x) b2 = Relu(x) }>
        }"""),
        model_text("""m (bool c, float[2] x) => (float[2] y) {
            y = If(c) <then_branch = g1 () => (float[2] a) { a = Neg(x) },
                       else_branch = g2 () => (float[2] b) { b = Identity(x) }>
        }"""),
    )


def test_unused_loop_scan_output_is_trimmed() -> None:
    check_rewrite(
        EliminateDeadCode(),
        model_text("""m (int64 n, float[2] x) => (float[2] y) {
            c = Constant<value = bool {1}>()
            y, scan = Loop(n, c, x) <body = b (int64 i, bool ci, float[2] v) => (bool co,
                                                     float[2] w, float[2] s) {
                co = Identity(ci)
                w = Add(v, x)
                s = Exp(v)
            }>
        }"""),
        model_text("""m (int64 n, float[2] x) => (float[2] y) {
            c = Constant<value = bool {1}>()
            y = Loop(n, c, x) <body = b (int64 i, bool ci, float[2] v) => (bool co,
                                                     float[2] w) {
                co = Identity(ci)
                w = Add(v, x)
            }>
        }"""),
        numeric=False,  # the loop count input is random here; structure is what matters
    )
