"""onnxruntime backend: the reference executor every optimization is checked against."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from neffkit.errors import BackendError
from neffkit.ir.core import Graph

Inputs = Sequence[Any] | Mapping[str, Any]


def session(
    model: onnx.ModelProto | Graph | str,
    *,
    optimize: bool = False,
    threads: int = 1,
) -> Any:
    """Creates an ``InferenceSession``.

    Args:
        model: a ModelProto, a Graph (exported first) or a path.
        optimize: let onnxruntime apply its own graph optimizations; off by default so the
            reference runs the graph as written.
        threads: intra-op threads (1 gives repeatable timings).
    """
    import onnxruntime as ort

    if isinstance(model, Graph):
        from neffkit.backends.onnx import to_onnx

        model = to_onnx(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # onnxruntime logs to stderr from C++ (load-time warnings go to its default logger). Its
    # failures reach the caller as exceptions, which neffkit reports itself: so only fatal
    # messages, unless neffkit was asked to be verbose (-v).
    quiet = not logging.getLogger("neffkit").isEnabledFor(logging.INFO)
    ort.set_default_logger_severity(4 if quiet else 2)
    opts.log_severity_level = 4 if quiet else 2
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model if isinstance(model, str) else model.SerializeToString()
    try:
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise BackendError(f"onnxruntime could not load the model: {_first_line(e)}") from e


def run(
    model: onnx.ModelProto | Graph | str,
    inputs: Inputs,
    *,
    optimize: bool = False,
) -> list[np.ndarray]:
    """Runs a model once on onnxruntime's CPU provider and returns its outputs in order."""
    sess = session(model, optimize=optimize)
    feeds = bind_inputs([i.name for i in sess.get_inputs()], inputs)
    try:
        outs = sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001
        raise BackendError(f"onnxruntime failed to run the model: {_first_line(e)}") from e
    return [np.asarray(o) if not isinstance(o, list) else o for o in outs]


def bind_inputs(names: Sequence[str], inputs: Inputs) -> dict[str, Any]:
    """Matches positional or named inputs to the model's input names, with clear errors."""
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise BackendError(f"missing inputs: {', '.join(missing)} (model takes {list(names)})")
        unknown = [n for n in inputs if n not in names]
        if unknown:
            raise BackendError(f"unknown inputs: {', '.join(unknown)} (model takes {list(names)})")
        return {n: _array(inputs[n]) for n in names}
    inputs = list(inputs)
    if len(inputs) != len(names):
        raise BackendError(f"model takes {len(names)} inputs {list(names)}, got {len(inputs)}")
    return {n: _array(x) for n, x in zip(names, inputs)}


def _array(x: Any) -> Any:
    """numpy scalars (``np.bool_(True)``) become 0-d arrays; other values pass unchanged."""
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
