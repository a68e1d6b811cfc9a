"""The top-level Python API: run a model on a backend, and make inputs for it.

A *model* is anything neffkit can read: a path to an ``.onnx`` file, an ``onnx.ModelProto``
or a ``neffkit.ir.Graph``. Inputs are a list (in the order of the model's runtime inputs) or
a ``name -> array`` dict::

    import neffkit
    from neffkit.api import random_inputs

    graph = neffkit.load("model.onnx")
    outputs = neffkit.run(graph, random_inputs(graph, seed=0), backend="torch")
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from neffkit.dims import check_dims, input_dims, parse_dims, runtime_inputs, symbolic_dims
from neffkit.errors import BackendError, NeffkitError, first_line
from neffkit.ir.core import Graph, Node, Value
from neffkit.ir.tensor import dtype_name, np_dtype
from neffkit.ir.types import OpaqueType, TensorType, type_from_proto

__all__ = [
    "BACKENDS",
    "Runner",
    "as_graph",
    "as_model_proto",
    "check_inputs",
    "describe_model",
    "input_dims",
    "load_npz",
    "npz_inputs",
    "parse_dims",
    "random_inputs",
    "symbolic_dims",
    "run",
    "runtime_inputs",
]

Model = str | os.PathLike | onnx.ModelProto | Graph
Inputs = Sequence[Any] | Mapping[str, Any]

#: Backend names ``run`` accepts (``"ort"`` is short for ``"onnxruntime"``).
BACKENDS = ("torch", "onnxruntime")
_ALIASES = {"ort": "onnxruntime", "onnxruntime": "onnxruntime", "torch": "torch"}

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


# -- models -----------------------------------------------------------------------------------


def as_graph(model: Model, *, check: bool = False) -> Graph:
    """The ``Graph`` of a model given as a path, ``ModelProto`` or ``Graph`` (returned as is).

    ``check`` refuses files and protos the ONNX checker refuses (a ``Graph`` is taken as is).
    """
    if isinstance(model, Graph):
        return model
    from neffkit.frontends.onnx import load

    if isinstance(model, onnx.ModelProto | str | os.PathLike | bytes):
        return load(model, check=check)
    raise NeffkitError(
        f"expected a model path, onnx.ModelProto or neffkit Graph, got {type(model).__name__}"
    )


def as_model_proto(model: Model) -> onnx.ModelProto:
    """The ``ModelProto`` of a model (a path is read through neffkit, so errors are clear)."""
    if isinstance(model, onnx.ModelProto):
        return model
    from neffkit.backends.onnx import to_onnx

    return to_onnx(as_graph(model))


def describe_model(model: Any) -> str:
    """A short label for a model in messages and reports (its path when it has one)."""
    if isinstance(model, str | os.PathLike):
        return os.fspath(model)
    if isinstance(model, Graph):
        return model.meta.source_path or f"<Graph {model.name}>"
    if isinstance(model, onnx.ModelProto):
        return f"<ModelProto {model.graph.name}>"
    return f"<{type(model).__name__}>"


@contextlib.contextmanager
def mentioning(where: str | os.PathLike | None) -> Iterator[None]:
    """Re-raises a ``NeffkitError`` with ``where`` (a file) in front unless it starts with it."""
    try:
        yield
    except NeffkitError as e:
        where_s = None if where is None else os.fspath(where)
        msg = str(e)
        if where_s and not msg.startswith(where_s):
            e.args = (f"{where_s}: {msg}",)
        raise


# -- running ----------------------------------------------------------------------------------


def backend_name(backend: str) -> str:
    """The canonical backend name, or a ``NeffkitError`` listing the known ones."""
    name = _ALIASES.get(backend) if isinstance(backend, str) else None
    if name is None:
        raise NeffkitError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    return name


class Runner:
    """A model prepared once for a backend (lowered or loaded), then run on many input sets.

    Args:
        model: a path, ``ModelProto`` or ``Graph``.
        backend: ``"torch"`` or ``"onnxruntime"``.
        device: torch device for the torch backend (``"cuda"``); onnxruntime runs on the CPU.
        check: refuse models the ONNX checker or onnxruntime refuse as invalid (default).
        graph: ``model`` already loaded (``neffkit.load(model, check=...)``), for a caller that
            needed the graph before preparing it; ``check`` is then the caller's business.
    """

    def __init__(
        self,
        model: Model,
        backend: str = "torch",
        *,
        device: Any = None,
        check: bool = True,
        graph: Graph | None = None,
    ) -> None:
        self.backend = backend_name(backend)
        self.source = describe_model(model)
        self.device = device
        path = os.fspath(model) if isinstance(model, str | os.PathLike) else None
        # Errors name the file the model came from, if any.
        self._where = path or (model.meta.source_path if isinstance(model, Graph) else None)
        with mentioning(self._where):
            self.graph = graph if graph is not None else as_graph(model, check=check)
            self.input_names = [v.name for v in runtime_inputs(self.graph)]
            self.output_names = [v.name for v in self.graph.outputs]
            if self.backend == "torch":
                from neffkit.backends import torch as torch_backend

                self.device = device = torch_backend.check_device(device)
                self._module = torch_backend.compile(self.graph, device)
            else:
                if device is not None and str(device) != "cpu":
                    raise NeffkitError(
                        f"the onnxruntime backend runs on the CPU only, not on '{device}'"
                    )
                from neffkit.backends import onnxruntime as ort_backend

                src = model if isinstance(model, onnx.ModelProto) else self.graph
                # A self-contained file is handed to onnxruntime as is. One with external data
                # goes through the graph (saved to a temporary folder), so onnxruntime reads
                # only bytes neffkit read through its checked path, never an outside file.
                direct = path is not None and not self.graph.meta.external_data
                self._session = ort_backend.session(path if direct else src)

    def __call__(self, inputs: Inputs) -> list[np.ndarray]:
        """Runs the model on one input set and returns its outputs in order."""
        with mentioning(self._where):
            feeds = bind(self.graph, inputs)
            if self.backend == "torch":
                from neffkit.backends import torch as torch_backend

                return torch_backend.run(self.graph, feeds, device=self.device, module=self._module)
            try:
                # errors come back as exceptions; onnxruntime's own log of them is noise
                outs = self._session.run(None, feeds, _quiet_run_options())
            except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
                first = first_line(e)
                raise BackendError(f"onnxruntime failed to run the model: {first}") from e
            return [o if isinstance(o, list) or o is None else np.asarray(o) for o in outs]


def _quiet_run_options() -> Any:
    import onnxruntime as ort

    opts = ort.RunOptions()
    opts.log_severity_level = 4
    return opts


def run(
    model: Model,
    inputs: Inputs,
    backend: str = "torch",
    *,
    device: Any = None,
    check: bool = True,
) -> list[np.ndarray]:
    """Runs a model once and returns its outputs as numpy arrays, in the graph's output order.

    Args:
        model: a path, ``onnx.ModelProto`` or ``neffkit.ir.Graph``.
        inputs: arrays in the order of the model's runtime inputs, or a ``name -> array`` dict.
            They must have the declared dtype and a shape that fits the declared one.
        backend: ``"torch"`` (neffkit's own lowering) or ``"onnxruntime"`` (the reference).
        device: torch device (``"cuda"``) for the torch backend.
        check: refuse a model the ONNX checker or onnxruntime refuse as invalid; False runs it
            anyway (a ``Graph`` is never checked).

    Raises:
        NeffkitError: the model cannot be read, is invalid or cannot be lowered, or the inputs
            do not fit it.
    """
    return Runner(model, backend, device=device, check=check)(inputs)


# -- inputs -----------------------------------------------------------------------------------


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
            feeds[n] = _as_array(x)
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


def _as_array(x: Any) -> Any:
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
    graph: Graph | Model,
    seed: int = 0,
    *,
    dims: Mapping[str, int] | None = None,
    default_size: int = 1,
) -> dict[str, Any]:
    """Random inputs of the declared dtypes and shapes, the same for the same seed.

    - floating types: standard normal values, cast to the input's type;
    - integers: uniform in [0, 10); an input whose name contains ``mask`` gets ones, and one
      used as ``Gather*`` indices stays below the gathered axis's size when that is known;
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
    out: dict[str, np.ndarray] = {}
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
                out[v.name] = _random_array(v, t.dtype, shape, rng)
            else:
                out[v.name] = [_random_array(v, t.dtype, shape, rng) for _ in range(count)]
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


def _random_array(v: Value, elem: int, shape: tuple[int, ...], rng: np.random.Generator) -> Any:
    if elem in FLOAT_TYPES:
        return rng.standard_normal(shape).astype(np_dtype(elem))
    if elem in COMPLEX_TYPES:
        real = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        return real.astype(np_dtype(elem))
    if elem == TensorProto.BOOL:
        return rng.random(shape) < 0.5
    if elem in INT_TYPES:
        dt = np_dtype(elem)
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


# -- input files ------------------------------------------------------------------------------


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
