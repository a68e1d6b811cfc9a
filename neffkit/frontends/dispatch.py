"""``neffkit.load``: one entry point that picks the frontend by what it is given.

A ``torch.jit.ScriptModule`` and a file whose bytes are a zip or a pickle (what ``torch.jit.save``
and ``torch.save`` write, whatever its name) go to the TorchScript frontend, whose safe loader
reads a TorchScript archive and explains why anything else is refused; every other path,
bytes or ``ModelProto`` goes to the ONNX frontend, as before.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from neffkit.frontends import onnx as onnx_frontend
from neffkit.frontends.torchscript import load_torchscript
from neffkit.ir import Graph

__all__ = ["is_torch_file", "load"]

#: First bytes of a zip (``torch.jit.save``, ``torch.save``) and of a pickle (legacy torch.save).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def is_torch_file(path: str | os.PathLike) -> bool:
    """True when the file's first bytes say zip or pickle: PyTorch's formats, never ONNX's."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False  # the ONNX frontend words the error (missing file, directory)
    return head.startswith(_TORCH_MAGIC)


def load(
    model: Any,
    *,
    check: bool = False,
    example_inputs: Any = None,
    trust_code: bool = False,
) -> Graph:
    """Reads an ONNX model (path, bytes, ``ModelProto``) or a TorchScript module (a
    ``torch.jit.ScriptModule`` or a ``torch.jit.save`` file) into a ``Graph``.

    Args:
        model: what to read.
        check: ONNX only: also refuse models the ONNX checker or onnxruntime refuse.
        example_inputs: TorchScript only: inputs whose dtypes and shapes the graph inputs take.
        trust_code: TorchScript files only: accept archive code the safe loader would refuse.

    Raises:
        FrontendError: the model cannot be read (the frontend's message says why).
    """
    torch = sys.modules.get("torch")  # a ScriptModule means torch is already imported
    script_module = torch is not None and isinstance(model, torch.jit.ScriptModule)
    is_path = isinstance(model, str | os.PathLike)
    if script_module or (is_path and is_torch_file(model)):
        return load_torchscript(model, example_inputs=example_inputs, trust_code=trust_code)
    return onnx_frontend.load(model, check=check)
