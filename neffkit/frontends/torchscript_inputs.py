"""The graph input types of a TorchScript module: from the module's own types (a trace records
dtype and shape) or stated by the caller (``--input-shape x=1x3x224x224:float32``).

A scripted module's tensor arguments carry no dtype or shape (nor does any ``torch.jit.save``
file's), and lifting needs them: the dtype decides casts and which ONNX op an aten op becomes,
and static sizes let shape arithmetic fold and random inputs be made. Such an input must be
stated; when it is not, one error names every such input and the option that states it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from neffkit.errors import FrontendError, first_line

__all__ = ["InputSpec", "example_inputs", "parse_input_shapes"]

_SPEC = re.compile(r"^([^=\s]+)=(\d+(?:x\d+)*|scalar)(?::(\w+))?$")
#: how the error says a missing input should be given
_OPTION = "--input-shape"


@dataclass(frozen=True)
class InputSpec:
    """A graph input's static shape and, when given, its dtype name (``float32``); ``stated``
    False for one read from an inputs file, whose other arrays the module need not take."""

    shape: tuple[int, ...]
    dtype: str | None = None
    stated: bool = True


def parse_input_shapes(texts: Sequence[str]) -> dict[str, InputSpec]:
    """``["x=1x3x224x224", "n=scalar:int64", "ids=1x16:int64"]`` -> specs by input name.

    Raises:
        FrontendError: bad syntax, an unknown or unsupported dtype, or a name given twice.
    """
    specs: dict[str, InputSpec] = {}
    for text in texts:
        m = _SPEC.match(text.strip())
        if m is None:
            raise FrontendError(
                f"{_OPTION} {text!r}: expected NAME=DIMS[:DTYPE], e.g. x=1x3x224x224 or "
                "ids=1x16:int64 (DIMS 'scalar' for a 0-d tensor)"
            )
        name, dims, dtype = m.groups()
        if name in specs:
            raise FrontendError(f"{_OPTION}: input '{name}' is given twice")
        shape = () if dims == "scalar" else tuple(int(d) for d in dims.split("x"))
        if dtype is not None:
            _torch_dtype(dtype, name)
        specs[name] = InputSpec(shape, dtype)
    return specs


def example_inputs(
    module: Any, specs: Mapping[str, InputSpec] | None, source: str | os.PathLike | None = None
) -> tuple[Any, ...]:
    """Example inputs for ``load_torchscript``: zeros of each tensor argument's stated or traced
    dtype and shape, a placeholder number for an int/float/bool argument, None for an omitted
    optional one.

    Raises:
        FrontendError: a stated name the module does not take, a stated non-tensor argument,
            or (one error naming them all) tensor arguments whose type is neither stated
            nor recorded.
    """
    import torch  # noqa: PLC0415

    where = f"{os.fspath(source)}: " if source is not None else ""
    specs = dict(specs or {})
    params = list(module.graph.inputs())[1:]
    names = [p.debugName().split(".")[0] for p in params]
    unknown = sorted(n for n, spec in specs.items() if n not in names and spec.stated)
    if unknown:
        raise FrontendError(
            f"{where}{_OPTION} names {', '.join(repr(n) for n in unknown)}, but the module's "
            f"inputs are {', '.join(repr(n) for n in names) or 'none'}"
        )
    defaults = _defaults(module)
    examples: list[Any] = []
    missing: list[str] = []
    for i, (name, p) in enumerate(zip(names, params, strict=True)):
        t = p.type()
        is_tensor = isinstance(t, torch._C.TensorType) or (
            isinstance(t, torch._C.OptionalType)
            and isinstance(t.getElementType(), torch._C.TensorType)
        )
        if name in specs:
            if not is_tensor:
                raise FrontendError(f"{where}input '{name}' is a {t}, not a tensor: {_OPTION} "
                                    "states tensor inputs")  # fmt: skip
            spec = specs[name]
            dtype = _torch_dtype(spec.dtype, name) if spec.dtype else _traced_dtype(t)
            examples.append(_zeros(spec.shape, dtype or torch.float32, name, where))
        elif isinstance(t, torch._C.TensorType):
            sizes = t.sizes() if t.scalarType() is not None else None
            if sizes is None or any(s is None for s in sizes):
                missing.append(name)
                examples.append(None)
            else:
                examples.append(torch.zeros(sizes, dtype=t.dtype()))
        elif isinstance(t, torch._C.OptionalType) and i in defaults:
            examples.append(None)  # an omitted optional argument takes its default
        elif isinstance(t, torch._C.BoolType):
            examples.append(False)
        elif isinstance(t, torch._C.IntType):
            examples.append(0)
        elif isinstance(t, torch._C.FloatType):
            examples.append(0.0)
        else:
            examples.append(None)  # the lifter words the error for what it cannot take
    if missing:
        many = len(missing) > 1
        listed = ", ".join(f"'{n}'" for n in missing)
        raise FrontendError(
            f"{where}input{'s' if many else ''} {listed} of the TorchScript module "
            f"{'have' if many else 'has'} no recorded dtype and shape (a scripted module "
            f"has none, nor has a TorchScript file); state {'them' if many else 'it'} with "
            f"{_OPTION} NAME=DIMS[:DTYPE], e.g. {_OPTION} {missing[0]}=1x3x224x224:float32"
        )
    return tuple(examples)


#: the dtypes an input may be stated as: those the lifter takes
_DTYPES = frozenset(
    {"uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bool",
     "bfloat16", "float", "double", "half", "long", "int", "short"}
)  # fmt: skip
#: the largest example input made (elements): a trace runs on it once
_MAX_ELEMENTS = 1 << 28


def _zeros(shape: tuple[int, ...], dtype: Any, name: str, where: str) -> Any:
    """An all-zero example input of a stated shape, refused when absurdly large."""
    import torch  # noqa: PLC0415

    count = 1
    for d in shape:
        count *= d
    if count > _MAX_ELEMENTS:
        raise FrontendError(
            f"{where}{_OPTION}: input '{name}' of shape {'x'.join(map(str, shape))} has "
            f"{count} elements; the example input is made once to trace the module "
            f"(at most {_MAX_ELEMENTS})"
        )
    try:
        return torch.zeros(shape, dtype=dtype)
    except RuntimeError as e:  # out of memory
        raise FrontendError(f"{where}{_OPTION}: input '{name}': {first_line(e)}") from e


def _defaults(module: Any) -> dict[int, Any]:
    try:
        arguments = module.forward.schema.arguments[1:]
    except (AttributeError, RuntimeError):
        return {}
    return {i: a.default_value for i, a in enumerate(arguments) if a.has_default_value()}


def _traced_dtype(t: Any) -> Any:
    import torch  # noqa: PLC0415

    if isinstance(t, torch._C.TensorType) and t.scalarType() is not None:
        return t.dtype()
    return None


def _torch_dtype(name: str, input_name: str) -> Any:
    import torch  # noqa: PLC0415

    dtype = getattr(torch, name, None)
    if name not in _DTYPES or not isinstance(dtype, torch.dtype):
        raise FrontendError(
            f"{_OPTION}: input '{input_name}': unknown or unsupported dtype '{name}' (use a "
            "torch dtype name: float32, float16, bfloat16, int64, int32, bool, ...)"
        )
    return dtype
