"""onnxruntime backend: the reference executor every optimization is checked against."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import onnx

from neffkit.errors import BackendError, first_line
from neffkit.ir.core import Graph

Inputs = Sequence[Any] | Mapping[str, Any]


class OnnxRuntimeBackend:
    """The ``onnxruntime`` backend of the registry (``neffkit.execution``): CPU provider,
    onnxruntime's own graph optimizations off, so the reference runs the graph as written."""

    name = "onnxruntime"

    def version(self) -> str:
        """onnxruntime's version."""
        import onnxruntime as ort

        return str(ort.__version__)

    def prepare(self, graph: Graph, *, device: Any = None, source: Any = None) -> Prepared:
        """A session for ``source`` when given (a path, proto or bytes), else for ``graph``."""
        if device is not None and str(device) != "cpu":
            raise BackendError(f"the onnxruntime backend runs on the CPU only, not on '{device}'")
        if source is None:
            return Prepared(session(graph))
        from neffkit.backends.onnx import wants_external_data

        # weights in a data file are held once, in the memory-mapped file (see ``session``)
        return Prepared(session(source, prepack=not wants_external_data(graph)))


class Prepared:
    """An onnxruntime session that runs bound feeds."""

    device = "cpu"

    def __init__(self, sess: Any) -> None:
        self.session = sess

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        """Runs the session; numpy scalars become 0-d arrays, sequences stay lists."""
        try:
            # errors come back as exceptions; onnxruntime's own log of them is noise
            outs = self.session.run(None, dict(feeds), _quiet_run_options())
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise BackendError(f"onnxruntime failed to run the model: {first_line(e)}") from e
        return [o if isinstance(o, list) or o is None else np.asarray(o) for o in outs]


def _quiet_run_options() -> Any:
    import onnxruntime as ort

    opts = ort.RunOptions()
    opts.log_severity_level = 4
    return opts


def session(
    model: onnx.ModelProto | Graph | str | bytes,
    *,
    optimize: bool = False,
    threads: int = 1,
    prepack: bool = True,
) -> Any:
    """Creates an ``InferenceSession``.

    A Graph whose weights live in external data (or would not fit one protobuf) is written
    to a temporary folder with external data and loaded from there, so no 2 GB protobuf is
    built in memory and onnxruntime reads only files neffkit wrote from checked sources.

    Args:
        model: a ModelProto, its serialized bytes, a Graph (exported first) or a path.
        optimize: let onnxruntime apply its own graph optimizations; off by default so the
            reference runs the graph as written.
        threads: intra-op threads (1 gives repeatable timings).
        prepack: let kernels keep a repacked copy of constant weights (MatMul, Conv); off, the
            weights stay in the memory-mapped data file only (a big model's are held once).
    """
    import onnxruntime as ort

    if isinstance(model, Graph):
        from neffkit.backends.onnx import to_onnx, wants_external_data

        if wants_external_data(model):
            with model_on_disk(model) as path:
                return session(path, optimize=optimize, threads=threads, prepack=False)
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
    if not prepack:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model if isinstance(model, str | bytes) else model.SerializeToString()
    try:
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise BackendError(f"onnxruntime could not load the model: {first_line(e)}") from e


@contextmanager
def model_on_disk(graph: Graph) -> Iterator[str]:
    """The path of ``graph`` saved with external data in a temporary folder, removed after.

    The folder is made in the system's temporary directory, never beside the user's files.
    """
    from neffkit.backends.onnx import save

    with tempfile.TemporaryDirectory(prefix="neffkit-ort-", ignore_cleanup_errors=True) as d:
        path = os.path.join(d, "model.onnx")
        save(graph, path, external_data=True)
        yield path


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
        raise BackendError(f"onnxruntime failed to run the model: {first_line(e)}") from e
    return [np.asarray(o) if not isinstance(o, list) else o for o in outs]


def bind_inputs(names: Sequence[str], inputs: Inputs) -> dict[str, Any]:
    """Matches positional or named inputs to a session's input names, for callers of
    :func:`run` (which takes any ONNX file, not only a neffkit graph).

    Inputs of a neffkit graph are bound and checked against its declared types by
    ``neffkit.execution.bind``; this only lines up names.
    """
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
