"""``neffkit.optimize``: the default pipeline per target, run and verified.

graph, report = neffkit.optimize("model.onnx", target="torch")
print(report.table())
save_optimized(graph, report, "model.opt.onnx")  # the bytes that were verified

The optimized graph is exported once (``report.exported``): onnxruntime loads those bytes,
verification runs them, and :func:`save_optimized` writes them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from neffkit.arguments import check_run_arguments
from neffkit.dims import refuse_dims_with_inputs
from neffkit.errors import NeffkitError
from neffkit.execution.backend import get_backend
from neffkit.execution.compare import explain
from neffkit.execution.exported import ExportedModel
from neffkit.execution.model import as_graph
from neffkit.ir.aten import is_aten
from neffkit.ir.clone import clone_graph
from neffkit.ir.core import Graph
from neffkit.passes.base import PassContext
from neffkit.passes.manager import ManagerReport, PassManager, Progress
from neffkit.report import ConstantGrowth, constant_growth
from neffkit.verify import first_input_set
from neffkit.verify import verify as verify_models

#: Instruction reduction, repeated until a whole round changes nothing. shape-infer and dedup
#: are inside the group: rewrites create untyped values and equal constants that the next
#: round's fold, simplify and cse can only use once typed and merged (rerunning shape-infer
#: on a fully typed graph returns at once).
_REDUCE = "(shape-infer,dedup,fold,simplify,hoist,cse,dce){max-iter=8}"

DEFAULT_PIPELINES: dict[str, str] = {
    "torch": _REDUCE,
    "onnxruntime": _REDUCE,
    "neuron": _REDUCE,
}

TARGETS = tuple(DEFAULT_PIPELINES)

log = logging.getLogger("neffkit.optimize")


@dataclass
class OptimizeReport:
    """What ``optimize`` did: the pass manager's report plus the numeric verification."""

    target: str
    pipeline: str
    passes: ManagerReport
    verification: Any = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: constant bytes before and after, and what prevents a large growth (``growth.warn``)
    growth: ConstantGrowth | None = None
    #: When verification failed because the original disagrees with itself (onnxruntime run
    #: twice, or onnxruntime against the target's backend), what it found; else empty.
    diagnosis: str = ""
    #: The optimized graph exported once: the bytes onnxruntime loaded and verification ran,
    #: which :func:`save_optimized` writes (None when nothing was verified).
    exported: ExportedModel | None = field(default=None, repr=False)
    #: The ``aten`` ops the graph keeps (see ``aten_ops``): verified on the torch backend.
    aten_ops: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False only when verification ran and found a mismatch."""
        return self.verification is None or bool(self.verification.ok)

    def table(self) -> str:
        """The per-pass table and, when verified, the verification summary."""
        text = self.passes.table()
        if self.growth is not None and self.growth.warn:
            text += "\nwarning: " + self.growth.message()
        if self.verification is not None:
            text += "\n\n" + str(self.verification)
        if self.diagnosis:
            text += f"\n{self.diagnosis}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``neffkit optimize --report``)."""
        return {
            "target": self.target,
            "pipeline": self.pipeline,
            "seconds": self.seconds,
            "passes": self.passes.to_dict(),
            "verification": None if self.verification is None else self.verification.to_dict(),
            "ok": self.ok,
            "notes": self.notes,
            "constant_growth": None if self.growth is None else self.growth.to_dict(),
            "diagnosis": self.diagnosis,
            "aten_ops": self.aten_ops,
        }


def default_pipeline(target: str = "torch") -> str:
    """The pipeline ``optimize`` runs for ``target`` when none is given."""
    try:
        return DEFAULT_PIPELINES[target]
    except KeyError:
        raise NeffkitError(
            f"unknown target '{target}'; choose one of {', '.join(TARGETS)}"
        ) from None


def _check_arguments(passes: Any, target: Any, max_constant_bytes: Any) -> None:
    """Refuses arguments of the wrong Python type before they reach the passes."""
    if passes is not None and not isinstance(passes, str):
        raise NeffkitError(
            f"passes must be pipeline text such as 'fold,cse,dce' (or None), got "
            f"{type(passes).__name__}"
        )
    if not isinstance(target, str):
        raise NeffkitError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if not isinstance(max_constant_bytes, int) or max_constant_bytes < 0:
        raise NeffkitError(
            f"max_constant_bytes must be a non-negative integer, got {max_constant_bytes!r}"
        )


#: The registered backend (``neffkit.execution``) each target's result is verified on; a
#: neuron result is checked in its torch form until a neuron backend is registered.
VERIFICATION_BACKENDS: dict[str, str] = {
    "torch": "torch",
    "onnxruntime": "onnxruntime",
    "neuron": "torch",
}


def verification_backend(target: str) -> str:
    """The backend the optimized graph is checked on for ``target``."""
    return VERIFICATION_BACKENDS.get(target, "torch")


def aten_ops(graph: Graph) -> list[str]:
    """The ``aten`` ops a graph keeps (TorchScript operators with no ONNX form), sorted: a graph
    holding any runs on the torch backend only, never on onnxruntime."""
    return sorted({n.op_type for n in graph.all_nodes() if is_aten(n)})


def optimize(
    model: str | onnx.ModelProto | Graph,
    passes: str | None = None,
    target: str = "torch",
    *,
    verify: bool = True,
    inputs: Sequence[Any] | Mapping[str, Any] | None = None,
    seed: int = 0,
    dims: Mapping[str, int] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    keep_overridable_inputs: bool = False,
    max_constant_bytes: int = 64 * 1024 * 1024,
    verify_each: bool = False,
    print_ir_after: Sequence[str] | None = None,
    progress: Progress | None = None,
    copy: bool = True,
    check: bool = True,
    external_data: bool | None = None,
) -> tuple[Graph, OptimizeReport]:
    """Optimizes a model for ``target`` and checks it against the original.

    Args:
        model: a path, ModelProto or Graph (a Graph is not modified: a copy is optimized).
        passes: pipeline text; the target's default pipeline when None.
        target: ``torch``, ``onnxruntime`` or ``neuron``.
        verify: compare onnxruntime on the original with the target backend on the result
            (both on the torch backend when the graph keeps ``aten`` ops: see ``aten_ops``).
        inputs: inputs for verification (when None: two random sets from the input types,
            seeded, symbolic dims 3 then 7; see ``neffkit.verify``).
        seed: seed of the random inputs.
        dims: sizes of symbolic dims in the random inputs (``{"batch": 2}``).
        atol: absolute tolerance of the verification and of ``verify_each`` (per-dtype
            default when None).
        rtol: relative tolerance of the verification and of ``verify_each`` (per-dtype
            default when None).
        keep_overridable_inputs: treat IR v3 inputs that have an initializer as inputs.
        max_constant_bytes: no pass creates a constant larger than this.
        verify_each: check numerics after every pass (slow; finds the pass that broke them).
        print_ir_after: pass names (or ``all``) whose result is printed when it changed.
        progress: ``progress(pass_name, step, total)`` callback.
        copy: optimize a copy of a given Graph (False: optimize it in place, saving a copy; if
            a pass fails the graph is then left as that pass left it).
        check: refuse a path or ModelProto the ONNX checker or onnxruntime refuse as invalid
            (False optimizes it anyway; a Graph is never checked).
        external_data: the form the result is exported (and verified, and written) in:
            weights in a data file (True), inline (False), or as ``neffkit.save`` chooses.

    Returns:
        The optimized graph and the report. A verification mismatch is in ``report.ok``;
        it is not raised.
    """
    start = time.perf_counter()
    _check_arguments(passes, target, max_constant_bytes)
    check_run_arguments(inputs, seed, atol, rtol)
    if print_ir_after is not None and (
        isinstance(print_ir_after, str) or not isinstance(print_ir_after, Sequence | set)
    ):
        raise NeffkitError(f"print_ir_after must be a list of pass names, got {print_ir_after!r}")
    pipeline = passes if passes is not None else default_pipeline(target)
    if target not in DEFAULT_PIPELINES:
        default_pipeline(target)  # raises the clear error
    original = as_graph(model, check=check)
    refuse_dims_with_inputs(dims, inputs)  # before the passes run, not at verification
    kept = aten_ops(original)
    if kept and verify_each:
        raise NeffkitError(
            f"verify_each compares on onnxruntime, which cannot run the graph's aten ops "
            f"({', '.join(kept)}); the final verification runs them on the torch backend"
        )
    graph = clone_graph(original) if isinstance(model, Graph) and copy else original
    reference = clone_graph(graph) if verify else None
    # --verify-each checks one set: the given inputs, else the first random set the final
    # verification runs (symbolic dims at 3, or as chosen), so a pass that breaks only at
    # sizes above 1 is named by the pass manager rather than found at the end
    each_inputs = inputs
    if inputs is None and verify_each:
        each_inputs = first_input_set(original, seed, dims)
    ctx = PassContext(
        target=target,
        max_constant_bytes=max_constant_bytes,
        keep_overridable_inputs=keep_overridable_inputs,
    )
    manager = PassManager(
        pipeline,
        ctx=ctx,
        verify_each=verify_each,
        inputs=each_inputs,
        seed=seed,
        rtol=rtol,
        atol=atol,
        print_ir_after=print_ir_after,
        progress=progress,
        # optimize works on its own copy (or, with copy=False, on a graph the caller gave up):
        # a failure raises and that graph is not used, so no rollback copy is needed
        rollback=False,
    )
    # IR v3 inputs with an initializer: folded as constants unless kept
    overridable = 0 if keep_overridable_inputs else sum(v.const is not None for v in graph.inputs)
    passes_report = manager.run(graph)
    report = OptimizeReport(target, manager.group.spec(), passes_report, aten_ops=kept)
    # onnxruntime cannot run aten ops: both sides are then checked on the torch backend
    reference_backend = "torch" if kept else "onnxruntime"
    backend = "torch" if kept else verification_backend(target)
    if kept and verify:
        report.notes.append(
            f"the graph keeps aten ops onnxruntime cannot run ({', '.join(kept)}): the original "
            "and the result were both verified on the torch backend"
        )
    report.growth = constant_growth(passes_report, manager.group, overridable)
    if report.growth.warn:
        report.notes.append(report.growth.message())
        log.warning("warning: %s", report.growth.message())
    if verify and reference is not None:
        # Exported once: these bytes are loaded, verified and (by save_optimized) written.
        report.exported = exported = ExportedModel(graph, external_data=external_data)
        # The result is an ONNX file others will run: it must load in onnxruntime whatever
        # the target (this catches exporter-level problems the target backend accepts); one
        # with aten ops must at least read back through neffkit's checked loader.
        if kept:
            as_graph(exported.source, check=True)
        else:
            get_backend("onnxruntime").prepare(graph, source=exported.source)

        kwargs: dict[str, Any] = {"seed": seed, "dims": dims}
        if atol is not None:
            kwargs["atol"] = atol
        if rtol is not None:
            kwargs["rtol"] = rtol
        report.verification = verify_models(
            reference,
            exported,
            inputs,
            backend=backend,
            reference_backend=reference_backend,
            **kwargs,
        )
        if not report.verification.ok and not report.verification.problems:
            report.diagnosis = diagnose_original(
                reference,
                report.verification,
                inputs,
                backend,
                reference_backend=reference_backend,
                **kwargs,
            )
    report.seconds = time.perf_counter() - start
    return graph, report


def diagnose_original(
    reference: Graph,
    verification: Any,
    inputs: Any,
    backend: str,
    *,
    reference_backend: str = "onnxruntime",
    **verify_kwargs: Any,
) -> str:
    """Why a failed verification is not the passes' fault, when the original shows it alone.

    Runs the original on ``reference_backend`` twice (a nondeterministic reference), then the
    original on ``backend`` against it; when every output that failed for the optimized model
    also fails there, the original disagrees with itself and the message says which output
    and by how much. Returns an empty string when the original is self-consistent.
    """
    failing = [o.name for o in verification.failures]
    twice = verify_models(
        reference,
        reference,
        inputs,
        backend=reference_backend,
        reference_backend=reference_backend,
        **verify_kwargs,
    )
    if not twice.ok:
        where = f"when {reference_backend} runs it twice"
        return "the original model itself " + _differs(twice, where)
    if backend == reference_backend:
        return ""
    across = verify_models(
        reference, reference, inputs, backend=backend, reference_backend=reference_backend,
        **verify_kwargs,
    )  # fmt: skip
    if across.ok or not set(failing) <= {o.name for o in across.failures}:
        return ""
    where = f"on {reference_backend} and {backend}"
    return "the original model itself " + _differs(across, where)


def _differs(report: Any, where: str) -> str:
    o = report.failures[0]
    names = ", ".join(f"'{f.name}'" for f in report.failures)
    many = "outputs" if len(report.failures) > 1 else "output"
    return f"gives different results {where} for {many} {names}: {explain(o)}"


def save_optimized(
    graph: Graph,
    report: OptimizeReport,
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
) -> None:
    """Writes the optimized model: the exported bytes that were verified, when there are.

    ``graph`` is exported now only when nothing was exported (``verify=False``) or the
    exported form is not the one asked for (``external_data`` True or False, not None).

    Raises:
        BackendError, FileCollisionError: as ``neffkit.save``.
    """
    exported = report.exported
    if (
        exported is None
        or exported.graph is not graph
        or (external_data is not None and exported.external_data != external_data)
    ):
        exported = ExportedModel(graph, external_data=external_data)
    exported.write(path)
