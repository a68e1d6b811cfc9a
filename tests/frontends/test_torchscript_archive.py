"""Reading TorchScript archives safely: scripted and traced modules load; pickles, checkpoints,
foreign globals, code that runs at load and malformed zips are refused before torch sees them."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from neffkit.errors import FrontendError
from neffkit.frontends.torchscript_archive import check_archive, load_archive


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("shift", torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x)) + self.shift


@pytest.fixture
def scripted(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(_Net()), str(path))
    return path


def _rewrite(src: Path, dst: Path, edit: dict[str, bytes]) -> Path:
    """A copy of the zip ``src`` with the entries ending in a key of ``edit`` replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, new in edit.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info, data)
    return dst


@pytest.fixture
def no_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if torch is asked to load anything."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.jit.load was called on a file the checks should refuse")

    monkeypatch.setattr(torch.jit, "load", boom)


def test_a_scripted_module_loads_and_computes_as_saved(scripted: Path) -> None:
    info = check_archive(scripted)
    assert info.top == "net" and info.entries > 3
    module = load_archive(scripted)
    x = torch.randn(4, 3)
    torch.manual_seed(0)
    want = _Net()(x)
    torch.testing.assert_close(module(x), want)  # type: ignore[operator]


def test_a_traced_module_loads(tmp_path: Path) -> None:
    path = tmp_path / "traced.pt"
    x = torch.randn(2, 3)
    net = _Net()
    torch.jit.save(torch.jit.trace(net, x), str(path))
    torch.testing.assert_close(load_archive(path)(x), net(x))  # type: ignore[operator]


def test_a_pickled_module_is_refused_without_unpickling(
    tmp_path: Path, no_torch_load: None
) -> None:
    path = tmp_path / "legacy.pt"
    torch.save(_Net(), str(path), _use_new_zipfile_serialization=False)
    with pytest.raises(FrontendError, match="a pickle .* neffkit does not unpickle"):
        load_archive(path)


def test_a_torch_save_checkpoint_is_refused(tmp_path: Path, no_torch_load: None) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_Net().state_dict(), str(path))
    with pytest.raises(FrontendError, match="torch.save checkpoint .* torch.jit.save"):
        load_archive(path)


# GLOBAL os.system, then a call: what a hostile pickle does (never executed here)
EVIL_GLOBAL = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."


@pytest.mark.parametrize("entry", ["data.pkl", "constants.pkl"])
def test_a_foreign_global_in_a_pickle_is_refused(
    scripted: Path, tmp_path: Path, entry: str, no_torch_load: None
) -> None:
    bad = _rewrite(scripted, tmp_path / "bad.pt", {entry: EVIL_GLOBAL})
    with pytest.raises(FrontendError, match=rf"{entry} refers to os\.system"):
        load_archive(bad)


def test_a_stack_global_is_resolved_and_refused(
    scripted: Path, tmp_path: Path, no_torch_load: None
) -> None:
    # protocol 4 names its globals with STACK_GLOBAL from two pushed strings
    evil = pickle.dumps(print, protocol=4)
    assert b"\x93" in evil  # STACK_GLOBAL
    bad = _rewrite(scripted, tmp_path / "bad.pt", {"data.pkl": evil})
    with pytest.raises(FrontendError, match=r"refers to builtins\.print"):
        load_archive(bad)


def _code_entry(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        return next(n for n in z.namelist() if "/code/" in n and n.endswith(".py"))


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("  def __setstate__(self, state: Tuple[Tensor]) -> None:\n    pass\n", "__setstate__"),
        ("  def f(self):\n    return torch.from_file('/etc/passwd')\n", "from_file"),
        ("  def f(self, x):\n    return ops.neuron.forward_1([x])\n", "namespace 'neuron'"),
    ],
)
def test_code_that_runs_at_load_or_reads_files_is_refused_unless_trusted(
    scripted: Path, tmp_path: Path, line: str, why: str, no_torch_load: None
) -> None:
    entry = _code_entry(scripted)
    with zipfile.ZipFile(scripted) as z:
        text = z.read(entry)
    bad = _rewrite(scripted, tmp_path / "bad.pt", {entry: text + line.encode()})
    with pytest.raises(FrontendError, match=why) as err:
        check_archive(bad)
    assert "trust_code=True" in str(err.value)
    check_archive(bad, trust_code=True)  # the caller may vouch for the file


def test_a_trusted_module_with_setstate_loads(tmp_path: Path) -> None:
    class Stateful(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = 2.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

        @torch.jit.export
        def __getstate__(self) -> tuple[float, bool]:
            return (self.scale, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[float, bool]) -> None:
            self.scale = state[0]
            self.training = state[1]

    path = tmp_path / "stateful.pt"
    torch.jit.save(torch.jit.script(Stateful()), str(path))
    with pytest.raises(FrontendError, match="__setstate__"):
        load_archive(path)
    assert load_archive(path, trust_code=True)(torch.ones(2)).tolist() == [2.0, 2.0]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ({"a/data.pkl": b"", "../evil": b""}, "points outside"),
        ({"/abs/data.pkl": b""}, "points outside"),
        ({"a/data.pkl": b"", "b/constants.pkl": b""}, "2 folders"),
        ({"a/version": b"3"}, "no a/data.pkl"),
    ],
)
def test_malformed_zips_are_refused(
    tmp_path: Path, entries: dict[str, bytes], why: str, no_torch_load: None
) -> None:
    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    with pytest.raises(FrontendError, match=why):
        load_archive(path)


def test_missing_and_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FrontendError, match="cannot read"):
        check_archive(tmp_path / "nope.pt")
    (tmp_path / "x.pt").write_bytes(b"ONNX or anything else")
    with pytest.raises(FrontendError, match="not a zip file"):
        check_archive(tmp_path / "x.pt")
    (tmp_path / "z.pt").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(FrontendError, match="broken zip"):
        check_archive(tmp_path / "z.pt")


def test_a_file_torch_refuses_becomes_a_frontend_error(scripted: Path, tmp_path: Path) -> None:
    entry = _code_entry(scripted)
    bad = _rewrite(scripted, tmp_path / "bad.pt", {entry: b"this is not TorchScript (\n"})
    with pytest.raises(FrontendError, match="torch cannot load this TorchScript archive"):
        load_archive(bad)


def test_a_module_path_holding_ops_is_not_an_operator_call(
    scripted: Path, tmp_path: Path
) -> None:
    # neffkit's own converted modules hold classes such as
    # __torch__.neffkit.backends.torch.ops.control_flow.LoopModule: a module path, not an op
    entry = _code_entry(scripted)
    with zipfile.ZipFile(scripted) as z:
        text = z.read(entry)
    line = b"  loop : __torch__.neffkit.backends.torch.ops.control_flow.LoopModule\n"
    ok = _rewrite(scripted, tmp_path / "ok.pt", {entry: text + line})
    check_archive(ok)
