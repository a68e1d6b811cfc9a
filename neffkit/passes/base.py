"""What a pass is: a frozen dataclass with a kebab-case ``name``, options as fields, and
``run(graph, ctx) -> PassResult`` that mutates the graph in place.

Example::

    @register
    @dataclass(frozen=True)
    class EliminateDeadCode(Pass):
        \"\"\"Removes nodes whose results nobody reads.\"\"\"
        name: ClassVar[str] = "dce"
        description: ClassVar[str] = "remove dead nodes, constants and subgraph outputs"

        def run(self, graph: Graph, ctx: PassContext) -> PassResult:
            ...
            return PassResult(changed=removed > 0, stats={"nodes_removed": removed})
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph, Node

log = logging.getLogger("neffkit.passes")


@dataclass
class PassResult:
    """Whether a pass changed the graph, and counters saying what it did."""

    changed: bool
    stats: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.changed


@dataclass
class PassContext:
    """Settings shared by the passes of one run.

    Attributes:
        target: the backend the result is for (``torch``, ``onnxruntime``, ``neuron``).
        max_constant_bytes: no pass materializes a constant larger than this.
        keep_overridable_inputs: treat IR v3 inputs that have an initializer as inputs (the
            caller may feed them), not as constants.
    """

    target: str = "torch"
    max_constant_bytes: int = 64 * 1024 * 1024
    keep_overridable_inputs: bool = False
    options: dict[str, Any] = field(default_factory=dict)


class Pass:
    """Base of every pass. Subclasses are frozen dataclasses; fields are the options."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: True when running the pass twice in a row must change nothing the second time.
    idempotent: ClassVar[bool] = True

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Transforms ``graph`` in place."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        """Refuses option values of the wrong type or sign, however the pass was made.

        Every numeric option of a built-in pass is a size, count or ratio: a negative or
        non-finite value is a mistake, not a way to turn something off (0 does that).
        """
        for f in dataclasses.fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            check_option(type(self).name, f.name, f.default, getattr(self, f.name))

    @classmethod
    def options(cls) -> list[tuple[str, str, Any, str]]:
        """``(kebab-name, type name, default, help)`` for each option field."""
        out = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # subclasses are dataclasses
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            out.append((f.name.replace("_", "-"), typ, default, f.metadata.get("help", "")))
        return out

    def spec(self) -> str:
        """The pipeline text of this pass with its non-default options (``fold{max-bytes=1}``)."""
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            value = getattr(self, f.name)
            default = f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if value != default:
                parts.append(f"{f.name.replace('_', '-')}={_fmt(value)}")
        return self.name + ("{" + ",".join(parts) + "}" if parts else "")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def check_option(pass_name: str, field_name: str, default: Any, value: Any) -> None:
    """Checks one option value against the type of its default (and the sign of numbers).

    Raises:
        NeffkitError: naming the pass, the option (kebab-case) and what it takes.
    """
    import math

    key = field_name.replace("_", "-")
    where = f"option '{key}' of pass '{pass_name}'"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise NeffkitError(f"{where} takes true or false, got {value!r}")
    elif isinstance(default, int | float):
        want = "an integer" if isinstance(default, int) else "a number"
        ok_type = int if isinstance(default, int) else int | float
        if isinstance(value, bool) or not isinstance(value, ok_type):
            raise NeffkitError(f"{where} takes {want}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value) or value < 0:
            raise NeffkitError(f"{where} takes a non-negative {want.split()[1]}, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise NeffkitError(f"{where} takes a string, got {value!r}")


def option(default: Any, help: str) -> Any:  # noqa: A002 - reads like argparse
    """A pass option field with a help text (shown by ``neffkit passes``)."""
    return field(default=default, metadata={"help": help})


def all_graphs_postorder(graph: Graph) -> Iterator[Graph]:
    """Subgraphs before the graphs that hold them (innermost first), iteratively."""
    order: list[Graph] = []
    stack = [graph]
    while stack:
        g = stack.pop()
        order.append(g)
        for node in g.holders:  # the nodes that hold subgraphs: O(graphs), not O(nodes)
            stack.extend(node.subgraphs)
    return reversed(order)


def is_pure(node: Node) -> bool:
    """True when the node's result depends only on its inputs (no randomness, no effects)."""
    if node.domain not in ("", "ai.onnx"):
        return False
    return node.op_type not in _IMPURE


_IMPURE = frozenset(
    {
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",  # only pure in inference mode; the simplifier removes it where legal
    }
)
