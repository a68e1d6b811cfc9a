"""Op lowering registry for the torch backend: ``(domain, op_type) -> lowering function``.

A lowering function emits torch.fx nodes for one ONNX node::

    @lowers("Relu")
    def relu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
        return ctx.call(torch.relu, args[0])   # Relu(x) -> torch.relu(x)

``args`` are the node's inputs as fx nodes (``None`` for omitted optional inputs). Attributes
come from ``node.attr(name, default)``; ``ctx.opset`` is the opset of the node's domain. Prefer
torch builtins, and helpers written in the TorchScript subset (annotated, torch-only), so the
lowered module scripts. Raise ``Unsupported`` for a case the lowering cannot handle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from neffkit.errors import BackendError

if TYPE_CHECKING:
    from neffkit.backends.torch.lowering import LoweringContext
    from neffkit.ir.core import Node

Arg = Any  # torch.fx.Node or None
Lowered = Any  # one fx node, or a sequence of them for multi-output ops
LowerFn = Callable[["LoweringContext", "Node", list[Arg]], Lowered]

_REGISTRY: dict[tuple[str, str], LowerFn] = {}
_OP_MODULES = (
    "neffkit.backends.torch.ops.elementwise",
    "neffkit.backends.torch.ops.elementwise_bits",
    "neffkit.backends.torch.ops.nn",
    "neffkit.backends.torch.ops.nn_pool",
    "neffkit.backends.torch.ops.nn_norm",
    "neffkit.backends.torch.ops.nn_resize",
    "neffkit.backends.torch.ops.nn_grid",
    "neffkit.backends.torch.ops.nn_attention",
    "neffkit.backends.torch.ops.nn_rnn",
    "neffkit.backends.torch.ops.nn_quant",
    "neffkit.backends.torch.ops.shape",
    "neffkit.backends.torch.ops.shape_more",
    "neffkit.backends.torch.ops.reduce",
    "neffkit.backends.torch.ops.index",
    "neffkit.backends.torch.ops.index_boxes",
    "neffkit.backends.torch.ops.misc",
    "neffkit.backends.torch.ops.control",
    "neffkit.backends.torch.ops.sequence",
)
_loaded = False


class Unsupported(BackendError):
    """The lowering does not handle this node (an op, attribute value or dtype)."""


def lowers(*op_types: str, domain: str = "") -> Callable[[LowerFn], LowerFn]:
    """Registers the decorated function as the lowering of ``op_types`` in ``domain``."""

    def deco(fn: LowerFn) -> LowerFn:
        for op in op_types:
            _REGISTRY[(domain, op)] = fn
        return fn

    return deco


def lookup(domain: str, op_type: str) -> LowerFn | None:
    """The lowering of an op, or None when the torch backend has none."""
    _ensure_loaded()
    return _REGISTRY.get(("" if domain == "ai.onnx" else domain, op_type))


def supported_ops() -> list[tuple[str, str]]:
    """Every ``(domain, op_type)`` with a lowering, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _OP_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def as_list(x: Lowered) -> Sequence[Any]:
    """Normalizes a lowering's result to a list of outputs."""
    if isinstance(x, list | tuple):
        return x
    return [x]
