"""The exceptions neffkit raises, one small hierarchy a user can catch as ``NeffkitError``."""

from __future__ import annotations

from typing import Any


class NeffkitError(Exception):
    """Base class of every error neffkit raises on purpose (bad input, failed checks)."""


class FrontendError(NeffkitError):
    """A model could not be read: missing or corrupt file, bad reference, unsafe external data."""


class VerificationError(NeffkitError):
    """The IR broke a structural invariant (SSA, order, use-lists, types).

    Args:
        message: what is wrong.
        node: the offending node, when there is one; its op and name go into the message.
    """

    def __init__(self, message: str, node: Any = None) -> None:
        self.node = node
        if node is not None:
            message = f"{describe_node(node)}: {message}"
        super().__init__(message)


class PassError(NeffkitError):
    """A pass raised or left the IR invalid; names the pass and the passes that ran before it."""

    def __init__(self, pass_name: str, message: str, previous: list[str] | None = None) -> None:
        self.pass_name = pass_name
        self.previous = list(previous or [])
        before = ", ".join(self.previous) if self.previous else "none"
        super().__init__(f"pass '{pass_name}' failed: {message} (passes before it: {before})")


class BackendError(NeffkitError):
    """A graph could not be lowered or executed by a backend (unsupported op, bad input)."""


class NumericMismatchError(NeffkitError):
    """Two executions that should agree did not, beyond the tolerances."""


def describe_node(node: Any) -> str:
    """Returns "node 'name' (Op)" for error messages, tolerating nameless nodes."""
    op = node.op_type if not getattr(node, "domain", "") else f"{node.domain}::{node.op_type}"
    name = getattr(node, "name", "") or "<unnamed>"
    return f"node '{name}' ({op})"


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty),
    for one-line error reports."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
