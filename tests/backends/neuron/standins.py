"""Stand-ins for the Neuron packages: ``torch_neuron`` and ``torch_neuronx`` modules with the
documented ``trace`` signatures, and a ``neuron`` torch.compile backend, that record exactly what
each call receives and compile nothing (``torch.jit.trace`` / the graph as is)."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Call:
    """One API call: which, on what shapes, with which keywords, under which environment."""

    api: str
    module: Any
    shapes: list[tuple[int, ...]]
    kwargs: dict[str, Any]
    env: dict[str, str | None] = field(default_factory=dict)


_ENV = ("NEURON_CC_FLAGS", "TORCH_NEURONX_DEBUG_DIR")


def _shapes(args: Any) -> list[tuple[int, ...]]:
    args = args if isinstance(args, tuple | list) else (args,)
    return [tuple(a.shape) for a in args]


def _env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in _ENV}


@contextmanager
def neuron_packages(calls: list[Call]) -> Iterator[None]:
    """``torch_neuron``, ``torch_neuronx`` and the ``neuron`` dynamo backend, recording into
    ``calls``, for the duration of the block."""
    from torch._dynamo.backends import registry

    neuron = types.ModuleType("torch_neuron")

    # the keywords of torch_neuron.trace as Neuron's archived API reference lists them
    def trace_inf1(
        model: Any,
        example_inputs: Any,
        *,
        compiler_args: Any = None,
        compiler_timeout: Any = None,
        compiler_workdir: Any = None,
        subgraph_builder_function: Any = None,
        minimum_segment_size: int = 2,
        single_fusion_ratio_threshold: float = 0.6,
        fallback: bool = True,
        dynamic_batch_size: bool = False,
        optimizations: Any = None,
        separate_weights: bool = False,
        **trace_kwargs: Any,
    ) -> torch.jit.ScriptModule:
        calls.append(Call("torch_neuron.trace", model, _shapes(example_inputs), {}, _env()))
        # other keywords go to torch.jit.trace, as torch_neuron.trace passes them on
        return torch.jit.trace(model, example_inputs, check_trace=False, **trace_kwargs)

    neuron.trace = _keywords(trace_inf1, calls)  # type: ignore[attr-defined]
    neuronx = types.ModuleType("torch_neuronx")

    # the signature of torch_neuronx.trace in Neuron's API reference
    def trace_inf2(
        func: Any,
        example_inputs: Any,
        *_: Any,
        input_output_aliases: Any = None,
        compiler_workdir: Any = None,
        compiler_args: Any = None,
        partitioner_config: Any = None,
        inline_weights_to_neff: bool = True,
        cpu_backend: bool = False,
    ) -> torch.jit.ScriptModule:
        calls.append(Call("torch_neuronx.trace", func, _shapes(example_inputs), {}, _env()))
        return torch.jit.trace(func, example_inputs, check_trace=False)

    neuronx.trace = _keywords(trace_inf2, calls)  # type: ignore[attr-defined]

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        calls.append(Call("neuron backend", gm, _shapes(example_inputs), {}, _env()))
        return gm.forward

    saved = {k: sys.modules.get(k) for k in ("torch_neuron", "torch_neuronx")}
    sys.modules["torch_neuron"] = neuron
    sys.modules["torch_neuronx"] = neuronx
    registry.register_backend(compiler_fn=backend, name="neuron")
    try:
        yield
    finally:
        registry._BACKENDS.pop("neuron", None)
        registry._COMPILER_FNS.pop("neuron", None)
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _keywords(fn: Any, calls: list[Call]) -> Any:
    """``fn`` that also records the keywords it was called with (not its defaults)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        calls[-1].kwargs = dict(kwargs)
        return out

    return wrapper
