"""Output types of an ``aten`` node whose TorchScript types say nothing (a scripted module lifted
without example inputs): the operator is run once on meta tensors (no data, no computation) of
its inputs' IR types, so a ``dtype=`` argument or an integer result is recorded right instead of
being guessed from the first input."""

from __future__ import annotations

from typing import Any

from onnx import TensorProto

from neffkit.frontends.torchscript._base import SCALAR_TYPES, torch_onnx_dtype
from neffkit.ir import TensorType, Value

#: aten ops whose result is a quantized tensor (the meta run cannot tell: no quantized meta)
_QUANTIZING = ("quantize_per_tensor", "quantize_per_channel", "quantize_per_tensor_dynamic")
_COMPLEX = (TensorProto.COMPLEX64, TensorProto.COMPLEX128)


def meta_output_types(schema: str, args: dict[str, Any], count: int) -> list[TensorType] | None:
    """The output types of the overload ``schema`` on ``args`` (lifted values by schema name):
    dtypes, and ranks when every input's rank is known (dims unknown); None when an argument
    is not known well enough or the call fails."""
    import torch  # noqa: PLC0415

    try:
        parsed = torch._C.parse_schema(schema)
        packet = getattr(torch.ops.aten, parsed.name.partition("::")[2])
        op = getattr(packet, parsed.overload_name or "default")
    except (RuntimeError, AttributeError):
        return None
    out = None
    for guess in _RANK_GUESSES:
        ranked = [True]
        call = _call_args(parsed, args, ranked, guess)
        if call is None:
            return None
        try:
            out = op(*call[0], **call[1])
            break
        except Exception:  # noqa: BLE001 - any failure means "not known" (or a wrong guess)
            if ranked[0]:
                return None
    if out is None:
        return None
    outs = list(out) if isinstance(out, tuple | list) else [out]
    if len(outs) != count or not all(isinstance(t, torch.Tensor) for t in outs):
        return None
    return [TensorType(torch_onnx_dtype(t.dtype), [None] * t.dim() if ranked[0] else None)
            for t in outs]  # fmt: skip


_UNKNOWN = object()
#: ranks tried for an input whose rank is unknown (only the dtypes are kept then)
_RANK_GUESSES = (4, 2, 1, 3)


def _call_args(parsed: Any, args: dict[str, Any], ranked: list[bool],
               guess: int) -> tuple[list[Any], dict[str, Any]] | None:  # fmt: skip
    """The call's positional and keyword arguments, as meta tensors and constants."""
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for a in parsed.arguments:
        if a.name not in args:
            if not a.has_default_value():
                return None
            continue
        value = _meta(args[a.name], ranked, guess)
        if value is _UNKNOWN:
            return None
        if a.kwarg_only:
            keywords[a.name] = value
        else:
            positional.append(value)
    return positional, keywords


def _meta(item: Any, ranked: list[bool], guess: int) -> Any:
    """A lifted argument as a meta tensor (a tensor value) or as itself (a constant); a tensor
    of unknown rank gets rank ``guess`` and clears ``ranked[0]``."""
    import torch  # noqa: PLC0415

    if isinstance(item, Value):
        t = item.type
        if not isinstance(t, TensorType) or t.dtype is None:
            return _UNKNOWN
        dtype = _torch_dtypes().get(t.dtype)
        if dtype is None:
            return _UNKNOWN
        if t.rank is None:
            ranked[0] = False
            return torch.empty([1] * guess, dtype=dtype, device="meta")
        dims = [d if isinstance(d, int) else 1 for d in t.shape or []]
        return torch.empty(dims, dtype=dtype, device="meta")
    if isinstance(item, torch.Tensor):
        return torch.empty(item.shape, dtype=item.dtype, device="meta")
    if isinstance(item, list | tuple):
        parts = [_meta(x, ranked, guess) for x in item]
        return _UNKNOWN if any(p is _UNKNOWN for p in parts) else list(parts)
    return item


def _torch_dtypes() -> dict[int, Any]:
    """ONNX element type -> torch dtype, for the dtypes the lifter takes."""
    import torch  # noqa: PLC0415

    names = [n for n in SCALAR_TYPES if not n.startswith(("complex", "q"))]
    return {torch_onnx_dtype(getattr(torch, n)): getattr(torch, n) for n in names}


def refused_dtype(op: str, inputs: list[Value], ts_outputs: list[Any]) -> str | None:
    """Why an ``aten`` node cannot be kept, when a tensor it reads or makes is complex or
    quantized (neffkit's IR has no such values): the reason, else None.

    ``ts_outputs`` are the TorchScript output types (``torch._C`` types).
    """
    import torch  # noqa: PLC0415

    if op in _QUANTIZING:
        return "makes a quantized tensor; dtype not supported"
    for v in inputs:
        if isinstance(v.type, TensorType) and v.type.dtype in _COMPLEX:
            return "reads a complex tensor; dtype not supported"
    for t in ts_outputs:
        if isinstance(t, torch._C.TensorType) and t.scalarType() is not None:
            dtype = t.dtype()
            if dtype.is_complex or str(dtype).startswith("torch.q"):  # qint8, quint8, ...
                return f"makes a {dtype} tensor; dtype not supported"
    return None
