"""Comparing outputs under one per-dtype tolerance policy: tensors, sequences, optionals.

Every numeric check in neffkit uses this module: ``neffkit.verify``, the pass manager's
``--verify-each``, the property tests of ``neffkit.testing`` and the benchmarks.

An element passes when ``|candidate - reference| <= atol + rtol * |reference|`` (numpy's
``isclose`` rule); NaNs in the same place and infinities of the same sign count as equal.
The relative error ignores positions where ``|reference| < REL_ERR_FLOOR`` (1e-6), so that
values that are (nearly) zero do not make it meaningless; ``atol`` covers those positions.
A sequence is compared element by element (same length, each element as a tensor); an
optional agrees when both sides are empty or both hold values that agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_TOLERANCES",
    "REL_ERR_FLOOR",
    "OutputComparison",
    "compare",
    "compare_all",
    "default_tolerances",
    "explain",
    "tolerances",
]

#: ``dtype name -> (rtol, atol)``; integer and bool outputs must match exactly. float64 is not
#: held to 1e-15: float attributes (HardSigmoid's alpha, LeakyRelu's slope ...) are float32 in
#: ONNX, and runtimes differ in how they widen them (measured: 3.7e-7 relative).
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-6, 1e-8),
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


def tolerances(
    dtype: Any, rtol: float | None = None, atol: float | None = None
) -> tuple[float, float]:
    """``(rtol, atol)`` an output of ``dtype`` is held to: the given ones, else the dtype's.

    Given tolerances apply to every dtype but bool, which always compares exactly (a
    tolerance on True / False means nothing); integers take them as given (``atol=1`` lets
    an index be one off).
    """
    if _kind(np.dtype(dtype)) == "bool":
        return 0.0, 0.0
    d_rtol, d_atol = default_tolerances(dtype)
    return (d_rtol if rtol is None else float(rtol), d_atol if atol is None else float(atol))


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
            "max_abs_error": json_float(self.max_abs_error),
            "max_rel_error": json_float(self.max_rel_error),
            "mismatches": self.mismatches,
            "elements": self.elements,
            "rtol": self.rtol,
            "atol": self.atol,
            "worst_input_set": self.worst_set,
            "note": self.note,
        }


def _list(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else list(shape)


def json_float(x: float | None) -> float | str | None:
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def explain(o: OutputComparison) -> str:
    """Why an output does not pass, in a few words (its note, shape, dtype or error count)."""
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
    if reference is None or candidate is None:
        return _compare_optional(reference, candidate, rtol, atol, name, index)
    if isinstance(reference, list | tuple) or isinstance(candidate, list | tuple):
        return _compare_sequence(reference, candidate, rtol, atol, name, index)
    ref = _array(reference)
    cand = _array(candidate)
    if ref is None or cand is None:
        return OutputComparison(
            index, name, None, None, None, None, rtol or 0.0, atol or 0.0,
            note="a map output cannot be compared",
        )  # fmt: skip
    kind = _kind(ref.dtype)
    rtol_, atol_ = tolerances(ref.dtype, rtol, atol)
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


def compare_all(
    reference: Sequence[Any],
    candidate: Sequence[Any],
    *,
    rtol: float | None = None,
    atol: float | None = None,
    names: Sequence[str] = (),
) -> list[OutputComparison]:
    """Compares every output; one the candidate lacks is a failure noted "missing"."""
    out = []
    for i, want in enumerate(reference):
        name = names[i] if i < len(names) else str(i)
        if i < len(candidate):
            out.append(compare(want, candidate[i], rtol=rtol, atol=atol, name=name, index=i))
            continue
        c = compare(want, want, rtol=rtol, atol=atol, name=name, index=i)
        c.candidate_shape = c.candidate_dtype = None
        c.note = "missing from the candidate"
        out.append(c)
    return out


def _compare_optional(
    reference: Any, candidate: Any, rtol: float | None, atol: float | None, name: str, index: int
) -> OutputComparison:
    """An optional output: empty on both sides agrees; a value on one side only does not."""
    if reference is None and candidate is None:
        empty = "optional(empty)"
        return OutputComparison(index, name, (), empty, (), empty, rtol or 0.0, atol or 0.0)
    if reference is None:
        out = compare(candidate, candidate, rtol=rtol, atol=atol, name=name, index=index)
        out.reference_shape, out.reference_dtype = (), "optional(empty)"
        out.note = "the reference's optional is empty, the candidate's holds a value"
    else:
        out = compare(reference, reference, rtol=rtol, atol=atol, name=name, index=index)
        out.candidate_shape, out.candidate_dtype = (), "optional(empty)"
        out.note = "the candidate's optional is empty, the reference's holds a value"
    out.max_abs_error = out.max_rel_error = None
    return out


def _compare_sequence(
    reference: Any, candidate: Any, rtol: float | None, atol: float | None, name: str, index: int
) -> OutputComparison:
    """A sequence output: same length, and every element compared as a tensor.

    The comparison's "shape" is ``(length,)`` and its dtype ``seq(<element dtype>)``; errors
    and mismatch counts are over all elements, and the first element that differs in shape
    or dtype is named in the note.
    """
    ref_seq = isinstance(reference, list | tuple)
    cand_seq = isinstance(candidate, list | tuple)
    ref_items = list(reference) if ref_seq else []
    cand_items = list(candidate) if cand_seq else []
    parts = [
        compare(r, c, rtol=rtol, atol=atol, name=name, index=index)
        for r, c in zip(ref_items, cand_items)
    ]

    def label(items: list[Any], is_seq: bool) -> str | None:
        if not is_seq:
            return None
        first = _array(items[0]) if items else None
        return f"seq({first.dtype.name if first is not None else '?'})"

    first = parts[0] if parts else None
    out = OutputComparison(
        index=index,
        name=name,
        reference_shape=(len(ref_items),) if ref_seq else None,
        reference_dtype=label(ref_items, ref_seq),
        candidate_shape=(len(cand_items),) if cand_seq else None,
        candidate_dtype=label(cand_items, cand_seq),
        rtol=first.rtol if first else (rtol or 0.0),
        atol=first.atol if first else (atol or 0.0),
    )
    if not ref_seq or not cand_seq:
        side = "reference" if ref_seq else "candidate"
        out.note = f"only the {side} returns a sequence"
        return out
    if len(ref_items) != len(cand_items):
        out.note = f"a sequence of {len(cand_items)} elements, the reference's has {len(ref_items)}"
    out.max_abs_error = 0.0 if parts else None
    out.max_rel_error = 0.0 if parts else None
    for k, c in enumerate(parts):
        out.elements += c.elements
        out.mismatches += c.mismatches
        if not out.note and (c.note or not c.shape_match or not c.dtype_match):
            out.note = f"element {k}: {explain(c)}"
        if c.max_abs_error is not None and out.max_abs_error is not None:
            out.max_abs_error = max(out.max_abs_error, c.max_abs_error)
        if c.max_rel_error is not None and out.max_rel_error is not None:
            out.max_rel_error = max(out.max_rel_error, c.max_rel_error)
    return out


def _array(x: Any) -> np.ndarray | None:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, list | tuple | dict):
        return None
    if type(x).__module__.startswith("torch"):
        from neffkit.execution.inputs import as_array

        return as_array(x)
    return np.asarray(x)


def _wide(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "c":
        return a.astype(np.complex128)
    return a.astype(np.float64)


def merge(worst: OutputComparison, new: OutputComparison, set_index: int) -> None:
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
