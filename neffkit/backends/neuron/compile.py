"""Compiling a model's units for a Neuron target, and the dry run that does everything but.

``compile_graph`` lowers the graph's units (``units``), calls the target's API on each
(``targets``) and stitches the compiled units with the scripted host code into one
TorchScript module. ``dry_run`` stops before the compiler: the same units, the uncompiled
TorchScript module, and the operator-support report of what the compiler would see
(``support``).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from neffkit.backends.neuron.support import analyze_unit, render_report
from neffkit.backends.neuron.targets import (
    NeuronCall,
    NeuronOptions,
    api_of,
    build_call,
    resolve_options,
)
from neffkit.backends.neuron.units import CompiledUnit, UnitPlan, compiled_units
from neffkit.errors import BackendError, first_line
from neffkit.ir.core import Graph

__all__ = [
    "AWS_INDEX",
    "CompileResult",
    "DryRun",
    "compile_graph",
    "compile_plan",
    "dry_run",
    "neuron_api",
]

log = logging.getLogger("neffkit.backends.neuron")

#: Where the real Neuron packages are published (PyPI's are empty placeholders).
AWS_INDEX = "https://pip.repos.neuron.amazonaws.com"

#: Called as ``progress(unit_name, index, total)`` before each unit is compiled.
Progress = Callable[[str, int, int], None]


@dataclass
class CompileResult:
    """A compiled model: the stitched TorchScript module and what was called to make it.

    ``compiled`` maps unit names to what the API returned (for trn2, the ``torch.compile``
    modules, warm for the example's shapes; the TorchScript module then holds the traced
    units, which ``torch.compile`` on the serving host compiles again from the Neuron cache).
    """

    target: str
    module: torch.jit.ScriptModule
    plan: UnitPlan
    calls: list[NeuronCall] = field(default_factory=list)
    compiled: dict[str, Any] = field(default_factory=dict)


@dataclass
class DryRun:
    """The uncompiled TorchScript module, and the support report as Markdown and JSON."""

    target: str
    module: torch.jit.ScriptModule
    plan: UnitPlan
    markdown: str
    report: dict[str, Any]
    calls: list[NeuronCall] = field(default_factory=list)


def neuron_api(target: str) -> Callable[..., Any]:
    """The function that compiles for ``target``, found in the installed Neuron package.

    Imports the package and checks the attribute the call needs (``torch_neuron.trace``,
    ``torch_neuronx.trace``, or the ``neuron`` backend of ``torch.compile`` that importing
    ``torch_neuronx`` registers): PyPI's placeholders import but have neither.

    Raises:
        BackendError: the package or the attribute is missing; the message says where the
            real package comes from and that ``--dry-run`` needs none of it.
    """
    api, module_name, attr, package = api_of(target)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendError(_missing(target, api, package, f"{module_name} is not installed")) from e
    except Exception as e:  # noqa: BLE001 - a broken install fails in many ways
        raise BackendError(
            _missing(target, api, package, f"importing {module_name} failed: {first_line(e)}")
        ) from e
    if attr:
        fn = getattr(module, attr, None)
        if not callable(fn):
            why = f"{module_name} imports but has no {attr}() (PyPI's placeholder package?)"
            raise BackendError(_missing(target, api, package, why))
        return fn  # type: ignore[no-any-return]
    if "neuron" not in _dynamo_backends():
        why = f"{module_name} imports but registers no 'neuron' torch.compile backend"
        raise BackendError(_missing(target, api, package, why))
    return torch.compile


def _dynamo_backends() -> list[str]:
    from torch._dynamo import list_backends

    return list(list_backends(exclude_tags=()))


def _missing(target: str, api: str, package: str, why: str) -> str:
    return (
        f"compiling for {target} calls {api}, but {why}. The {package} package that does it "
        f"is published on AWS's index, not PyPI: pip install --extra-index-url {AWS_INDEX} "
        f"{package} (PyPI's '{package}' is an empty placeholder that installs but cannot "
        "compile; real compilation also needs an Inf1/Inf2/Trn host or its compiler). "
        "Without it, neffkit compile --dry-run writes the TorchScript artifact and the "
        "operator-support report"
    )


def compile_graph(
    graph: Graph,
    example_inputs: Sequence[Any] | Mapping[str, Any],
    target: str,
    options: NeuronOptions | None = None,
    *,
    progress: Progress | None = None,
) -> CompileResult:
    """Compiles every unit of ``graph`` for ``target`` and stitches them into one module.

    Raises:
        BackendError: options the target refuses, a missing Neuron package, a unit that is
            not static or that the compiler fails on (the message names the unit).
    """
    options = options or NeuronOptions()
    resolve_options(target, options, decoder=False)  # refused options before any work
    api = neuron_api(target)  # and a missing package, before the seconds units take
    plan = compiled_units(graph, example_inputs)
    return compile_plan(plan, target, options, api=api, progress=progress)


def compile_plan(
    plan: UnitPlan,
    target: str,
    options: NeuronOptions,
    *,
    api: Callable[..., Any],
    progress: Progress | None = None,
) -> CompileResult:
    """Compiles the units of ``plan`` with ``api`` (``neuron_api(target)``) and stitches them."""
    resolved = resolve_options(target, options, decoder=plan.kind != "whole")
    not_static = [u for u in plan.units if not u.static]
    if not_static:
        u = not_static[0]
        raise BackendError(
            f"unit '{u.name}' has no single static shape ({u.note}); a Neuron unit is "
            "compiled for one shape: give the loop one with pad-loop (neffkit optimize "
            "--passes 'pad-loop{max-len=N},split') or unroll it"
        )
    calls: list[NeuronCall] = []
    compiled: dict[str, Any] = {}
    for i, unit in enumerate(plan.units):
        if progress is not None:
            progress(unit.name, i, len(plan.units))
        call = build_call(target, unit.name, resolved, constant_bytes=_constant_bytes(unit))
        calls.append(call)
        compiled[unit.name] = _call(api, call, unit)
    # trace APIs return TorchScript; torch.compile's modules cannot be scripted (trn2)
    scripted = {n: m for n, m in compiled.items() if isinstance(m, torch.jit.ScriptModule)}
    return CompileResult(target, plan.stitch(scripted), plan, calls, compiled)


def _call(api: Callable[..., Any], call: NeuronCall, unit: CompiledUnit) -> Any:
    """Runs one compiler call on ``unit``'s eager module and static example inputs."""
    module = unit.module if unit.module is not None else unit.traced
    log.info("compiling unit '%s' with %s %s", unit.name, call.api, call.kwargs)
    try:
        with _environment(call.env), torch.no_grad():
            if call.api == "torch.compile":
                compiled = api(module, **call.kwargs)
                for _ in range(call.warm_calls):
                    compiled(*unit.example_inputs)
                return compiled
            return api(module, unit.example_inputs, **call.kwargs)
    except BackendError:
        raise
    except Exception as e:  # noqa: BLE001 - any compiler failure is one error naming the unit
        raise BackendError(f"{call.api} failed on unit '{unit.name}': {first_line(e)}") from e


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """Sets ``env`` for the duration of one compiler call, then restores what was there."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _constant_bytes(unit: CompiledUnit) -> int:
    """Bytes of the weights and constant tensors the unit holds."""
    module = unit.module if unit.module is not None else unit.traced
    seen: set[int] = set()
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def dry_run(
    graph: Graph,
    example_inputs: Sequence[Any] | Mapping[str, Any],
    target: str,
    options: NeuronOptions | None = None,
    *,
    progress: Progress | None = None,
) -> DryRun:
    """Everything ``compile_graph`` does but the compiler: the uncompiled TorchScript module,
    the calls that would be made, and the operator-support report of each unit as traced.

    Raises:
        BackendError: options the target refuses, a unit that cannot be lowered or traced.
    """
    options = options or NeuronOptions()
    resolve_options(target, options, decoder=False)  # refused options before any work
    plan = compiled_units(graph, example_inputs)
    resolved = resolve_options(target, options, decoder=plan.kind != "whole")
    calls = []
    reports = []
    for i, unit in enumerate(plan.units):
        if progress is not None:
            progress(unit.name, i, len(plan.units))
        calls.append(build_call(target, unit.name, resolved, constant_bytes=_constant_bytes(unit)))
        reports.append(
            analyze_unit(
                unit.name,
                unit.traced,
                target,
                trips=unit.trips,
                fallback=bool(resolved.fallback),
            )
        )
    markdown, report = render_report(reports, target=target)
    return DryRun(target, plan.stitch(), plan, markdown, report, calls)
