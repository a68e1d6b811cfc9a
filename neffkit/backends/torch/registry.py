"""Op lowering registry for the torch backend: ``(domain, op_type) -> lowering function``.

A lowering function emits torch.fx nodes for one ONNX node::

    @lowers("Relu")
    def relu(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
        return ctx.call(torch.relu, args[0])   # Relu(x) -> torch.relu(x)

``args`` are the node's inputs as fx nodes (``None`` for omitted optional inputs). Attributes
come from ``node.attr(name, default)``; ``ctx.opset`` is the opset of the node's domain. Prefer
torch builtins, and helpers written in the TorchScript subset (annotated, torch-only), so the
lowered module scripts. Raise ``Unsupported`` for a case the lowering cannot handle.

The lowerings live in ``neffkit/backends/torch/ops/``, one module per ONNX operator family
(``arithmetic``, ``shape``, ``conv``, ...). Every module of that package is imported on the
first lookup, found by ``pkgutil`` (no hand-kept list); one that fails to import raises. A new
op goes into the module of its family, or a new module there if no family fits.

A domain whose every op is lowered by one function (``aten``: TorchScript operators called as
they are) registers it with ``lowers_domain``; an op registered by name in that domain wins.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

import neffkit.backends.torch.ops as ops_package
from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.convert import Unsupported
from neffkit.ir.core import Node

__all__ = [
    "Arg",
    "LowerFn",
    "Lowered",
    "Unsupported",
    "as_list",
    "lookup",
    "lowers",
    "lowers_call",
    "lowers_domain",
    "op_modules",
    "supported_domains",
    "supported_ops",
]

Arg = Any  # torch.fx.Node or None
Lowered = Any  # one fx node, or a sequence of them for multi-output ops
LowerFn = Callable[[LoweringContext, Node, list[Arg]], Lowered]

_REGISTRY: dict[tuple[str, str], LowerFn] = {}
_DOMAINS: dict[str, LowerFn] = {}
_loaded = False


def lowers(*op_types: str, domain: str = "") -> Callable[[LowerFn], LowerFn]:
    """Registers the decorated function as the lowering of ``op_types`` in ``domain``."""

    def deco(fn: LowerFn) -> LowerFn:
        for op in op_types:
            _REGISTRY[(domain, op)] = fn
        return fn

    return deco


def lowers_domain(domain: str) -> Callable[[LowerFn], LowerFn]:
    """Registers the decorated function as the lowering of every op of ``domain``."""

    def deco(fn: LowerFn) -> LowerFn:
        _DOMAINS[domain] = fn
        return fn

    return deco


def lowers_call(op_type: str, fn: Callable[..., Any], domain: str = "") -> None:
    """Registers ``Op(x) -> fn(x)``: a one-input op that is exactly one torch function."""

    def lower(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
        return ctx.call(fn, args[0])

    lower.__name__ = lower.__qualname__ = f"lower_{op_type}"
    # the module that registered it, as collections.namedtuple names its classes' module
    lower.__module__ = sys._getframe(1).f_globals.get("__name__", __name__)
    _REGISTRY[(domain, op_type)] = lower


def lookup(domain: str, op_type: str) -> LowerFn | None:
    """The lowering of an op (by name, else its domain's), or None when there is none."""
    _ensure_loaded()
    domain = "" if domain == "ai.onnx" else domain
    return _REGISTRY.get((domain, op_type)) or _DOMAINS.get(domain)


def supported_ops() -> list[tuple[str, str]]:
    """Every ``(domain, op_type)`` with a lowering of its own, sorted (see ``supported_domains``
    for the domains lowered whole)."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def supported_domains() -> list[str]:
    """The domains whose every op has a lowering (``lowers_domain``), sorted."""
    _ensure_loaded()
    return sorted(_DOMAINS)


def op_modules() -> list[str]:
    """The full names of the op lowering modules: every module of the ``ops`` package."""
    prefix = ops_package.__name__ + "."
    return sorted(m.name for m in pkgutil.iter_modules(ops_package.__path__, prefix))


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for name in op_modules():
        importlib.import_module(name)  # an ops module that fails to import is a bug: raise
    _loaded = True


def as_list(x: Lowered) -> Sequence[Any]:
    """Normalizes a lowering's result to a list of outputs."""
    if isinstance(x, list | tuple):
        return x
    return [x]
