"""The error hierarchy: everything a user can catch is a NeffkitError, and the messages name
the node, the pass and the passes before it as promised."""

from __future__ import annotations

import pytest

from neffkit.errors import (
    BackendError,
    FrontendError,
    NeffkitError,
    NumericMismatchError,
    PassError,
    VerificationError,
    describe_node,
    first_line,
)
from neffkit.ir.core import Node


@pytest.mark.parametrize(
    "cls", [FrontendError, VerificationError, PassError, BackendError, NumericMismatchError]
)
def test_every_error_is_a_neffkit_error(cls: type[Exception]) -> None:
    assert issubclass(cls, NeffkitError)
    assert issubclass(NeffkitError, Exception)


def test_describe_node_names_op_and_name() -> None:
    assert describe_node(Node("Relu", [], name="act")) == "node 'act' (Relu)"


def test_describe_node_tolerates_a_nameless_node() -> None:
    assert describe_node(Node("Relu", [])) == "node '<unnamed>' (Relu)"


def test_describe_node_qualifies_a_custom_domain() -> None:
    node = Node("Gelu", [], domain="com.microsoft", name="g")
    assert describe_node(node) == "node 'g' (com.microsoft::Gelu)"


def test_verification_error_prefixes_the_node() -> None:
    node = Node("Add", [], name="add0")
    e = VerificationError("input 1 is defined later", node)
    assert str(e) == "node 'add0' (Add): input 1 is defined later"
    assert e.node is node


def test_verification_error_without_a_node_keeps_the_message() -> None:
    e = VerificationError("graph output y has no producer")
    assert str(e) == "graph output y has no producer"
    assert e.node is None


def test_pass_error_names_the_pass_and_its_history() -> None:
    e = PassError("fold", "boom", ["dedup", "cse"])
    assert str(e) == "pass 'fold' failed: boom (passes before it: dedup, cse)"
    assert (e.pass_name, e.previous) == ("fold", ["dedup", "cse"])


def test_pass_error_of_the_first_pass_says_none_before() -> None:
    e = PassError("dce", "boom")
    assert str(e) == "pass 'dce' failed: boom (passes before it: none)"
    assert e.previous == []


def test_pass_error_keeps_its_own_copy_of_the_history() -> None:
    history = ["dedup"]
    e = PassError("fold", "boom", history)
    history.append("cse")
    assert e.previous == ["dedup"]


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (ValueError("one"), "one"),
        (ValueError("first\nsecond\nthird"), "first"),
        (ValueError("\n\n  first\nrest"), "first"),
        (ValueError(""), "ValueError"),
        (FrontendError("   \n"), "FrontendError"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
    ],
)
def test_first_line(error: BaseException, line: str) -> None:
    assert first_line(error) == line
