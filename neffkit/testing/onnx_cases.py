"""The ONNX package's own test material, as plain cases: node tests and shipped models.

Used by the round-trip and conformance tests and by the conformance benchmark, so both read
the same cases the same way.
"""

from __future__ import annotations

import functools
import glob
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import ModelProto, TensorProto


@dataclass
class Case:
    """One model with its recorded inputs and expected outputs and the case's tolerances."""

    name: str
    model: ModelProto | None
    data_sets: list[tuple[list[np.ndarray], list[np.ndarray]]] = field(default_factory=list)
    rtol: float = 1e-3
    atol: float = 1e-7
    path: str | None = None
    op_types: tuple[str, ...] = ()

    def load_model(self) -> ModelProto:
        """The model, read from ``path`` when it was not kept in memory."""
        if self.model is not None:
            return self.model
        assert self.path is not None
        return onnx.load(self.path, load_external_data=False)


def data_dir() -> str:
    """The folder of the onnx package's shipped backend-test models."""
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


@functools.cache
def node_cases() -> tuple[Case, ...]:
    """Every node test case of ``onnx.backend.test.case.node`` (generated in memory)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        raw = collect_testcases()
    out = []
    for c in raw:
        ops = tuple(sorted({n.op_type for n in c.model.graph.node}))
        sets = [([_as_array(x) for x in i], [_as_array(x) for x in o]) for i, o in c.data_sets]
        out.append(Case(c.name, c.model, sets, c.rtol, c.atol, op_types=ops))
    return tuple(out)


def is_plain_tensor_case(case: Case) -> bool:
    """True when every graph input and output is a tensor (no sequences, optionals, maps)."""
    g = case.load_model().graph
    for vi in list(g.input) + list(g.output):
        if vi.type.WhichOneof("value") != "tensor_type":
            return False
    for ins, outs in case.data_sets:
        for a in list(ins) + list(outs):
            if not isinstance(a, np.ndarray):
                return False
    return True


def model_dir_cases(
    groups: tuple[str, ...] = ("simple", "pytorch-converted", "pytorch-operator"),
) -> list[Case]:
    """Shipped model folders (``model.onnx`` plus ``test_data_set_*``), read from disk."""
    cases = []
    for group in groups:
        for folder in sorted(glob.glob(os.path.join(data_dir(), group, "*"))):
            path = os.path.join(folder, "model.onnx")
            if not os.path.exists(path):
                continue
            g = onnx.load(path, load_external_data=False).graph
            inits = {t.name for t in g.initializer}
            in_types = [vi.type for vi in g.input if vi.name not in inits]
            out_types = [vi.type for vi in g.output]
            sets = []
            for ds in sorted(glob.glob(os.path.join(folder, "test_data_set_*"))):
                in_paths = sorted(glob.glob(os.path.join(ds, "input_*.pb")))
                out_paths = sorted(glob.glob(os.path.join(ds, "output_*.pb")))
                ins = [_read_pb(p, _type_at(in_types, i)) for i, p in enumerate(in_paths)]
                outs = [_read_pb(p, _type_at(out_types, i)) for i, p in enumerate(out_paths)]
                sets.append((ins, outs))
            name = f"{group}/{os.path.basename(folder)}"
            cases.append(Case(name, None, sets, path=path))
    return cases


def light_cases() -> list[Case]:
    """The ``light_*`` models (IR v3, weights built at run time) with their expected output.

    Their inputs are not shipped: as in the ONNX backend test runner, each graph input that
    is not an initializer gets ``arange(n).reshape(shape) / n`` (float32), which is what the
    shipped outputs were computed from.
    """
    cases = []
    for path in sorted(glob.glob(os.path.join(data_dir(), "light", "light_*.onnx"))):
        base = path[: -len(".onnx")]
        outs = [_read_pb(p) for p in sorted(glob.glob(base + "_output_*.pb"))]
        model = onnx.load(path)
        inits = {t.name for t in model.graph.initializer}
        ins = []
        for vi in model.graph.input:
            if vi.name in inits:
                continue
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim
            )
            n = int(np.prod(dims))
            ins.append((np.arange(n).reshape(dims) / n).astype(np.float32))
        name = "light/" + os.path.basename(base)
        cases.append(Case(name, model, [(ins, outs)], rtol=1e-3, atol=1e-7, path=path))
    return cases


def all_model_paths() -> list[str]:
    """Every ``.onnx`` file shipped under the backend-test data folder."""
    return sorted(glob.glob(os.path.join(data_dir(), "**", "*.onnx"), recursive=True))


def _as_array(x: object) -> object:
    """Tensors as numpy arrays: 0-d numpy scalars and TensorProtos are tensors too; the
    elements of a sequence likewise."""
    if isinstance(x, list):
        return [_as_array(e) for e in x]
    if isinstance(x, np.generic):
        return np.asarray(x)
    if isinstance(x, TensorProto):
        return onnx.numpy_helper.to_array(x)
    return x


def _type_at(types: list[onnx.TypeProto], i: int) -> onnx.TypeProto | None:
    return types[i] if i < len(types) else None


def _read_pb(path: str, tp: onnx.TypeProto | None = None) -> object:
    """A recorded value: a tensor, or a sequence / optional when ``tp`` declares one."""
    with open(path, "rb") as f:
        data = f.read()
    kind = tp.WhichOneof("value") if tp is not None else "tensor_type"
    if kind == "sequence_type":
        seq = onnx.SequenceProto()
        seq.ParseFromString(data)
        return onnx.numpy_helper.to_list(seq)
    if kind == "optional_type":
        opt = onnx.OptionalProto()
        opt.ParseFromString(data)
        return onnx.numpy_helper.to_optional(opt)
    t = TensorProto()
    t.ParseFromString(data)
    return onnx.numpy_helper.to_array(t)


#: Name parts of the cases that use sequences or optionals (see :func:`sequence_cases`).
SEQUENCE_CASE_KEYS = ("sequence", "seq", "split_to_sequence", "concat_from_sequence", "optional")


def sequence_cases() -> list[Case]:
    """Node cases and ``simple`` model folders whose name names sequences or optionals.

    Their recorded values are numpy arrays, lists of arrays (sequences) or None (an empty
    optional).
    """
    out = []
    for c in node_cases():
        if any(k in c.name for k in SEQUENCE_CASE_KEYS):
            out.append(c)
    for c in model_dir_cases(("simple",)):
        if any(k in c.name for k in SEQUENCE_CASE_KEYS):
            out.append(c)
    return out
