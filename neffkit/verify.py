"""Numeric verification: run a reference and a candidate on the same inputs and compare.

``verify(reference, candidate)`` runs the reference on onnxruntime and the candidate on the
torch backend (both configurable), then reports for every output the shapes and dtypes of
both sides, the largest absolute and relative errors, how many elements are outside the
tolerances, and whether the output passes::

    report = neffkit.verify("model.onnx", optimized_graph)
    print(report)
    report.raise_if_failed()

An element passes when ``|candidate - reference| <= atol + rtol * |reference|`` (numpy's
``isclose`` rule); NaNs in the same place and infinities of the same sign count as equal.
The relative error ignores positions where ``|reference| < REL_ERR_FLOOR`` (1e-6), so that
values that are (nearly) zero do not make it meaningless; ``atol`` covers those positions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neffkit.api import (
    Runner,
    bind,
    describe_model,
    load_npz,
    npz_inputs,
    random_inputs,
    runtime_inputs,
)
from neffkit.arguments import check_run_arguments
from neffkit.errors import BackendError, NeffkitError, NumericMismatchError

__all__ = [
    "DEFAULT_TOLERANCES",
    "REL_ERR_FLOOR",
    "OutputComparison",
    "VerificationReport",
    "compare",
    "default_tolerances",
    "load_npz",
    "verify",
]

#: ``dtype name -> (rtol, atol)``; integer and bool outputs must match exactly.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-9),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
    "complex128": (1e-7, 1e-9),
    "complex64": (1e-4, 1e-5),
}
_FLOAT8 = (0.25, 1e-2)
#: Positions where ``|reference|`` is below this are left out of the relative error.
REL_ERR_FLOOR = 1e-6


def default_tolerances(dtype: Any) -> tuple[float, float]:
    """``(rtol, atol)`` for an output dtype when none are given: exact for ints and bools."""
    name = np.dtype(dtype).name
    if name in DEFAULT_TOLERANCES:
        return DEFAULT_TOLERANCES[name]
    if name.startswith(("float8", "float4", "float6")):
        return _FLOAT8
    return (0.0, 0.0)


@dataclass
class OutputComparison:
    """How one output of the candidate compares with the reference (worst over input sets)."""

    index: int
    name: str
    reference_shape: tuple[int, ...] | None
    reference_dtype: str | None
    candidate_shape: tuple[int, ...] | None
    candidate_dtype: str | None
    rtol: float
    atol: float
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    mismatches: int = 0
    elements: int = 0
    worst_set: int | None = None
    note: str = ""

    @property
    def shape_match(self) -> bool:
        """The candidate's shape equals the reference's."""
        return self.reference_shape is not None and self.reference_shape == self.candidate_shape

    @property
    def dtype_match(self) -> bool:
        """The candidate's dtype equals the reference's."""
        return self.reference_dtype is not None and self.reference_dtype == self.candidate_dtype

    @property
    def ok(self) -> bool:
        """Same shape and dtype, and every element within the tolerances."""
        return self.shape_match and self.dtype_match and self.mismatches == 0 and not self.note

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite errors as the strings ``"inf"`` / ``"nan"``)."""
        return {
            "index": self.index,
            "name": self.name,
            "ok": self.ok,
            "reference": {"shape": _list(self.reference_shape), "dtype": self.reference_dtype},
            "candidate": {"shape": _list(self.candidate_shape), "dtype": self.candidate_dtype},
            "shape_match": self.shape_match,
            "dtype_match": self.dtype_match,
            "max_abs_error": _json_float(self.max_abs_error),
            "max_rel_error": _json_float(self.max_rel_error),
            "mismatches": self.mismatches,
            "elements": self.elements,
            "rtol": self.rtol,
            "atol": self.atol,
            "worst_input_set": self.worst_set,
            "note": self.note,
        }


def _list(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else list(shape)


def _json_float(x: float | None) -> float | str | None:
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


@dataclass
class VerificationReport:
    """The result of :func:`verify`: one :class:`OutputComparison` per output."""

    reference: str
    candidate: str
    reference_backend: str
    backend: str
    input_sets: int
    seed: int | None
    outputs: list[OutputComparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every output passes and nothing else went wrong (output counts)."""
        return not self.problems and all(o.ok for o in self.outputs)

    @property
    def failures(self) -> list[OutputComparison]:
        """The outputs that do not pass."""
        return [o for o in self.outputs if not o.ok]

    def raise_if_failed(self) -> None:
        """Raises ``NumericMismatchError`` with a one-line summary when the check failed."""
        if not self.ok:
            raise NumericMismatchError(self.summary())

    def summary(self) -> str:
        """One line: what was compared and the verdict."""
        what = f"{self.candidate} ({self.backend}) vs {self.reference} ({self.reference_backend})"
        sets = f"{self.input_sets} input set{'s' if self.input_sets != 1 else ''}"
        if self.ok:
            n = len(self.outputs)
            agree = f"all {n} outputs agree" if n != 1 else "the output agrees"
            return f"OK: {what}: {agree} on {sets}"
        parts = list(self.problems)
        for o in self.failures:
            parts.append(f"output '{o.name}': {_why(o)}")
        return f"MISMATCH: {what} on {sets}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the whole report."""
        return {
            "ok": self.ok,
            "reference": self.reference,
            "candidate": self.candidate,
            "reference_backend": self.reference_backend,
            "backend": self.backend,
            "input_sets": self.input_sets,
            "seed": self.seed,
            "rel_err_floor": REL_ERR_FLOOR,
            "problems": list(self.problems),
            "outputs": [o.to_dict() for o in self.outputs],
        }

    def __str__(self) -> str:
        from neffkit.report import format_verification

        return format_verification(self)


def _why(o: OutputComparison) -> str:
    if o.note:
        return o.note
    if not o.shape_match:
        return f"shape {_list(o.candidate_shape)} != reference {_list(o.reference_shape)}"
    if not o.dtype_match:
        return f"dtype {o.candidate_dtype} != reference {o.reference_dtype}"
    return (
        f"{o.mismatches} of {o.elements} elements outside rtol={o.rtol:g} atol={o.atol:g} "
        f"(max abs error {_fmt_err(o.max_abs_error)})"
    )


def _fmt_err(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


# -- comparing --------------------------------------------------------------------------------


def _kind(dt: np.dtype) -> str:
    name = dt.name
    if dt.kind == "b":
        return "bool"
    if dt.kind in "iu" or name in ("int4", "uint4", "int2", "uint2"):
        return "int"
    if dt.kind == "f" or name.startswith(("bfloat16", "float8", "float4", "float6")):
        return "float"
    if dt.kind == "c":
        return "complex"
    return "other"


def compare(
    reference: Any,
    candidate: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    name: str = "",
    index: int = 0,
) -> OutputComparison:
    """Compares one candidate output with the reference output.

    ``rtol`` / ``atol`` default per dtype (:data:`DEFAULT_TOLERANCES`); when given they apply
    to every output but booleans, which always compare exactly.
    """
    ref = _array(reference)
    cand = _array(candidate)
    if ref is None or cand is None:
        return OutputComparison(
            index, name, None, None, None, None, rtol or 0.0, atol or 0.0,
            note="a non-tensor output (sequence, map) cannot be compared",
        )  # fmt: skip
    d_rtol, d_atol = default_tolerances(ref.dtype)
    kind = _kind(ref.dtype)
    if kind == "bool":
        rtol_, atol_ = 0.0, 0.0
    else:
        rtol_ = d_rtol if rtol is None else float(rtol)
        atol_ = d_atol if atol is None else float(atol)
    out = OutputComparison(
        index=index,
        name=name,
        reference_shape=tuple(ref.shape),
        reference_dtype=ref.dtype.name,
        candidate_shape=tuple(cand.shape),
        candidate_dtype=cand.dtype.name,
        rtol=rtol_,
        atol=atol_,
        elements=int(ref.size),
    )
    if ref.shape != cand.shape:
        return out
    if kind == "other" or _kind(cand.dtype) == "other":
        if not np.array_equal(ref, cand):
            out.mismatches = int(np.sum(ref != cand)) if ref.shape else 1
        return out
    r, c = _wide(ref), _wide(cand)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(c - r)
        both_nan = np.isnan(r) & np.isnan(c)
        same_inf = np.isinf(r) & (r == c)
        equal = both_nan | same_inf | (r == c)
        diff = np.where(equal, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only: infinitely off
        mag = np.abs(r)
        bad = diff > atol_ + rtol_ * np.where(np.isfinite(mag), mag, 0.0)
        rel_mask = mag >= REL_ERR_FLOOR
        rel = np.where(rel_mask, diff / np.where(rel_mask, mag, 1.0), 0.0)
    out.mismatches = int(np.count_nonzero(bad))
    out.max_abs_error = float(diff.max()) if diff.size else 0.0
    out.max_rel_error = float(rel.max()) if rel.size else 0.0
    return out


def _array(x: Any) -> np.ndarray | None:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, list | tuple | dict):
        return None
    if type(x).__module__.startswith("torch"):
        from neffkit.backends.torch.lowering import to_numpy

        return to_numpy(x)
    return np.asarray(x)


def _wide(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "c":
        return a.astype(np.complex128)
    return a.astype(np.float64)


def _merge(worst: OutputComparison, new: OutputComparison, set_index: int) -> None:
    """Folds another input set's comparison of the same output into the worst case so far."""
    if new.note and not worst.note:
        worst.note = new.note
    if worst.shape_match and not new.shape_match:
        worst.reference_shape, worst.candidate_shape = new.reference_shape, new.candidate_shape
    if worst.dtype_match and not new.dtype_match:
        worst.reference_dtype, worst.candidate_dtype = new.reference_dtype, new.candidate_dtype
    worst.mismatches += new.mismatches
    worst.elements += new.elements
    if new.max_rel_error is not None:
        worst.max_rel_error = max(worst.max_rel_error or 0.0, new.max_rel_error)
    if new.max_abs_error is not None and (
        worst.max_abs_error is None or new.max_abs_error > worst.max_abs_error
    ):
        worst.max_abs_error = new.max_abs_error
        worst.worst_set = set_index


# -- inputs -----------------------------------------------------------------------------------


def input_sets(
    graph: Any,
    inputs: Any,
    seed: int,
) -> tuple[list[Any], int | None]:
    """Normalizes ``inputs`` to a list of input sets; random ones when ``inputs`` is None.

    Returns:
        The sets and the seed used (None when the inputs were given).
    """
    if inputs is None:
        return [random_inputs(graph, seed)], seed
    if isinstance(inputs, str | os.PathLike):
        return [npz_inputs(graph, inputs)], None
    if isinstance(inputs, Mapping):
        return [inputs], None
    items = list(inputs)
    if items and all(isinstance(x, Mapping) for x in items):
        return items, None
    return [items], None


# -- verify -----------------------------------------------------------------------------------


def verify(
    reference: Any,
    candidate: Any,
    inputs: Any = None,
    *,
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    backend: str = "torch",
    reference_backend: str = "onnxruntime",
) -> VerificationReport:
    """Runs ``reference`` and ``candidate`` on the same inputs and compares every output.

    Args:
        reference: the model to trust (path, ``ModelProto`` or ``Graph``).
        candidate: the model to check: path, ``ModelProto``, ``Graph``, or a ``torch.nn.Module``
            (e.g. a loaded TorchScript file) called with the inputs in the reference's order.
        inputs: a list or dict of arrays, a list of dicts (several input sets, all checked),
            or an ``.npz`` path; random inputs from the reference's input types when None.
        seed: seed of the random inputs.
        atol, rtol: tolerances for every output; by default per dtype (see
            :data:`DEFAULT_TOLERANCES`), exact for ints and bools.
        backend: backend of the candidate (``"torch"`` or ``"onnxruntime"``).
        reference_backend: backend of the reference.

    Returns:
        A report; it does not raise on a mismatch (call ``report.raise_if_failed()``).

    Raises:
        NeffkitError: a model cannot be read or run, or the inputs do not fit.
    """
    check_run_arguments(inputs, seed, atol, rtol)
    ref_runner = Runner(reference, reference_backend)
    graph = ref_runner.graph
    cand_run, cand_label, cand_backend, cand_names = _candidate(candidate, backend, graph)
    sets, used_seed = input_sets(graph, inputs, seed)
    report = VerificationReport(
        reference=describe_model(reference),
        candidate=cand_label,
        reference_backend=ref_runner.backend,
        backend=cand_backend,
        input_sets=len(sets),
        seed=used_seed,
    )
    worst: list[OutputComparison] = []
    for k, feeds in enumerate(sets):
        want = ref_runner(feeds)
        got = cand_run(_for_candidate(feeds, graph, cand_names))
        if len(got) != len(want):
            msg = f"the candidate has {len(got)} outputs, the reference {len(want)}"
            if msg not in report.problems:
                report.problems.append(msg)
        for i, w in enumerate(want):
            name = ref_runner.output_names[i] if i < len(ref_runner.output_names) else str(i)
            if i < len(got):
                c = compare(w, got[i], rtol=rtol, atol=atol, name=name, index=i)
            else:
                c = compare(w, w, rtol=rtol, atol=atol, name=name, index=i)
                c.candidate_shape = c.candidate_dtype = None
                c.note = "missing from the candidate"
            if k == 0:
                c.worst_set = 0 if c.max_abs_error is not None else None
                worst.append(c)
            else:
                _merge(worst[i], c, k)
    report.outputs = worst
    return report


def _candidate(candidate: Any, backend: str, ref_graph: Any) -> tuple[Any, str, str, list[str]]:
    """A callable running the candidate, its label, backend label and runtime input names."""
    if type(candidate).__module__.startswith("torch") and hasattr(candidate, "forward"):
        names = [v.name for v in runtime_inputs(ref_graph)]
        label = f"<{type(candidate).__name__}>"
        return _module_runner(candidate, names), label, "torch.jit", names
    runner = Runner(candidate, backend)
    return runner, describe_model(candidate), runner.backend, runner.input_names


def _module_runner(module: Any, names: list[str]) -> Any:
    import torch

    from neffkit.backends.torch.lowering import to_numpy, to_torch

    def call(feeds: Any) -> list[np.ndarray]:
        values = [feeds[n] for n in names] if isinstance(feeds, Mapping) else list(feeds)
        args = [to_torch(np.asarray(x)) for x in values]
        try:
            with torch.no_grad():
                outs = module(*args)
        except Exception as e:  # noqa: BLE001 - report any torch failure as a neffkit error
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendError(f"the torch module failed to run: {first}") from e
        if isinstance(outs, torch.Tensor):
            outs = [outs]
        return [to_numpy(o) for o in outs]

    return call


def _for_candidate(feeds: Any, ref_graph: Any, cand_names: list[str]) -> Any:
    """The inputs as the candidate takes them: by name when the names agree, else in order."""
    bound = bind(ref_graph, feeds)  # named, in the reference's order, and checked
    if set(bound) == set(cand_names):
        return bound
    if len(bound) != len(cand_names):
        raise NeffkitError(
            f"the candidate takes {len(cand_names)} inputs {cand_names}, the reference "
            f"{len(bound)} {list(bound)}"
        )
    return list(bound.values())
