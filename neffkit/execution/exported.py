"""A graph exported to ONNX once: the one artefact that is checked, run and written.

``neffkit.optimize`` exports its result once, loads those bytes in onnxruntime (the model must
load there whatever the target), verifies them, and writes them: the file on disk is the
model that was verified, not a fresh export of the graph. A model whose weights live in
external data (or would not fit a 2 GiB protobuf) is exported once to a temporary folder as a
model file and its data file; writing it copies the data file as is and names it in the
model file (the only bytes that change are that name).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref

import onnx
from onnx import AttributeProto, GraphProto, TensorProto

from neffkit import files
from neffkit.backends import onnx as onnx_backend
from neffkit.errors import BackendError
from neffkit.ir.core import Graph

__all__ = ["ExportedModel"]

_MODEL = "model.onnx"
_DATA = _MODEL + ".data"
#: An inline model larger than this is kept in a temporary file rather than in memory.
SPILL_BYTES = 256 * 1024 * 1024


class ExportedModel:
    """``graph`` exported once: inline bytes (in a temporary file when over ``SPILL_BYTES``),
    or a model file and its data file in a temporary folder.

    Args:
        graph: the top-level graph to export.
        external_data: weights in a data file (True), inline (False), or as ``save`` would
            choose (None: when the graph came with external data or would not fit a protobuf).
    """

    def __init__(self, graph: Graph, *, external_data: bool | None = None) -> None:
        self.graph = graph
        if external_data is None:
            external_data = onnx_backend.wants_external_data(graph)
        self.external_data = bool(external_data)
        self.blob: bytes | None = None
        self.folder: str | None = None
        if not self.external_data:
            try:
                blob = onnx_backend.to_onnx(graph).SerializeToString()
            except ValueError as e:  # protobuf refuses a message over 2 GiB
                raise BackendError(f"could not serialize the model: {e}") from e
            if len(blob) <= SPILL_BYTES:
                self.blob = blob
                return
            # a big model waits on disk, not in memory beside the graph, while it is verified
            self._make_folder()
            with open(self._path, "wb") as f:
                f.write(blob)
            return
        self._make_folder()
        onnx_backend.save(graph, self._path, external_data=True)

    def _make_folder(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="neffkit-export-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, True)

    @property
    def source(self) -> str | bytes:
        """What a runtime loads: the model's bytes, or the path of the exported model file."""
        return self._path if self.blob is None else self.blob

    @property
    def _path(self) -> str:
        return os.path.join(self.folder or "", _MODEL)

    def model_bytes(self) -> bytes:
        """The bytes of the exported model file (without its data file; read from disk when
        they wait there)."""
        if self.blob is not None:
            return self.blob
        with open(self._path, "rb") as f:
            return f.read()

    def sha256(self) -> str:
        """A hash of what was exported: the model file, then the data file if there is one."""
        h = hashlib.sha256(self.model_bytes())
        if self.folder is not None:
            data = os.path.join(self.folder, _DATA)
            if os.path.exists(data):
                with open(data, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
        return h.hexdigest()

    def write(self, path: str | os.PathLike) -> None:
        """Writes the exported model to ``path`` (and its data file beside it), atomically.

        The same protections as ``neffkit.save``: an interrupted write leaves the old model
        or the new one, whole; ``path`` may not be a file the graph reads its weights from.

        Raises:
            BackendError: ``path`` is a folder.
            FileCollisionError: ``path`` is one of the files the graph reads.
        """
        path = os.fspath(path)
        if os.path.isdir(path):
            raise BackendError(f"{path}: is a directory, expected a file name")
        reads = onnx_backend.external_files(self.graph)
        files.check_writes(
            [files.Write(path, "the output model")],
            {p: "external data the graph reads" for p in reads},
            folders_exist=False,
        )
        folder = os.path.dirname(os.path.abspath(path)) or "."
        os.makedirs(folder, exist_ok=True)
        with files.TempFiles(folder) as temps:
            data_tmp = data_name = None
            blob = self.blob
            if self.external_data:
                data_name = files.new_data_name(path)
                blob = _renamed_data(self._path, data_name)
                fd, data_tmp = temps.new()
                os.close(fd)
                shutil.copyfile(os.path.join(self.folder or "", _DATA), data_tmp)
            fd, model_tmp = temps.new()
            with os.fdopen(fd, "wb") as f:
                if blob is not None:
                    f.write(blob)
                else:  # an inline model spilled to disk
                    with open(self._path, "rb") as src:
                        shutil.copyfileobj(src, f, 1 << 20)
            files.replace_model_pair(
                temps,
                path,
                model_tmp,
                data_tmp,
                data_name,
                old_references=lambda: onnx_backend.referenced_files(path),
                keep=reads,
            )

    def close(self) -> None:
        """Removes the temporary folder now (it goes when the object does otherwise)."""
        if self.folder is not None:
            self._cleanup()


def _renamed_data(model_path: str, data_name: str) -> bytes:
    """The exported model file with every external tensor pointing at ``data_name``."""
    mp = onnx.load(model_path, load_external_data=False)
    stack: list[GraphProto] = [mp.graph]
    while stack:
        g = stack.pop()
        for t in g.initializer:
            _rename(t, data_name)
        for n in g.node:
            for a in n.attribute:
                if a.type == AttributeProto.TENSOR:
                    _rename(a.t, data_name)
                elif a.type == AttributeProto.TENSORS:
                    for t in a.tensors:
                        _rename(t, data_name)
                elif a.type == AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return mp.SerializeToString()


def _rename(t: TensorProto, data_name: str) -> None:
    if t.data_location != TensorProto.EXTERNAL:
        return
    for e in t.external_data:
        if e.key == "location":
            e.value = data_name
