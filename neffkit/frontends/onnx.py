"""ONNX frontend: a model file, its bytes or a ``ModelProto`` -> ``Graph``.

This module reads the file, gives the decoder the model's folder (the only place external data
may come from), names the file in every error, and with ``check`` runs the ONNX checker. The
conversion itself is the IR's ONNX codec (``neffkit.ir.serde.decode_model``).
"""

from __future__ import annotations

import os

from google.protobuf.message import DecodeError
from onnx import ModelProto

from neffkit.errors import FrontendError
from neffkit.frontends import checks
from neffkit.ir.core import Graph, infer_attribute_type
from neffkit.ir.serde import decode_attribute, decode_model

#: decode_attribute and infer_attribute_type live in the IR (ir/serde, ir/core.py); they
#: stay importable from here for callers that know them under this module.
__all__ = ["decode_attribute", "infer_attribute_type", "load"]

PathLike = str | os.PathLike


def load(model: PathLike | ModelProto | bytes, *, check: bool = False) -> Graph:
    """Reads an ONNX model from a path, serialized bytes or a ModelProto into a ``Graph``.

    Args:
        model: a path, the serialized bytes or a ``ModelProto``.
        check: also refuse models the ONNX checker or onnxruntime refuse as invalid (see
            ``neffkit.frontends.checks``); ``run``, ``convert`` and ``optimize`` ask for it.

    Raises:
        FrontendError: the file is missing, not an ONNX model, refers to something invalid or
            (with ``check``) is refused by the checker.
    """
    base_dir: str | None = None
    source = "<ModelProto>"
    data: bytes | None = None
    if isinstance(model, ModelProto):
        proto = model
    elif isinstance(model, bytes | bytearray):
        source = "<bytes>"
        data = bytes(model)
        proto = _parse(data, source)
    elif isinstance(model, str | os.PathLike):
        path = os.fspath(model)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        source = path
        if not os.path.exists(path):
            raise FrontendError(f"{path}: no such file")
        if os.path.isdir(path):
            raise FrontendError(f"{path}: is a directory, expected an .onnx file")
        with open(path, "rb") as f:
            data = f.read()
        proto = _parse(data, path)
        base_dir = os.path.dirname(os.path.abspath(path))
    else:
        raise FrontendError(
            "expected a model path, serialized bytes or onnx.ModelProto, got "
            f"{type(model).__name__}"
        )
    try:
        graph = decode_model(proto, base_dir=base_dir, source=source)
    except FrontendError as e:
        if base_dir is not None and not str(e).startswith(source):
            raise FrontendError(f"{source}: {e}") from e  # name the file
        raise
    if check:
        # after loading, so that unsafe external data is refused by neffkit's own checks first;
        # a model with external data is checked from its file, whose folder the checker needs
        external = graph.meta.external_data
        checks.check_proto(proto, data, source, path=source if external else None)
        checks.check_opsets(graph, source)
        checks.check_if_nodes([n for n in graph.all_nodes() if n.op_type == "If"], source)
    graph.meta.source_path = None if base_dir is None else os.path.abspath(source)
    return graph


def _parse(data: bytes, where: str) -> ModelProto:
    if not data:
        raise FrontendError(f"{where}: file is empty, expected an ONNX model")
    proto = ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as e:
        raise FrontendError(
            f"{where}: not a valid ONNX model (protobuf decode failed: {e}); "
            "the file may be truncated or of another format"
        ) from e
    if not proto.HasField("graph"):
        raise FrontendError(f"{where}: parsed as protobuf but holds no ONNX graph")
    return proto
