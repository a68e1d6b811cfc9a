"""The TorchScript zoo's registry and helpers (see :mod:`neffkit.testing.torchscript_zoo`):
entries, deterministic weights and inputs, scripting or tracing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ZOO", "Built", "ZooEntry", "convert", "entry", "seeded", "zoo_inputs"]

Built = tuple[nn.Module, tuple[Any, ...]]


@dataclass(frozen=True)
class ZooEntry:
    """One zoo module: its builder and the forms (``script``/``trace``) it is converted in."""

    name: str
    build: Callable[[str], Built]
    forms: tuple[str, ...]


ZOO: dict[str, ZooEntry] = {}


def entry(*forms: str) -> Callable[[Callable[[str], Built]], Callable[[str], Built]]:
    """Registers a builder under its function name (without a leading ``build_``)."""

    def register(fn: Callable[[str], Built]) -> Callable[[str], Built]:
        name = fn.__name__.removeprefix("build_")
        ZOO[name] = ZooEntry(name, fn, forms or ("script", "trace"))
        return fn

    return register


def seeded(cls: Callable[..., nn.Module], *args: Any, seed: int = 0, **kwargs: Any) -> nn.Module:
    """``cls(*args, **kwargs)`` built under a fixed seed (the caller's RNG untouched), with
    non-trivial normalization statistics, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = cls(*args, **kwargs)
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                    m.running_mean.uniform_(-0.3, 0.3)
                    m.running_var.uniform_(0.5, 1.5)
    return module.eval()


def zoo_inputs(*shapes: Any, seed: int = 1) -> tuple[Tensor, ...]:
    """Deterministic example inputs: a shape gives float32 normals, ``(shape, high)`` int64 in
    ``[0, high)``, ``(shape, "bool")`` a bool mask."""
    g = torch.Generator().manual_seed(seed)
    out: list[Tensor] = []
    for s in shapes:
        if isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], tuple):
            shape, kind = s
            if kind == "bool":
                out.append(torch.rand(*shape, generator=g) > 0.3)
            else:
                out.append(torch.randint(0, kind, shape, generator=g))
        else:
            out.append(torch.randn(*s, generator=g))
    return tuple(out)


def convert(module: nn.Module, form: str, example: tuple[Any, ...]) -> Any:
    """The module scripted or traced (under no_grad, as the fused fast paths need)."""
    module.eval()
    if form == "script":
        return torch.jit.script(module)
    with torch.no_grad():
        return torch.jit.trace(module, example, check_trace=False)
