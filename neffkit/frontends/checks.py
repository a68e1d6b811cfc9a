"""Validity checks on an ONNX model before it is run, converted or optimized.

``run``, ``convert`` and ``optimize`` refuse what the ONNX checker or onnxruntime refuse as
invalid (a backend that "runs" an invalid model gives answers nobody can check). The checker
runs without its full shape inference (``full_check=False``): about a fifth of the load time
on a 100k-node model, against three quarters with it. What it leaves out and onnxruntime
refuses is checked here: opset versions outside what onnx knows, and ``If`` branches whose
declared output types disagree. Callers that know better pass ``check=False``
(``--no-check``). A main-graph input or output of unknown rank (no ``shape``, element type set)
is accepted although the checker asks for a shape there: the IR spec allows it and onnxruntime
runs it.
"""

from __future__ import annotations

import onnx
from onnx import ModelProto

from neffkit.errors import FrontendError
from neffkit.ir.core import Graph, Node
from neffkit.ir.serde.tensors import KNOWN_DTYPES, check_input_type, negative_dims
from neffkit.ir.tensor import dtype_name

__all__ = [
    "KNOWN_DTYPES",
    "MIN_OPSET",
    "check_if_nodes",
    "check_input_type",
    "check_opsets",
    "check_proto",
    "negative_dims",
]

#: The oldest ai.onnx opset neffkit and onnxruntime run: the opsets before 6 give ops legacy
#: attributes (``consumed_inputs``) with other semantics that neither implements.
MIN_OPSET = 6

_HOW_TO_SKIP = "(--no-check, or check=False, runs it anyway)"

# -- always checked while loading (cheap, and nothing downstream copes without them) ----------

# KNOWN_DTYPES, negative_dims and check_input_type belong to the ONNX codec, which makes these
# checks while it decodes; they stay importable from here.

# -- the validity check (``check=True``) ------------------------------------------------------


def check_proto(
    proto: ModelProto | None, data: bytes | None, source: str, *, path: str | None = None
) -> None:
    """Runs the ONNX checker on a model given as a file (``path``), bytes or a proto.

    A model whose tensors live in external data must be checked from its file: the checker
    looks for the data files in the model's folder, and from bytes it has no folder (it would
    look in the current directory). Only their presence is checked there; neffkit's loader has
    already refused locations outside the folder and links.

    Raises:
        FrontendError: naming the file and the checker's reason.
    """
    try:
        if path is not None:
            onnx.checker.check_model(path)
        elif data is not None:
            onnx.checker.check_model(data)
        elif proto is not None:
            if proto.ByteSize() >= 2**31:
                return  # cannot be serialized in one piece; the structural checks still run
            onnx.checker.check_model(proto.SerializeToString())
    except Exception as e:  # noqa: BLE001 - the checker raises ValidationError and others
        if _only_unknown_rank_io(e, proto, data, path):
            return
        text = " ".join(str(e).split()) or type(e).__name__
        raise FrontendError(
            f"{source}: invalid ONNX model (onnx checker: {text}) {_HOW_TO_SKIP}"
        ) from e


_NO_SHAPE = "Field 'shape' of 'type' is required but missing"


def _only_unknown_rank_io(
    error: Exception, proto: ModelProto | None, data: bytes | None, path: str | None
) -> bool:
    """Whether the checker refused only a main-graph input or output of unknown rank.

    The IR spec makes a tensor type without ``shape`` a tensor of unknown rank, and
    onnxruntime runs such a model, but the checker requires ``shape`` on the main graph's
    inputs and outputs (subgraphs are exempt). Such an input or output with its element type
    set is legal: the model is checked again with those shapes filled in for the checker only.
    A model with external data (checked from its file) is not retried.
    """
    if _NO_SHAPE not in str(error) or path is not None:
        return False
    model = ModelProto()
    if proto is not None:
        model.CopyFrom(proto)
    else:
        model.ParseFromString(data or b"")
    patched = False
    for vi in [*model.graph.input, *model.graph.output]:
        t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if t is not None and t.elem_type and not t.HasField("shape"):
            t.shape.SetInParent()  # any shape: the checker does not infer without full_check
            patched = True
    if not patched:
        return False
    try:
        onnx.checker.check_model(model.SerializeToString())
    except Exception:  # noqa: BLE001 - refused for another reason: report the first one
        return False
    return True


def check_opsets(graph: Graph, source: str) -> None:
    """Refuses an ai.onnx opset that onnx does not know yet or that predates ``MIN_OPSET``."""
    version = graph.opset_imports.get("")
    if version is None:
        return
    newest = onnx.defs.onnx_opset_version()
    if version > newest:
        raise FrontendError(
            f"{source}: imports ai.onnx opset {version}, newer than the newest this onnx "
            f"knows ({newest}) {_HOW_TO_SKIP}"
        )
    if version < MIN_OPSET:
        raise FrontendError(
            f"{source}: imports ai.onnx opset {version}; opsets before {MIN_OPSET} are not "
            f"supported (upgrade it with onnx.version_converter) {_HOW_TO_SKIP}"
        )


def check_if_nodes(if_nodes: list[Node], source: str) -> None:
    """Refuses ``If`` nodes without both branches or whose branches declare other types."""
    for node in if_nodes:
        then_g = node.attr("then_branch")
        else_g = node.attr("else_branch")
        where = f"{source}: node '{node.name or '<unnamed>'}' (If)"
        if not isinstance(then_g, Graph) or not isinstance(else_g, Graph):
            missing = "then_branch" if not isinstance(then_g, Graph) else "else_branch"
            raise FrontendError(f"{where} has no graph attribute '{missing}' {_HOW_TO_SKIP}")
        if len(then_g.outputs) != len(else_g.outputs):
            raise FrontendError(
                f"{where}: then_branch has {len(then_g.outputs)} outputs, else_branch "
                f"{len(else_g.outputs)} {_HOW_TO_SKIP}"
            )
        for i, (a, b) in enumerate(zip(then_g.outputs, else_g.outputs)):
            ta, tb = a.dtype, b.dtype
            if ta and tb and ta != tb:
                raise FrontendError(
                    f"{where}: output {i} is {dtype_name(ta)} in then_branch but "
                    f"{dtype_name(tb)} in else_branch {_HOW_TO_SKIP}"
                )
