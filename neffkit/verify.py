"""Numeric verification: run a reference and a candidate on the same inputs and compare.

``verify(reference, candidate)`` runs the reference on onnxruntime and the candidate on the
torch backend (both configurable), then reports for every output the shapes and dtypes of
both sides, the largest absolute and relative errors, how many elements are outside the
tolerances, and whether the output passes::

    report = neffkit.verify("model.onnx", optimized_graph)
    print(report)
    report.raise_if_failed()

How one output is compared (tolerances per dtype, NaNs, sequences, optionals) is in
``neffkit.execution.compare``; its names are re-exported here.

Without given inputs, two random input sets are checked (seeds ``seed`` and ``seed + 1``);
every symbolic or unknown input dim is 3 in the first and 7 in the second (``dims`` fixes
chosen ones), so a bug that shows only at batch or sequence length > 1 does not pass. When
onnxruntime cannot run the reference at those sizes (a dim the model fixes), that set falls
back to size 1 and the report says so. Sequence outputs are compared element by element,
optional outputs as empty on both sides or by their element.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neffkit.arguments import check_run_arguments
from neffkit.dims import (
    check_dims,
    format_dims,
    input_dims,
    refuse_dims_with_inputs,
    runtime_inputs,
    symbolic_dims,
)
from neffkit.errors import BackendError, NeffkitError, NumericMismatchError, first_line
from neffkit.execution.compare import (
    DEFAULT_TOLERANCES,
    REL_ERR_FLOOR,
    OutputComparison,
    compare,
    compare_all,
    default_tolerances,
    explain,
    json_float,
    merge,
)
from neffkit.execution.exported import ExportedModel
from neffkit.execution.inputs import bind, load_npz, npz_inputs, random_inputs
from neffkit.execution.model import as_graph, describe_model, mentioning
from neffkit.execution.runner import Runner

__all__ = [
    "DEFAULT_DIM_SIZES",
    "DEFAULT_TOLERANCES",
    "REL_ERR_FLOOR",
    "InputSet",
    "OutputComparison",
    "VerificationReport",
    "compare",
    "default_tolerances",
    "load_npz",
    "verify",
]

#: Sizes of symbolic / unknown dims in the default random input sets, one set per size:
#: small distinct primes (so sizes that must agree show when they do not), cheap on big models.
DEFAULT_DIM_SIZES = (3, 7)


@dataclass
class InputSet:
    """One input set of a verification: where it came from, its dim sizes and its verdict."""

    index: int
    seed: int | None
    dims: dict[str, int] = field(default_factory=dict)
    note: str = ""
    failures: list[str] = field(default_factory=list)
    max_abs_error: float | None = None
    feeds: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Every output agrees on this set."""
        return not self.failures

    def describe(self) -> str:
        """``set 0: random seed 0, dims batch=3`` (the verdict is separate)."""
        source = "given" if self.seed is None else f"random seed {self.seed}"
        return f"set {self.index}: {source}, dims {format_dims(self.dims)}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the arrays)."""
        return {
            "index": self.index,
            "seed": self.seed,
            "dims": dict(self.dims),
            "ok": self.ok,
            "failures": list(self.failures),
            "max_abs_error": json_float(self.max_abs_error),
            "note": self.note,
        }


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
    sets: list[InputSet] = field(default_factory=list)

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
            parts.append(f"output '{o.name}': {explain(o)}")
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
            "sets": [x.to_dict() for x in self.sets],
            "outputs": [o.to_dict() for o in self.outputs],
        }

    def __str__(self) -> str:
        from neffkit.report import format_verification

        return format_verification(self)


# -- inputs -----------------------------------------------------------------------------------


def input_sets(
    graph: Any,
    inputs: Any,
    seed: int,
    dims: Mapping[str, int] | None = None,
) -> tuple[list[InputSet], int | None]:
    """Normalizes ``inputs`` to a list of input sets; random ones when ``inputs`` is None.

    Random sets: one per size of :data:`DEFAULT_DIM_SIZES` (seeds ``seed``, ``seed + 1``),
    every symbolic or unknown dim of that size unless ``dims`` names it.

    Returns:
        The sets and the seed used (None when the inputs were given).

    Raises:
        NeffkitError: ``dims`` names a dim the inputs do not have, or is given with inputs.
    """
    graph = as_graph(graph)
    if inputs is None:
        user = check_dims(graph, dims or {})
        sets = []
        for k, size in enumerate(DEFAULT_DIM_SIZES):
            sets.append(_random_set(graph, k, seed + k, user, size))
        return sets, seed
    refuse_dims_with_inputs(dims, inputs)
    if isinstance(inputs, str | os.PathLike):
        given: list[Any] = [npz_inputs(graph, inputs)]
    elif isinstance(inputs, Mapping):
        given = [inputs]
    else:
        items = list(inputs)
        given = items if items and all(isinstance(x, Mapping) for x in items) else [items]
    names = [v.name for v in runtime_inputs(graph)]
    out = []
    for k, feeds in enumerate(given):
        named = feeds if isinstance(feeds, Mapping) else dict(zip(names, feeds))
        out.append(InputSet(k, None, input_dims(graph, named), feeds=feeds))
    return out, None


def _random_set(graph: Any, index: int, seed: int, user: dict[str, int], size: int) -> InputSet:
    feeds = random_inputs(graph, seed, dims=user, default_size=size)
    return InputSet(index, seed, _set_dims(graph, user, size), feeds=feeds)


def _set_dims(graph: Any, user: Mapping[str, int], size: int) -> dict[str, int]:
    """The sizes a random set gives: every symbolic dim, and ``?`` for the unnamed ones."""
    out = {name: user.get(name, size) for name in symbolic_dims(graph)}
    if _has_unnamed_dims(graph):
        out["?"] = size
    return out


def _has_unnamed_dims(graph: Any) -> bool:
    for v in runtime_inputs(graph):
        shape = getattr(v.type, "shape", None)
        if shape is not None and any(d is None for d in shape):
            return True
    return False


def first_input_set(graph: Any, seed: int, dims: Mapping[str, int] | None) -> dict[str, Any]:
    """The first random set verification runs (symbolic dims at 3 unless ``dims`` sets them),
    remade with size 1 where onnxruntime cannot run the reference at those sizes."""
    graph = as_graph(graph)
    sets, _ = input_sets(graph, None, seed, dims)
    runner = Runner(graph, "onnxruntime")
    _reference_outputs(runner, sets[0], graph, dict(dims or {}))
    return sets[0].feeds


def _reference_outputs(
    runner: Runner, item: InputSet, graph: Any, user: Mapping[str, int]
) -> list[Any]:
    """The reference's outputs on a set.

    When the reference cannot run at the sizes chosen for a random set (a dim the model
    fixes, e.g. one that must match a weight), the set is remade with size 1 for one of the
    chosen dims at a time, then for all of them, and the set's note says so. Sizes the user
    gave are never replaced: their error is raised.
    """
    try:
        return runner(item.feeds)
    except NeffkitError as e:
        chosen = {n: v for n, v in item.dims.items() if n not in user and v != 1}
        if item.seed is None or not chosen:
            raise
        error = e
    tries = [[n] for n in chosen] if len(chosen) > 1 else []
    for ones in [*tries, list(chosen)]:
        dims = {**item.dims, **dict.fromkeys(ones, 1)}
        named = {n: v for n, v in dims.items() if n != "?"}
        feeds = random_inputs(graph, item.seed, dims=named, default_size=dims.get("?", 1))
        try:
            want = runner(feeds)
        except NeffkitError:
            continue
        item.feeds, item.dims = feeds, dims
        item.note = (
            f"{runner.backend} cannot run the reference with {format_dims(chosen)} "
            f"({_short_error(error)}); this set uses size 1 for {', '.join(ones)}"
        )
        return want
    raise error


def _short_error(e: BaseException, limit: int = 160) -> str:
    """The gist of a backend error for a note: its first line without the file and
    onnxruntime's source location, at most ``limit`` characters."""
    text = first_line(e)
    if "Status Message:" in text:
        text = text.split("Status Message:", 1)[1].strip()
        if text.startswith("/") and ") " in text:  # "/onnxruntime_src/...: void f(...) msg"
            text = text.split(") ", 1)[1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- verify -----------------------------------------------------------------------------------


def verify(
    reference: Any,
    candidate: Any,
    inputs: Any = None,
    *,
    seed: int = 0,
    dims: Mapping[str, int] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    backend: str = "torch",
    reference_backend: str = "onnxruntime",
    check: bool = True,
) -> VerificationReport:
    """Runs ``reference`` and ``candidate`` on the same inputs and compares every output.

    Args:
        reference: the model to trust (path, ``ModelProto`` or ``Graph``).
        candidate: the model to check: path, ``ModelProto``, ``Graph``, an
            ``neffkit.execution.exported.ExportedModel`` (its bytes are what onnxruntime
            runs), or a ``torch.nn.Module`` (e.g. a loaded TorchScript file) called with the
            inputs in the reference's order.
        inputs: a list or dict of arrays, a list of dicts (several input sets, all checked),
            or an ``.npz`` path; two random sets from the reference's input types when None
            (symbolic dims 3, then 7: see :data:`DEFAULT_DIM_SIZES`).
        seed: seed of the first random set (the second uses ``seed + 1``).
        dims: sizes of symbolic dims in the random sets (``{"batch": 2}``); the others vary.
        atol, rtol: tolerances for every output; by default per dtype (see
            :data:`DEFAULT_TOLERANCES`), exact for ints and bools.
        backend: backend of the candidate (``"torch"``, ``"onnxruntime"`` or another name
            ``neffkit.execution.backend_names()`` lists).
        reference_backend: backend of the reference.
        check: refuse models (given as files or protos) that the ONNX checker refuses as
            invalid; ``False`` runs them anyway.

    Returns:
        A report; it does not raise on a mismatch (call ``report.raise_if_failed()``).

    Raises:
        NeffkitError: a model cannot be read or run, the inputs do not fit, or ``dims`` names
            a dim the reference's inputs do not have.
    """
    check_run_arguments(inputs, seed, atol, rtol)
    ref_runner = Runner(reference, reference_backend, check=check)
    graph = ref_runner.graph
    ref_label = ref_runner.backend
    output_names = ref_runner.output_names
    where = describe_model(reference) if isinstance(reference, str | os.PathLike) else None
    with mentioning(where):
        sets, used_seed = input_sets(graph, inputs, seed, dims)
    user = dict(dims or {})
    # One model prepared at a time: the reference's outputs are computed (a random set whose
    # sizes the reference cannot run is remade first) and its session released before the
    # candidate is lowered, so a big model's weights are not held twice.
    wanted = [_reference_outputs(ref_runner, item, graph, user) for item in sets]
    del ref_runner
    cand_run, cand_label, cand_backend, cand_names = _candidate(candidate, backend, graph, check)
    report = VerificationReport(
        reference=describe_model(reference),
        candidate=cand_label,
        reference_backend=ref_label,
        backend=cand_backend,
        input_sets=len(sets),
        seed=used_seed,
        sets=sets,
    )
    worst: list[OutputComparison] = []
    for k, item in enumerate(sets):
        want = wanted[k]
        got = cand_run(_for_candidate(item.feeds, graph, cand_names))
        if len(got) != len(want):
            msg = f"the candidate has {len(got)} outputs, the reference {len(want)}"
            if msg not in report.problems:
                report.problems.append(msg)
        for i, c in enumerate(compare_all(want, got, rtol=rtol, atol=atol, names=output_names)):
            if not c.ok:
                item.failures.append(c.name)
            if c.max_abs_error is not None:
                item.max_abs_error = max(item.max_abs_error or 0.0, c.max_abs_error)
            if k == 0:
                c.worst_set = 0 if c.max_abs_error is not None else None
                worst.append(c)
            else:
                merge(worst[i], c, k)
    report.outputs = worst
    return report


def _candidate(
    candidate: Any, backend: str, ref_graph: Any, check: bool
) -> tuple[Any, str, str, list[str]]:
    """A callable running the candidate, its label, backend label and runtime input names."""
    if type(candidate).__module__.startswith("torch") and hasattr(candidate, "forward"):
        names = [v.name for v in runtime_inputs(ref_graph)]
        label = f"<{type(candidate).__name__}>"
        return _module_runner(candidate, ref_graph), label, "torch.jit", names
    if isinstance(candidate, ExportedModel):  # the exported bytes, as they will be written
        graph = candidate.graph
        runner = Runner(graph, backend, graph=graph, source=candidate.source)
        return runner, describe_model(graph), runner.backend, runner.input_names
    runner = Runner(candidate, backend, check=check)
    return runner, describe_model(candidate), runner.backend, runner.input_names


def _module_runner(module: Any, ref_graph: Any) -> Any:
    """Calls a torch module with inputs bound and converted as the torch backend does
    (checked against the reference's input types; sequences and empty optionals included)."""
    import torch

    from neffkit.backends.torch import prepare_inputs
    from neffkit.backends.torch.lowering import to_numpy

    def call(feeds: Any) -> list[np.ndarray]:
        args = prepare_inputs(ref_graph, feeds)
        try:
            with torch.no_grad():
                outs = module(*args)
        except Exception as e:  # noqa: BLE001 - report any torch failure as a neffkit error
            first = first_line(e)
            raise BackendError(f"the torch module failed to run: {first}") from e
        if isinstance(outs, torch.Tensor):
            outs = [outs]
        return [_numpy_value(o, to_numpy) for o in outs]

    return call


def _numpy_value(x: Any, to_numpy: Any) -> Any:
    """A module output as numpy: a tensor, a sequence (list of tensors) or None (empty)."""
    if x is None:
        return None
    if isinstance(x, list | tuple):
        return [to_numpy(e) for e in x]
    return to_numpy(x)


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
