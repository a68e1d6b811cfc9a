"""Inputs for running a model: binding given ones to its runtime inputs, making random ones,
and reading them from ``.npz`` files.

The one place inputs are matched, converted and checked: every backend receives feeds this
module bound (a ``name -> array`` dict in the order of the graph's runtime inputs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from onnx import TensorProto

from neffkit.dims import check_dims, runtime_inputs
from neffkit.errors import BackendError, NeffkitError
from neffkit.execution.model import Model, as_graph, mentioning
from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import dtype_name, np_dtype
from neffkit.ir.types import OpaqueType, TensorType, type_from_proto

__all__ = [
    "Inputs",
    "as_array",
    "bind",
    "check_inputs",
    "load_npz",
    "npz_inputs",
    "random_inputs",
    "type_str",
]

Inputs = Sequence[Any] | Mapping[str, Any]

FLOAT_TYPES = frozenset(
    {
        TensorProto.FLOAT,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
        TensorProto.DOUBLE,
        TensorProto.FLOAT8E4M3FN,
        TensorProto.FLOAT8E4M3FNUZ,
        TensorProto.FLOAT8E5M2,
        TensorProto.FLOAT8E5M2FNUZ,
    }
    | {getattr(TensorProto, n) for n in ("FLOAT4E2M1", "FLOAT8E8M0") if hasattr(TensorProto, n)}
)
INT_TYPES = frozenset(
    {
        TensorProto.INT8,
        TensorProto.INT16,
        TensorProto.INT32,
        TensorProto.INT64,
        TensorProto.UINT8,
        TensorProto.UINT16,
        TensorProto.UINT32,
        TensorProto.UINT64,
        TensorProto.INT4,
        TensorProto.UINT4,
    }
    | {getattr(TensorProto, n) for n in ("INT2", "UINT2") if hasattr(TensorProto, n)}
)
COMPLEX_TYPES = frozenset({TensorProto.COMPLEX64, TensorProto.COMPLEX128})

# Ops whose listed inputs are indices into another input's axis: (index input, data input).
_INDEX_INPUTS = {"Gather": (1, 0), "GatherElements": (1, 0), "GatherND": (1, 0)}


def bind(graph: Graph, inputs: Inputs) -> dict[str, Any]:
    """Matches a list or dict of inputs to the graph's runtime inputs and checks each one."""
    wanted = runtime_inputs(graph)
    names = [v.name for v in wanted]
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        unknown = [n for n in inputs if n not in names]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown {', '.join(map(str, unknown))}")
            raise BackendError(
                f"inputs do not match the model ({'; '.join(parts)}); it takes {names}"
            )
        values = [inputs[n] for n in names]
    elif isinstance(inputs, str | bytes | np.ndarray) or not _iterable(inputs):
        raise BackendError(
            f"inputs must be a list of arrays or a name -> array dict, got {type(inputs).__name__}"
        )
    else:
        values = list(inputs)
        if len(values) != len(names):
            raise BackendError(f"the model takes {len(names)} inputs {names}, got {len(values)}")
    feeds = {}
    for n, x in zip(names, values):
        try:
            feeds[n] = as_array(x)
        except (ValueError, TypeError, OverflowError) as e:
            raise BackendError(f"input '{n}' is not an array: {e}") from e
    check_inputs(graph, feeds)
    return feeds


def _iterable(x: Any) -> bool:
    try:
        iter(x)
    except TypeError:
        return False
    return True


def as_array(x: Any) -> Any:
    """A value as the backends take it: an array, a list of arrays (a sequence) or None."""
    if type(x).__module__.startswith("torch"):
        from neffkit.backends.torch.lowering import to_numpy

        return to_numpy(x)
    if x is None:
        return None  # an empty optional
    if isinstance(x, list | tuple) and all(isinstance(e, np.ndarray) for e in x):
        return list(x)  # a sequence (empty or not)
    return np.asarray(x)


def check_inputs(graph: Graph, feeds: Mapping[str, Any]) -> None:
    """Checks named inputs against the graph's declared dtypes and shapes.

    Raises:
        BackendError: naming the input, what the model declares and what was given.
    """
    by_name = {v.name: v for v in runtime_inputs(graph)}
    for name, arr in feeds.items():
        v = by_name.get(name)
        if v is None or not isinstance(v.type, TensorType):
            continue
        t = v.type
        if not isinstance(arr, np.ndarray):  # None (an empty optional) or a sequence
            got = "None" if arr is None else f"a sequence of {len(arr)}"
            raise BackendError(f"input '{name}' expects {type_str(t)}, got {got}")
        want = _np_dtype_or_none(t.dtype)
        if want is not None and arr.dtype != want:
            raise BackendError(
                f"input '{name}' expects {type_str(t)}, got {arr.dtype.name}{list(arr.shape)}"
            )
        if t.shape is not None:
            ok = len(t.shape) == arr.ndim and all(
                not isinstance(d, int) or d == s for d, s in zip(t.shape, arr.shape)
            )
            if not ok:
                raise BackendError(
                    f"input '{name}' expects shape {type_str(t)}, got {list(arr.shape)}"
                )


def _np_dtype_or_none(elem_type: int | None) -> np.dtype | None:
    if not elem_type:
        return None
    try:
        return np_dtype(elem_type)
    except Exception:  # noqa: BLE001 - types numpy cannot represent
        return None


def type_str(t: Any) -> str:
    """``float[batch,3]``-style spelling of a value type (``?`` for unknown dims)."""
    if isinstance(t, TensorType):
        if t.shape is None:
            return f"{dtype_name(t.dtype)}[...]"
        return f"{dtype_name(t.dtype)}[{','.join('?' if d is None else str(d) for d in t.shape)}]"
    if t is None:
        return "?"
    return repr(t)


def random_inputs(
    graph: Model,
    seed: int = 0,
    *,
    dims: Mapping[str, int] | None = None,
    default_size: int = 1,
    floats: tuple[float, float] | None = None,
    ints: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Random inputs of the declared dtypes and shapes, the same for the same seed.

    - floating types: standard normal values (uniform in ``floats`` when given), cast to the
      input's type;
    - integers: uniform in [0, 10); an input whose name contains ``mask`` gets ones, and one
      used as ``Gather*`` indices stays below the gathered axis's size when that is known.
      ``ints=(low, high)`` gives every integer input values in [low, high) instead (generated
      graphs want negative values too, and have no masks);
    - bool: random True / False;
    - a sequence of tensors: ``default_size`` tensors of its element type.

    A symbolic dimension takes its size from ``dims`` (``{"batch": 4}``), else
    ``default_size``; every unnamed unknown dimension takes ``default_size`` (one size for
    all, so inputs that must agree do). The same name gets the same size in every input.

    Raises:
        NeffkitError: a name in ``dims`` the inputs do not use, a non-positive size, or an
            input with no tensor type, an unknown element type or unknown rank.
    """
    g = as_graph(graph)
    rng = np.random.default_rng(seed)
    sizes = check_dims(g, dims or {})
    if default_size <= 0:
        raise NeffkitError(f"default_size must be positive, got {default_size}")
    ranges = (floats, ints)
    out: dict[str, Any] = {}
    for v in runtime_inputs(g):
        t = v.type
        elem = _sequence_element(t)
        count = 1
        if elem is not None:  # a sequence of default_size tensors of its element type
            t, count = elem, default_size
        if not isinstance(t, TensorType) or not t.dtype:
            what = "has no declared type" if t is None else f"has the type {type_str(t)}"
            raise NeffkitError(
                f"input '{v.name}' {what}, so random values cannot be made for it; "
                "give the inputs in a file"
            )
        if t.shape is None:
            raise NeffkitError(
                f"input '{v.name}' ({dtype_name(t.dtype)}) has an unknown rank, so random "
                "values cannot be made for it; give the inputs in a file"
            )
        shape = tuple(_dim_size(d, sizes, default_size) for d in t.shape)
        try:
            if elem is None:
                out[v.name] = _random_array(v, t.dtype, shape, rng, ranges)
            else:
                out[v.name] = [_random_array(v, t.dtype, shape, rng, ranges) for _ in range(count)]
        except (ValueError, MemoryError) as e:  # a declared shape too large to allocate
            raise NeffkitError(
                f"input '{v.name}': cannot make random values of shape {list(shape)} "
                f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                "give the inputs in a file"
            ) from e
    return out


def _sequence_element(t: Any) -> Any:
    """The element type of a sequence-of-tensors type, else None."""
    if not isinstance(t, OpaqueType) or t.proto.WhichOneof("value") != "sequence_type":
        return None
    inner = type_from_proto(t.proto.sequence_type.elem_type)
    return inner if isinstance(inner, TensorType) else None


def _dim_size(d: Any, dims: Mapping[str, int], default: int) -> int:
    if isinstance(d, int):
        return d
    if isinstance(d, str) and d in dims:
        return int(dims[d])
    return default


def _random_array(
    v: Value,
    elem: int,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    ranges: tuple[tuple[float, float] | None, tuple[int, int] | None],
) -> Any:
    floats, ints = ranges
    if elem in FLOAT_TYPES:
        if floats is not None:
            return rng.uniform(floats[0], floats[1], shape).astype(np_dtype(elem))
        return rng.standard_normal(shape).astype(np_dtype(elem))
    if elem in COMPLEX_TYPES:
        real = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        return real.astype(np_dtype(elem))
    if elem == TensorProto.BOOL:
        return rng.random(shape) < 0.5
    if elem in INT_TYPES:
        dt = np_dtype(elem)
        if ints is not None:
            return rng.integers(ints[0], ints[1], size=shape).astype(dt)
        if "mask" in v.name.lower():
            return np.ones(shape, dtype=dt)
        high = min(10, _index_bound(v) or 10)
        if elem in (TensorProto.INT4, TensorProto.UINT4):
            high = min(high, 8)
        return rng.integers(0, max(high, 1), size=shape).astype(dt)
    raise NeffkitError(
        f"input '{v.name}' is of type {dtype_name(elem)}, for which random values cannot be "
        "made; give the inputs in a file"
    )


def _index_bound(v: Value) -> int | None:
    """The smallest known size of an axis the value indexes into (Gather indices), if any."""
    bound: int | None = None
    for node, i in v.uses:
        size = _indexed_axis_size(node, i)
        if size is not None and size > 0:
            bound = size if bound is None else min(bound, size)
    return bound


def _indexed_axis_size(node: Node, i: int) -> int | None:
    slots = _INDEX_INPUTS.get(node.op_type) if node.domain == "" else None
    if slots is None or slots[0] != i:
        return None
    shape = _known_shape(node.inputs[slots[1]])
    if not shape:
        return None
    if node.op_type == "GatherND":
        sizes = [d for d in shape if isinstance(d, int)]
        return min(sizes) if sizes else None
    try:
        axis = int(node.attr("axis", 0))
    except (TypeError, ValueError, OverflowError):  # an attribute of the wrong type
        return None
    if -len(shape) <= axis < len(shape):
        d = shape[axis]
        return d if isinstance(d, int) else None
    return None


def _known_shape(v: Value | None) -> tuple[Any, ...] | None:
    """A value's shape from its type, initializer or Constant producer."""
    if v is None:
        return None
    if v.shape is not None:
        return v.shape
    p = v.producer
    if p is not None and p.op_type == "Constant" and p.domain == "":
        t = p.attr("value")
        return tuple(t.shape) if hasattr(t, "shape") else None
    return None


# -- input files -----------------------------------------------------------------------------


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads named arrays from an ``.npz`` (or one array from an ``.npy``) without unpickling.

    Raises:
        NeffkitError: the file is missing or not a numpy archive (naming the file).
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise NeffkitError(f"{p}: no such inputs file")
    if os.path.isdir(p):
        raise NeffkitError(f"{p}: is a directory, expected an .npz file")
    try:
        data = np.load(p, allow_pickle=False)  # never unpickle user files
        if isinstance(data, np.ndarray):  # a single .npy array
            return {"arr_0": data}
        with data:
            return {k: np.asarray(data[k]) for k in data.files}
    except (ValueError, OSError, EOFError) as e:
        if "pickle" in str(e):
            raise NeffkitError(
                f"{p}: not an .npz or .npy file of numeric arrays (numpy sees pickled data, "
                "which neffkit never loads)"
            ) from e
        raise NeffkitError(f"{p}: not a readable .npz file: {e}") from e
    except Exception as e:  # noqa: BLE001 - zipfile and numpy raise assorted types
        raise NeffkitError(f"{p}: not a readable .npz file ({type(e).__name__}: {e})") from e


def npz_inputs(graph: Any, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Inputs for ``graph`` from an ``.npz`` file, checked against the model's inputs.

    Arrays are matched by name; files written with positional ``numpy.savez(a, b)``
    (``arr_0``, ``arr_1`` ...) are matched by position.
    """
    data = load_npz(path)
    names = [v.name for v in runtime_inputs(graph)]
    if data and all(k.startswith("arr_") for k in data) and not set(data) & set(names):
        keys = sorted(data, key=lambda k: int(k[4:]) if k[4:].isdigit() else 0)
        if len(keys) != len(names):
            raise NeffkitError(
                f"{os.fspath(path)}: holds {len(keys)} unnamed arrays, the model takes "
                f"{len(names)} inputs {names}"
            )
        data = {n: data[k] for n, k in zip(names, keys)}
    with mentioning(path):
        bind(graph, data)
    return data
