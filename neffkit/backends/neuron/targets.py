"""Per target, the exact call that compiles one unit: which API, which keywords, which
environment. Pure: nothing here imports a Neuron package or runs a compiler.

* ``inf1``: ``torch_neuron.trace(module, example_inputs, **kw)`` (torch-neuron, neuron-cc);
  weights out of the NEFF with ``separate_weights``; unsupported ops on the CPU with
  ``fallback``.
* ``inf2``, ``trn1``: ``torch_neuronx.trace(module, example_inputs, **kw)`` (torch-neuronx,
  neuronx-cc); weights out of the NEFF with ``inline_weights_to_neff=False``; one fused graph,
  no CPU fallback.
* ``trn2``: ``torch.compile(module, backend="neuron", fullgraph=True)`` and one warm call on
  the example inputs (torch-neuronx); compiled on the first call of each input shape.

Keyword names follow the Neuron API reference: the archived torch-neuron trace API
(``compiler_args`` a list of neuron-cc flags, ``compiler_workdir``, ``fallback``,
``dynamic_batch_size``, ``separate_weights``), the torch-neuronx trace API
(``compiler_args``, ``compiler_workdir``, ``inline_weights_to_neff``), and the torch.compile
backend reference (``fullgraph=True``; ``dynamic`` is rejected, each new input shape
recompiles; compiler flags go through the ``NEURON_CC_FLAGS`` environment variable, which
torch-neuronx reads for every neuronx-cc call).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from neffkit.errors import BackendError

__all__ = [
    "SEPARATE_WEIGHTS_BYTES",
    "TARGETS",
    "NeuronCall",
    "NeuronOptions",
    "api_of",
    "build_call",
    "resolve_options",
]

#: The targets, in hardware order.
TARGETS = ("inf1", "inf2", "trn1", "trn2")

#: Constants above this keep weights out of the compiled graph: Neuron's trace API says models
#: "with over 1.9GB of constant parameters" need ``separate_weights`` (the 2 GB protobuf
#: limit), and ``inline_weights_to_neff=False`` is torch-neuronx's counterpart.
SEPARATE_WEIGHTS_BYTES = 1_900_000_000

#: target -> (API, Python module, attribute, pip package).
_APIS: dict[str, tuple[str, str, str, str]] = {
    "inf1": ("torch_neuron.trace", "torch_neuron", "trace", "torch-neuron"),
    "inf2": ("torch_neuronx.trace", "torch_neuronx", "trace", "torch-neuronx"),
    "trn1": ("torch_neuronx.trace", "torch_neuronx", "trace", "torch-neuronx"),
    "trn2": ("torch.compile", "torch_neuronx", "", "torch-neuronx"),
}


@dataclass(frozen=True)
class NeuronOptions:
    """What the user asks of the compiler; None means "the target's default".

    Attributes:
        compiler_args: compiler flags (neuron-cc for inf1, neuronx-cc otherwise).
        dynamic_batch: let the compiled unit take any size of dimension 0 (inf1 only).
        fallback: run unsupported ops on the CPU, cutting the graph (inf1 only; default on,
            off for decoder units: one CPU island per step would cost a transition each).
        separate_weights: keep the weights out of the compiled graph (inf1, inf2, trn1;
            default on above ``SEPARATE_WEIGHTS_BYTES`` of constants in a unit).
        compiler_workdir: where the compiler writes its files (a folder per unit under it).
    """

    compiler_args: tuple[str, ...] = ()
    dynamic_batch: bool = False
    fallback: bool | None = None
    separate_weights: bool | None = None
    compiler_workdir: str | None = None

    @staticmethod
    def parse_args(text: str | Sequence[str] | None) -> tuple[str, ...]:
        """Compiler flags from one shell-quoted string (``"--O2 --auto-cast none"``) or a list.

        Raises:
            BackendError: unbalanced quotes.
        """
        if text is None:
            return ()
        if not isinstance(text, str):
            return tuple(str(a) for a in text)
        try:
            return tuple(shlex.split(text))
        except ValueError as e:
            raise BackendError(f"compiler arguments {text!r}: {e}") from e


@dataclass(frozen=True)
class NeuronCall:
    """One compiler call for one unit: ``api(module, example_inputs, **kwargs)`` under
    ``env`` (for trn2 ``torch.compile(module, **kwargs)`` then ``warm_calls`` calls on the
    example inputs)."""

    target: str
    unit: str
    api: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    warm_calls: int = 0


def api_of(target: str) -> tuple[str, str, str, str]:
    """``(api, module, attribute, package)`` of ``target``.

    Raises:
        BackendError: an unknown target.
    """
    check_target(target)
    return _APIS[target]


def check_target(target: str) -> None:
    """Refuses a target that is not one of ``TARGETS``."""
    if target not in TARGETS:
        raise BackendError(f"unknown Neuron target {target!r}; choose one of {', '.join(TARGETS)}")


def resolve_options(target: str, options: NeuronOptions, *, decoder: bool) -> NeuronOptions:
    """``options`` checked against ``target`` and with its defaults filled in.

    Args:
        target: one of ``TARGETS``.
        options: what the user asked.
        decoder: the units are a decoder's (host-loop step, partitions): fallback defaults
            to off, so that the compiler fails on an unsupported op instead of cutting
            every step into device and CPU pieces.

    Raises:
        BackendError: an option the target has no meaning for (names the option and target).
    """
    check_target(target)
    if options.dynamic_batch and target != "inf1":
        raise BackendError(
            f"--dynamic-batch applies to inf1 only (torch_neuron.trace dynamic_batch_size); "
            f"{target} compiles one static batch size per unit"
        )
    if options.fallback is not None and target != "inf1":
        raise BackendError(
            f"--fallback/--no-fallback apply to inf1 only (torch_neuron.trace fallback): on "
            f"{target} a unit compiles to one fused graph with no CPU fallback"
        )
    if options.separate_weights and target == "trn2":
        raise BackendError(
            "--separate-weights has no trn2 counterpart: torch.compile keeps the weights as "
            "device tensors; it applies to inf1 (separate_weights) and inf2/trn1 "
            "(inline_weights_to_neff=False)"
        )
    fallback = options.fallback
    if target == "inf1" and fallback is None:
        fallback = not decoder
    return replace(options, fallback=fallback)


def build_call(
    target: str, unit: str, options: NeuronOptions, *, constant_bytes: int = 0
) -> NeuronCall:
    """The call that compiles unit ``unit`` for ``target`` with resolved ``options``.

    Args:
        target: one of ``TARGETS``.
        unit: the unit's name (its compiler workdir is ``<compiler_workdir>/<unit>``).
        options: options that ``resolve_options`` returned.
        constant_bytes: the unit's weights and constants, in bytes (picks separate weights).
    """
    api = api_of(target)[0]
    separate = options.separate_weights
    if separate is None and target != "trn2":
        separate = constant_bytes > SEPARATE_WEIGHTS_BYTES
    workdir = f"{options.compiler_workdir}/{unit}" if options.compiler_workdir else None
    args = list(options.compiler_args)
    kwargs: dict[str, Any] = {}
    env: dict[str, str] = {}
    if target == "inf1":
        kwargs["compiler_args"] = args
        if workdir:
            kwargs["compiler_workdir"] = workdir
        kwargs["fallback"] = bool(options.fallback)
        kwargs["dynamic_batch_size"] = options.dynamic_batch
        kwargs["separate_weights"] = bool(separate)
        return NeuronCall(target, unit, api, kwargs)
    if target in ("inf2", "trn1"):
        if "--target" not in args and not any(a.startswith("--target=") for a in args):
            args += ["--target", target]  # compile for the asked chip, whatever the host is
        kwargs["compiler_args"] = args
        if workdir:
            kwargs["compiler_workdir"] = workdir
        kwargs["inline_weights_to_neff"] = not separate
        return NeuronCall(target, unit, api, kwargs)
    kwargs = {"backend": "neuron", "fullgraph": True}
    if args:
        env["NEURON_CC_FLAGS"] = shlex.join(args)
    if workdir:
        env["TORCH_NEURONX_DEBUG_DIR"] = workdir
    # one static shape per unit: one warm call compiles it (later calls reuse the NEFF)
    return NeuronCall(target, unit, api, kwargs, env, warm_calls=1)
