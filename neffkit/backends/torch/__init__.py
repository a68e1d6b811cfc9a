"""torch backend: Graph -> ``torch.fx.GraphModule`` (readable code), eager on CPU or CUDA,
exportable as TorchScript. This is also neffkit's ONNX -> PyTorch converter."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from neffkit.backends.torch.convert import from_carrier, to_numpy, to_torch
from neffkit.backends.torch.host_loop import marked_loops, to_host_loop
from neffkit.backends.torch.lowering import lower_graph
from neffkit.backends.torch.registry import supported_ops
from neffkit.errors import BackendError, first_line
from neffkit.ir.core import Graph, Value
from neffkit.ir.tensor import dtype_name, np_dtype
from neffkit.ir.types import TensorType

__all__ = [
    "TorchBackend",
    "check_device",
    "compile",
    "run",
    "runtime_inputs",
    "supported_ops",
    "to_torchscript",
]


class TorchBackend:
    """The ``torch`` backend of the registry (``neffkit.execution``): the graph lowered to a
    ``torch.fx.GraphModule``, eager on the CPU or a CUDA (or MPS) device."""

    name = "torch"

    def version(self) -> str:
        """torch's version."""
        return str(torch.__version__)

    def prepare(self, graph: Graph, *, device: Any = None, source: Any = None) -> Prepared:
        """Lowers ``graph`` once (``source`` is not needed: the lowering reads the graph)."""
        dev = check_device(device)
        return Prepared(graph, compile(graph, dev), dev)


class Prepared:
    """A lowered module that runs bound feeds."""

    def __init__(self, graph: Graph, module: torch.nn.Module, device: torch.device | None) -> None:
        self.graph = graph
        self.module = module
        self.torch_device = device
        self.device = "cpu" if device is None else str(device)

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        """Runs the module on ``feeds`` and returns numpy outputs."""
        return run(self.graph, feeds, device=self.torch_device, module=self.module)


def check_device(device: Any) -> torch.device | None:
    """``device`` as a ``torch.device`` the backend can use, or a clear ``BackendError``.

    The backend runs on the CPU and, where torch sees one, on CUDA (or MPS).
    """
    if device is None:
        return None
    if not isinstance(device, str | torch.device):
        raise BackendError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as e:
        raise BackendError(f"unknown torch device '{device}' (use cpu or cuda)") from e
    if dev.type == "cpu":
        return dev
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": hasattr(torch.backends, "mps") and torch.backends.mps.is_available(),
    }
    if dev.type not in available:
        raise BackendError(f"the torch backend does not run on '{device}' (use cpu or cuda)")
    if not available[dev.type]:
        raise BackendError(f"device '{device}' is not available: torch sees no {dev.type} device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise BackendError(
            f"device '{device}' is not available: torch sees {torch.cuda.device_count()} "
            "cuda device(s)"
        )
    return dev


def compile(graph: Graph, device: str | torch.device | None = None) -> torch.fx.GraphModule:  # noqa: A001
    """Lowers ``graph`` to a ``torch.fx.GraphModule``; ``print(m.code)`` shows its code.

    Args:
        graph: a top-level graph.
        device: where to put the weights (``"cuda"``); inputs must be on the same device.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = lower_graph(graph)
    gm.eval()
    if device is not None:
        gm = gm.to(check_device(device))
    return gm


def runtime_inputs(graph: Graph) -> list[Value]:
    """The graph inputs a caller must feed (IR v3 inputs that have an initializer excluded)."""
    return [v for v in graph.inputs if v.const is None]


def prepare_inputs(
    graph: Graph,
    inputs: Sequence[Any] | Mapping[str, Any],
    device: str | torch.device | None = None,
) -> list[torch.Tensor]:
    """Converts inputs, in order or by name, to the torch tensors the module takes.

    Values that are not tensors are checked against the graph's declared dtype and shape
    first (``neffkit.execution.bind`` has checked them already for the library's callers;
    this keeps the backend's own ``run`` safe to call directly).
    """
    wanted = runtime_inputs(graph)
    names = [v.name for v in wanted]
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        extra = [n for n in inputs if n not in names]
        if missing or extra:
            raise BackendError(
                f"inputs do not match the model: missing {missing}, unknown {extra}; "
                f"the model takes {names}"
            )
        values = [inputs[n] for n in names]
    else:
        values = list(inputs)
        if len(values) != len(wanted):
            raise BackendError(f"the model takes {len(wanted)} inputs {names}, got {len(values)}")
    out: list[Any] = []
    for v, x in zip(wanted, values):
        if x is None or isinstance(x, list | tuple):  # an empty optional, a sequence
            out.append(_to_torch_value(x, device))
            continue
        if isinstance(x, torch.Tensor):
            t = x
        else:
            arr = np.asarray(x)
            _check_input(v, arr)
            t = to_torch(arr)
        out.append(t.to(device) if device is not None else t)
    return out


def _to_torch_value(x: Any, device: str | torch.device | None) -> Any:
    """A sequence (list of arrays) or None as the module takes it: a list of tensors, None."""
    if x is None:
        return None
    out = []
    for e in x:
        t = e if isinstance(e, torch.Tensor) else to_torch(np.asarray(e))
        out.append(t.to(device) if device is not None else t)
    return out


def _to_numpy_value(x: Any, elem_type: int | None) -> Any:
    """A module output as numpy: arrays, lists of arrays for sequences, None when empty."""
    if x is None:
        return None
    if isinstance(x, list | tuple):
        return [to_numpy(e) for e in x]
    return from_carrier(to_numpy(x), elem_type)


def _check_input(v: Value, arr: np.ndarray) -> None:
    t = v.type
    if not isinstance(t, TensorType):
        return
    want = np_dtype(t.dtype) if t.dtype else None
    if want is not None and arr.dtype != want:
        raise BackendError(f"input '{v.name}' expects {dtype_name(t.dtype)}, got numpy {arr.dtype}")
    if t.shape is not None:
        ok = len(t.shape) == arr.ndim and all(
            not isinstance(d, int) or d == s for d, s in zip(t.shape, arr.shape)
        )
        if not ok:
            dims = ["?" if not isinstance(d, int) else d for d in t.shape]
            raise BackendError(f"input '{v.name}' expects shape {dims}, got {list(arr.shape)}")


def run(
    graph: Graph,
    inputs: Sequence[Any] | Mapping[str, Any],
    *,
    device: str | torch.device | None = None,
    module: torch.nn.Module | None = None,
) -> list[np.ndarray]:
    """Runs ``graph`` through the torch backend and returns numpy outputs in order.

    Outputs of types torch lacks (int4, float4e2m1, ...) come back as ml_dtypes arrays of the
    graph's declared output type, converted from the carrier dtype the module computes them in.
    """
    m = module if module is not None else compile(graph, device)
    args = prepare_inputs(graph, inputs, device)
    # torch warns about its own internals (complex -> real casts, TF32, ...): those are not
    # for the caller, whose answer is the outputs or a BackendError.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # An output may be a broadcast view (Expand): materialize it, as any runtime
            # would, so a huge one fails here and not later in whoever writes it out.
            outs = [o.contiguous() if isinstance(o, torch.Tensor) else o for o in m(*args)]
        except BackendError:
            raise
        except Exception as e:  # noqa: BLE001 - report any torch failure as a backend error
            text = " ".join(str(e).split()) or type(e).__name__
            raise BackendError(f"torch backend failed while running the model: {text}") from e
    results = [_to_numpy_value(o, v.dtype) for o, v in zip(outs, graph.outputs)]
    for arr, v in zip(results, graph.outputs):
        _check_output(arr, v)
    return results


def _check_output(arr: Any, v: Value) -> None:
    """Refuses an output whose dtype is not the declared one (an invalid model, or a bug)."""
    want = v.dtype
    if not want or not isinstance(arr, np.ndarray):
        return
    try:
        expected = np_dtype(want)
    except Exception:  # noqa: BLE001 - types numpy cannot represent
        return
    if arr.dtype != expected:
        raise BackendError(
            f"output '{v.name}' is declared {dtype_name(want)} but the model computes "
            f"{arr.dtype.name}; the model's types are inconsistent"
        )


def to_torchscript(
    graph: Graph,
    example_inputs: Sequence[Any] | Mapping[str, Any] | None = None,
) -> tuple[torch.jit.ScriptModule, str]:
    """Converts ``graph`` to TorchScript: scripted when possible, else traced.

    Scripting keeps control flow (Loop, If) data-dependent; tracing, the fallback, bakes in the
    path the example inputs take, so it needs ``example_inputs``.

    A model whose Loop ``split`` marked as a host loop becomes a scripted host loop calling the
    traced encoder and step (``host_loop``); that needs ``example_inputs`` too.

    Returns:
        The TorchScript module and how it was made (``"script"``, ``"trace"``, or
        ``"host-loop: ..."`` saying which units were traced).
    """
    if marked_loops(graph):
        if example_inputs is None:
            raise BackendError("a host-loop model needs example inputs to trace its units with")
        module, report = to_host_loop(graph, prepare_inputs(graph, example_inputs))
        return module, f"host-loop: {report}"
    gm = compile(graph)
    try:
        return torch.jit.script(gm), "script"
    except Exception as script_error:  # noqa: BLE001 - any scripting failure falls back
        if example_inputs is None:
            raise BackendError(
                f"the module could not be scripted ({first_line(script_error)}) and "
                "no example inputs were given to trace it with"
            ) from script_error
        args = tuple(prepare_inputs(graph, example_inputs))
        with torch.no_grad():
            try:
                return torch.jit.trace(gm, args, check_trace=False), "trace"
            except Exception as trace_error:  # noqa: BLE001 - the model fails on the inputs
                text = " ".join(str(trace_error).split()) or type(trace_error).__name__
                raise BackendError(
                    f"the module could not be scripted ({first_line(script_error)}) "
                    f"nor traced on the example inputs: {text}"
                ) from trace_error
