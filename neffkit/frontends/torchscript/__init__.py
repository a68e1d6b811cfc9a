"""Lifting a TorchScript module (scripted or traced) into neffkit's IR.

The module is frozen (``torch.jit.freeze``: parameters become constants, methods are inlined),
inference-only context is folded (``is_grad_enabled``, ``requires_grad``, ``is_nested`` are
False, so the branches on them go), then the graph is walked once: parameters and buffers
become initializers, aten ops with an ONNX form become ONNX opset-18 nodes (the rules in
``rules_scalar``, ``rules_nn``, ``rules_shape``, ``rules_rnn``), ``prim::Loop``/``prim::If``
become ``Loop``/``If``, and an aten op without an ONNX form stays as a node of domain ``aten``
(op_type = the aten name; attributes: ``schema``, the non-tensor arguments by schema name, and
``tensor_args`` naming the node's inputs) that passes treat as opaque. IR nodes are
functional: a pass such as dce removes one whose outputs nothing reads, whatever its domain,
so in-place ops that torch cannot make functional are refused.

Constructs that have no tensor-graph meaning (Python objects, dicts, strings computed outside
warnings and raise branches, lists mutated in loops, complex or quantized dtypes) raise one
``FrontendError`` naming the op and its source location (the first frame outside torch).
"""

from __future__ import annotations

import os
from typing import Any

from neffkit.errors import FrontendError
from neffkit.frontends.torchscript.lifter import Lifter
from neffkit.frontends.torchscript.prepare import check_constructs, fold_inference_context, freeze
from neffkit.frontends.torchscript_archive import load_archive
from neffkit.ir import Graph

__all__ = ["load_torchscript"]


def load_torchscript(
    module_or_path: Any, *, example_inputs: Any = None, trust_code: bool = False
) -> Graph:
    """Lifts a ``torch.jit.ScriptModule`` (or a ``.pt`` archive, loaded safely) into a Graph.

    Args:
        module_or_path: a scripted or traced module, or the path of a ``torch.jit.save`` file.
        example_inputs: a tensor or tuple of tensors; when given, the graph inputs take their
            dtypes and (static) shapes, else the TorchScript types (complete for traces).
        trust_code: passed to ``load_archive`` for a path.

    Raises:
        FrontendError: the file is refused, the module cannot be frozen, or a construct
            cannot be lifted (the message names the op and its source location).
    """
    import torch  # noqa: PLC0415 - torch is only needed once a TorchScript model is read

    if isinstance(module_or_path, str | os.PathLike):
        module = load_archive(module_or_path, trust_code=trust_code)
    else:
        module = module_or_path
    if not isinstance(module, torch.jit.ScriptModule):
        raise FrontendError(
            f"load_torchscript takes a torch.jit.ScriptModule or a path, got "
            f"{type(module).__name__} (script or trace it first)"
        )
    if example_inputs is not None and not isinstance(example_inputs, tuple | list):
        example_inputs = (example_inputs,)
    frozen = freeze(module)
    graph = frozen.graph
    fold_inference_context(graph)
    check_constructs(graph)
    return Lifter(frozen, example_inputs).run()
