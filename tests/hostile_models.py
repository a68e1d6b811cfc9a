"""Bad models built in code, one per kind of bad input, for ``test_hostile.py``.

Each ``Bad`` writes its file(s) into a folder and says which commands must refuse it (exit
status 2) and a fragment of the reason ``neffkit run`` gives. Commands not listed must
succeed (``inspect`` reads many models that cannot be run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h

ALL = ("inspect", "run", "verify", "convert", "optimize")
RUNS = ("run", "verify", "convert", "optimize")


@dataclass(frozen=True)
class Bad:
    """One bad model: how to write it, who must refuse it and what ``run`` says."""

    name: str
    write: Callable[[str], str]
    fails: tuple[str, ...]
    says: str
    feeds: dict[str, np.ndarray] = field(default_factory=dict)
    #: False where the library calls would need inputs that cannot be built (tested apart).
    library: bool = True


def vi(name: str, shape: list | None = (2,), elem: int = T.FLOAT) -> onnx.ValueInfoProto:
    return h.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def model(
    nodes: list, inputs: list, outputs: list, inits: list = (), opset: int = 17, ir: int = 8
) -> onnx.ModelProto:
    g = h.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def relu_model(**kw: int) -> onnx.ModelProto:
    """A valid one-node model (``y = Relu(x)``, float[2])."""
    return model([h.make_node("Relu", ["x"], ["y"], name="r")], [vi("x")], [vi("y")], **kw)


def _writer(build: Callable[[], onnx.ModelProto | bytes]) -> Callable[[str], str]:
    def write(folder: str) -> str:
        m = build()
        path = os.path.join(folder, "model.onnx")
        with open(path, "wb") as f:
            f.write(m if isinstance(m, bytes) else m.SerializeToString())
        return path

    return write


def _bad(name: str, fails: tuple[str, ...], says: str, **kw):
    def deco(build: Callable[[], onnx.ModelProto | bytes]) -> Callable:
        CASES.append(Bad(name, _writer(build), fails, says, **kw))
        return build

    return deco


CASES: list[Bad] = []
X2 = {"x": np.array([1.0, -2.0], np.float32)}


# -- structural invalidity --------------------------------------------------------------------


@_bad("node reads its own output", ALL, "has a cycle or undefined input around node 'a' (Add)")
def _self_read():
    return model([h.make_node("Add", ["x", "y"], ["y"], name="a")], [vi("x")], [vi("y")])


@_bad("two-node cycle", ALL, "has a cycle or undefined input around node")
def _cycle():
    nodes = [h.make_node("Relu", ["b"], ["a"], name="n1"), h.make_node("Relu", ["a"], ["b"])]
    return model(nodes, [vi("x")], [vi("a")])


@_bad("undefined node input", ALL, "reads 'nope', which no earlier node")
def _undefined():
    return model([h.make_node("Relu", ["nope"], ["y"], name="r")], [vi("x")], [vi("y")])


@_bad("graph output produced by nothing", ALL, "output 'z' is produced by no node")
def _dangling_output():
    return model([h.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y"), vi("z")])


@_bad("two nodes produce one name (SSA)", RUNS, "single static assignment")
def _duplicate_output():
    nodes = [h.make_node("Relu", ["x"], ["y"], name="r1"), h.make_node("Neg", ["x"], ["y"])]
    return model(nodes, [vi("x")], [vi("y")])


def _if_model(then_elem: int, else_elem: int | None) -> onnx.ModelProto:
    def branch(name: str, elem: int) -> onnx.GraphProto:
        value = h.make_tensor("v", elem, [2], [1, 2])
        node = h.make_node("Constant", [], [name], value=value)
        return h.make_graph([node], name, [], [vi(name, (2,), elem)])

    attrs = {"then_branch": branch("t", then_elem)}
    if else_elem is not None:
        attrs["else_branch"] = branch("e", else_elem)
    node = h.make_node("If", ["c"], ["y"], name="choose", **attrs)
    return model([node], [vi("c", [], T.BOOL)], [vi("y")])


@_bad("If without else_branch", RUNS, "else_branch", feeds={"c": np.array(True)})
def _if_no_else():
    return _if_model(T.FLOAT, None)


@_bad("If branches of other types", RUNS, "int64 in else_branch", feeds={"c": np.array(False)})
def _if_types():
    return _if_model(T.FLOAT, T.INT64)


@_bad("unregistered op", RUNS, "No Op registered for Frobnicate")
def _unknown_op():
    return model([h.make_node("Frobnicate", ["x"], ["y"])], [vi("x")], [vi("y")])


@_bad("op of an unknown domain", RUNS, "no lowering for op 'my.dom::Frobnicate'", feeds=X2)
def _custom_op():
    m = model([h.make_node("Frobnicate", ["x"], ["y"], domain="my.dom")], [vi("x")], [vi("y")])
    m.opset_import.append(h.make_opsetid("my.dom", 1))
    return m


@_bad("attribute of the wrong type", RUNS, "Mismatched attribute type")
def _attr_type():
    node = h.make_node("Transpose", ["x"], ["y"], perm=[1.0, 0.0])
    return model([node], [vi("x", (2, 2))], [vi("y", (2, 2))])


@_bad("required attribute missing", RUNS, "Required attribute 'to'")
def _missing_attr():
    return model([h.make_node("Cast", ["x"], ["y"])], [vi("x")], [vi("y")])


# -- type invalidity --------------------------------------------------------------------------


def _add_init(tensor: onnx.TensorProto) -> onnx.ModelProto:
    node = h.make_node("Add", ["x", tensor.name], ["y"], name="add")
    return model([node], [vi("x")], [vi("y")], [tensor])


@_bad("initializer data_type 999", ALL, "999")
def _dtype_999():
    t = h.make_tensor("w", T.FLOAT, [2], [1.0, 2.0])
    t.data_type = 999
    return _add_init(t)


@_bad("initializer data_type UNDEFINED", ALL, "data_type")
def _dtype_0():
    t = h.make_tensor("w", T.FLOAT, [2], [1.0, 2.0])
    t.data_type = 0
    return _add_init(t)


@_bad("Constant value of data_type 999", ALL, "999")
def _const_dtype():
    t = h.make_tensor("v", T.FLOAT, [2], [1.0, 2.0])
    t.data_type = 999
    nodes = [h.make_node("Constant", [], ["c"], value=t), h.make_node("Add", ["x", "c"], ["y"])]
    return model(nodes, [vi("x")], [vi("y")])


@_bad("input of element type 999", ALL, "element type 999")
def _input_elem():
    return model([h.make_node("Identity", ["x"], ["y"])], [vi("x", elem=999)], [vi("y")])


@_bad("raw_data shorter than the dims", RUNS, "raw_data size")
def _raw_short():
    t = h.make_tensor("w", T.FLOAT, [2], [1.0, 2.0])
    t.ClearField("float_data")
    t.raw_data = b"\0" * 4
    return _add_init(t)


@_bad("float_data shorter than the dims", RUNS, "float_data size")
def _float_short():
    t = h.make_tensor("w", T.FLOAT, [1], [1.0])
    t.dims[:] = [2]
    return _add_init(t)


@_bad("initializer with a negative dim", ALL, "negative dimension in [-4, 4]")
def _neg_init():
    t = h.make_tensor("w", T.FLOAT, [4, 4], np.ones(16).tolist())
    t.dims[:] = [-4, 4]
    return model([h.make_node("Identity", ["w"], ["y"])], [], [vi("y", (4, 4))], [t])


@_bad("input with a negative dim", ALL, "negative dimension")
def _neg_input():
    return model([h.make_node("Identity", ["x"], ["y"])], [vi("x", (-3,))], [vi("y", (3,))])


# -- versions ---------------------------------------------------------------------------------


@_bad("ir_version 1", RUNS, "IR version < 3")
def _ir1():
    return relu_model(ir=1)


@_bad("ir_version 99", RUNS, "ir_version 99")
def _ir99():
    return relu_model(ir=99)


@_bad("ir_version unset", RUNS, "ir_version")
def _ir0():
    return relu_model(ir=0)


@_bad("opset 1", RUNS, "opset 1")
def _opset1():
    return relu_model(opset=1)


@_bad("opset 5", RUNS, "opset 5")
def _opset5():
    return relu_model(opset=5)


@_bad("opset 99", RUNS, "opset 99")
def _opset99():
    return relu_model(opset=99)


# -- resource bombs ---------------------------------------------------------------------------


@_bad("input of 2**40 elements", RUNS, "cannot make random values", library=False)
def _huge_input():
    return model([h.make_node("Identity", ["x"], ["y"])], [vi("x", (2**40,))], [vi("y", (None,))])


@_bad("ConstantOfShape of 2**40 elements", RUNS, "allocate")
def _huge_constant_of_shape():
    s = h.make_tensor("s", T.INT64, [1], [2**40])
    return model([h.make_node("ConstantOfShape", ["s"], ["y"])], [], [vi("y", (None,))], [s])


@_bad("Range of 1e13 elements", RUNS, "allocate")
def _huge_range():
    inits = [
        h.make_tensor("a", T.FLOAT, [], [0.0]),
        h.make_tensor("b", T.FLOAT, [], [1e13]),
        h.make_tensor("d", T.FLOAT, [], [1.0]),
    ]
    return model([h.make_node("Range", ["a", "b", "d"], ["y"])], [], [vi("y", (None,))], inits)


@_bad("Expand to 2**20 x 2**20", RUNS, "allocate", feeds={"x": np.ones(1, np.float32)})
def _huge_expand():
    s = h.make_tensor("s", T.INT64, [2], [2**20, 2**20])
    node = h.make_node("Expand", ["x", "s"], ["y"])
    return model([node], [vi("x", (1,))], [vi("y", (None, None))], [s])


@_bad("Constant of dims 2**40 without data", RUNS, "float_data size")
def _huge_const_attr():
    t = h.make_tensor("v", T.FLOAT, [1], [1.0])
    t.dims[:] = [2**40]
    node = h.make_node("Constant", [], ["y"], value=t)
    return model([node], [], [vi("y", (2**40,))])


@_bad("Reshape that cannot fit at run time", RUNS, "input of size 2", feeds=X2)
def _reshape_runtime():
    s = h.make_tensor("s", T.INT64, [1], [3])
    node = h.make_node("Reshape", ["x", "s"], ["y"])
    return model([node], [vi("x")], [vi("y", (3,))], [s])


# -- files ------------------------------------------------------------------------------------


@_bad("empty file", ALL, "empty")
def _empty():
    return b""


@_bad("not protobuf", ALL, "not a valid ONNX model")
def _text():
    return b"\xff\xfe this is not an onnx model \x00\x01\x02"


@_bad("truncated model", ALL, "not a valid ONNX model")
def _truncated():
    t = h.make_tensor("w", T.FLOAT, [64], np.ones(64).tolist())
    return _add_init(t).SerializeToString()[:-37]


@_bad("protobuf without a graph", ALL, "holds no ONNX graph")
def _no_graph():
    return onnx.ModelProto(ir_version=8).SerializeToString()


def _write_dir(folder: str) -> str:
    path = os.path.join(folder, "model.onnx")
    os.mkdir(path)
    return path


CASES.append(Bad("a directory", _write_dir, ALL, "is a directory"))
CASES.append(Bad("a missing file", lambda f: os.path.join(f, "missing.onnx"), ALL, "no such file"))


def _external(location: str) -> Callable[[str], str]:
    def write(folder: str) -> str:
        t = h.make_tensor("w", T.FLOAT, [2], [1.0, 2.0])
        t.ClearField("float_data")
        t.data_location = T.EXTERNAL
        entry = t.external_data.add()
        entry.key, entry.value = "location", location
        path = os.path.join(folder, "model.onnx")
        with open(path, "wb") as f:
            f.write(_add_init(t).SerializeToString())
        return path

    return write


CASES.append(Bad("external data outside the folder", _external("../x.bin"), ALL, "x.bin"))
CASES.append(Bad("external data file missing", _external("gone.bin"), ALL, "gone.bin"))


@_bad("Pad by 2**40 (attribute)", RUNS, "allocate", feeds=X2)
def _huge_pad():
    node = h.make_node("Pad", ["x"], ["y"], pads=[2**40, 0])
    return model([node], [vi("x")], [vi("y", (None,))], opset=10)


@_bad("Tile 2**31 x 2**20 times", RUNS, "allocate", feeds={"x": np.ones((1, 2), np.float32)})
def _huge_tile():
    r = h.make_tensor("r", T.INT64, [2], [2**31, 2**20])
    node = h.make_node("Tile", ["x", "r"], ["y"])
    return model([node], [vi("x", (1, 2))], [vi("y", (None, None))], [r])


# -- PyTorch files: never unpickled, never run ---------------------------------------------------

#: the file a pickle payload below creates if anything ever unpickles it
UNPICKLED = "UNPICKLED"


class _Payload:
    """Unpickling this opens (creates) ``UNPICKLED`` beside the model: proof it ran."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, UNPICKLED)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def _torch_writer(build: Callable[[str, str], None]) -> Callable[[str], str]:
    def write(folder: str) -> str:
        path = os.path.join(folder, "model.pt")
        build(folder, path)
        return path

    return write


def _torch_bad(name: str, says: str) -> Callable:
    def deco(build: Callable[[str, str], None]) -> Callable:
        CASES.append(Bad(name, _torch_writer(build), ALL, says))
        return build

    return deco


def _scripted_archive(path: str, module: object = None) -> None:
    import torch

    torch.jit.save(torch.jit.script(module or torch.nn.ReLU()), path)


@_torch_bad("legacy torch.save pickle with a payload", "neffkit does not unpickle")
def _legacy_pickle(folder: str, path: str) -> None:
    import torch

    data = {"w": torch.ones(2), "payload": _Payload(folder)}
    torch.save(data, path, _use_new_zipfile_serialization=False)


@_torch_bad("torch.save checkpoint zip with a payload", "a torch.save checkpoint")
def _checkpoint_zip(folder: str, path: str) -> None:
    import torch

    torch.save({"w": torch.ones(2), "payload": _Payload(folder)}, path)


@_torch_bad("TorchScript archive naming a foreign global", "refusing")
def _foreign_global(folder: str, path: str) -> None:
    import pickle
    import zipfile

    clean = path + ".clean"
    _scripted_archive(clean)
    payload = pickle.dumps(_Payload(folder), protocol=2)
    with zipfile.ZipFile(clean) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info, payload if info.filename.endswith("/data.pkl") else data)
    os.unlink(clean)


@_torch_bad("truncated TorchScript archive", "not a TorchScript archive")
def _truncated_archive(folder: str, path: str) -> None:
    _scripted_archive(path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


@_torch_bad("TorchScript archive whose code runs at load", "defines __setstate__")
def _setstate_archive(folder: str, path: str) -> None:
    import torch

    class RunsAtLoad(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.ones(2)

        @torch.jit.export
        def __getstate__(self) -> tuple[torch.Tensor, bool]:
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
            self.w = state[0] * 2
            self.training = state[1]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.w

    _scripted_archive(path, RunsAtLoad())
