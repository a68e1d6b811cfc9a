"""ONNX backend: saving a ``Graph`` to a file (atomically, the model and its external data as a
pair; see :mod:`neffkit.files`), and the files a graph or a model reads.

The conversion ``Graph`` -> ``ModelProto`` is the IR's ONNX codec (``neffkit.ir.serde``);
``to_onnx`` and ``encode_attribute`` stay importable from here.
"""

from __future__ import annotations

import os

import onnx
from onnx import AttributeProto, GraphProto, TensorProto

from neffkit import files
from neffkit.errors import BackendError, NeffkitError
from neffkit.ir.core import Graph
from neffkit.ir.serde import ExternalWriter, encode_attribute, to_onnx
from neffkit.ir.tensor import Tensor

__all__ = [
    "ExternalWriter",
    "encode_attribute",
    "external_files",
    "referenced_files",
    "save",
    "to_onnx",
]

PathLike = str | os.PathLike

_MAX_PROTO = 2**31 - 1 - 64 * 1024 * 1024


# -- saving -----------------------------------------------------------------------------------


def save(
    graph: Graph,
    path: PathLike,
    *,
    external_data: bool | None = None,
    overwrite: bool = True,
) -> None:
    """Writes ``graph`` to ``path`` so that a kill at any moment leaves the old or the new file.

    With external data the model and its data file are replaced as a pair: the data goes to a
    name no file has (``<file>.data``, or ``<file>.<16 hex>.data`` when that exists), then the
    model is renamed over ``path``, and only then is the old data file removed (see
    :func:`neffkit.files.replace_model_pair`). Temporary files live beside ``path`` and are
    removed on errors, SIGINT and SIGTERM; the files get the umask's mode.

    Args:
        graph: the top-level graph.
        path: destination ``.onnx`` file.
        external_data: put initializers of 1 KiB and more into a data file beside the model.
            ``None`` (default) does so when the input model had external data or when the
            weights would not fit a 2 GiB protobuf.
        overwrite: refuse an existing destination when False.

    Raises:
        BackendError: ``path`` exists and ``overwrite`` is False, or the model cannot be
            serialized.
        FileCollisionError: ``path`` is one of the files the graph reads its weights from.
    """
    if not isinstance(graph, Graph):
        raise BackendError(f"save takes a neffkit Graph, got {type(graph).__name__}")
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise BackendError(f"save takes a file path, got {path!r}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise BackendError(f"{path}: is a directory, expected a file name")
    if not overwrite and os.path.lexists(path):
        raise BackendError(f"{path}: exists; refusing to overwrite it")
    reads = external_files(graph)
    files.check_writes(
        [files.Write(path, "the output model")],
        {p: "external data the graph reads" for p in reads},
        folders_exist=False,
    )
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    if external_data is None:
        external_data = wants_external_data(graph)
    with files.TempFiles(folder) as temps:
        tmp_data = data_name = None
        writer = None
        if external_data:
            data_name = files.new_data_name(path)
            fd, tmp_data = temps.new()
            data_file = os.fdopen(fd, "wb")
            writer = _DataWriter(data_file, data_name)
        try:
            try:
                mp = to_onnx(graph, external=writer)
            finally:
                if writer is not None:
                    data_file.close()
            blob = mp.SerializeToString()
        except ValueError as e:
            raise BackendError(f"{path}: could not serialize the model: {e}") from e
        fd, tmp_model = temps.new()
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        del blob
        files.replace_model_pair(
            temps,
            path,
            tmp_model,
            tmp_data,
            data_name,
            old_references=lambda: referenced_files(path),
            keep=reads,
        )


def external_files(graph: Graph) -> list[str]:
    """The external data files a graph reads its tensors from (initializers and tensor
    attributes, in every subgraph), as absolute paths, each once."""
    seen: dict[str, None] = {}
    for g in graph.all_graphs():
        for v in g.initializers.values():
            if v.const is not None and v.const.external_path:
                seen[v.const.external_path] = None
        for node in g:
            for a in node.attributes.values():
                if a.type not in (AttributeProto.TENSOR, AttributeProto.TENSORS):
                    continue
                try:
                    value = a.value
                except NeffkitError:
                    continue
                for t in value if isinstance(value, list) else [value]:
                    p = getattr(t, "external_path", None)
                    if p:
                        seen[p] = None
    return list(seen)


def referenced_files(path: PathLike) -> list[str]:
    """The external data files the ONNX model at ``path`` references (absolute paths).

    Reads only the model file; an unreadable one references nothing (nothing is removed).
    """
    path = os.fspath(path)
    try:
        mp = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - not a readable model: claim nothing
        return []
    folder = os.path.dirname(os.path.abspath(path))
    out: dict[str, None] = {}
    stack: list[GraphProto] = [mp.graph]
    for f in mp.functions:
        for n in f.node:
            _attr_tensors(n, out, folder)
            stack.extend(_subgraphs(n))
    while stack:
        g = stack.pop()
        for t in g.initializer:
            _external_location(t, out, folder)
        for n in g.node:
            _attr_tensors(n, out, folder)
            stack.extend(_subgraphs(n))
    return list(out)


def _subgraphs(n: onnx.NodeProto) -> list[GraphProto]:
    subs = []
    for a in n.attribute:
        if a.type == AttributeProto.GRAPH:
            subs.append(a.g)
        elif a.type == AttributeProto.GRAPHS:
            subs.extend(a.graphs)
    return subs


def _attr_tensors(n: onnx.NodeProto, out: dict[str, None], folder: str) -> None:
    for a in n.attribute:
        if a.type == AttributeProto.TENSOR:
            _external_location(a.t, out, folder)
        elif a.type == AttributeProto.TENSORS:
            for t in a.tensors:
                _external_location(t, out, folder)


def _external_location(t: TensorProto, out: dict[str, None], folder: str) -> None:
    if t.data_location != TensorProto.EXTERNAL:
        return
    for e in t.external_data:
        if e.key == "location" and e.value:
            out[os.path.abspath(os.path.join(folder, e.value))] = None


def wants_external_data(graph: Graph) -> bool:
    """Whether ``save`` writes external data by default.

    Yes when the source model kept its weights in external data (recorded at load, so that
    passes that read or replace tensors do not turn a big model into one inline protobuf),
    when some tensor still lives in a file, or when the weights would not fit a protobuf.
    """
    if graph.meta.external_data:
        return True
    total = 0
    for g in graph.all_graphs():
        for v in g.initializers.values():
            t = v.const
            if t is not None:
                if t.is_external:
                    return True
                total += t.nbytes
    return total > _MAX_PROTO


class _DataWriter:
    """Appends tensor bytes to one data file, 64-byte aligned, and records where."""

    def __init__(self, f, location: str) -> None:  # noqa: ANN001 - a binary file object
        self.f = f
        self.location = location
        self.offset = 0

    def __call__(self, t: Tensor, tp: TensorProto) -> None:
        pad = (-self.offset) % 64
        if pad:
            self.f.write(b"\0" * pad)
            self.offset += pad
        # Streamed: an external weight goes from its file to the new one in chunks, unread.
        length = 0
        for piece in t.byte_chunks():
            self.f.write(piece)
            length += len(piece)
        tp.data_location = TensorProto.EXTERNAL
        for k, val in (("location", self.location), ("offset", self.offset), ("length", length)):
            e = tp.external_data.add()
            e.key = k
            e.value = str(val)
        self.offset += length
