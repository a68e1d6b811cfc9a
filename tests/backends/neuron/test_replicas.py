"""Neuron replicas against stand-in ``torch_neuron`` / ``torch_neuronx`` packages that record
each placement call and the shared-weights variable the runtime would read at that moment.
The model is a plain TorchScript file (no ``neuron::`` operators): real placement needs an
Inf1/Inf2/Trn1 host."""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from neffkit.backends.neuron import replicas as nr
from neffkit.errors import BackendError, FrontendError
from neffkit.execution import ReplicaRunner

ENV = nr.SHARED_WEIGHTS_ENV


def _standin(name: str, *, context: bool = True, set_cores: bool = False) -> types.ModuleType:
    """A package with the placement APIs Neuron's docs name, recording (call, args, env)."""
    pkg = types.ModuleType(name)
    pkg.calls = []  # type: ignore[attr-defined]
    experimental = types.ModuleType(f"{name}.experimental")

    @contextlib.contextmanager
    def neuron_cores_context(start_nc: int = -1, nc_count: int = -1) -> Iterator[None]:
        pkg.calls.append(("enter", start_nc, nc_count, os.environ.get(ENV)))
        yield
        pkg.calls.append(("exit",))

    def set_neuron_cores(trace: object, start_nc: int = -1, nc_count: int = -1) -> None:
        assert isinstance(trace, torch.jit.ScriptModule)
        pkg.calls.append(("set_neuron_cores", start_nc, nc_count, os.environ.get(ENV)))

    if context:
        experimental.neuron_cores_context = neuron_cores_context  # type: ignore[attr-defined]
    if set_cores:
        experimental.set_neuron_cores = set_neuron_cores  # type: ignore[attr-defined]
    pkg.experimental = experimental  # type: ignore[attr-defined]
    return pkg


@pytest.fixture
def model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "neuron.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(4, 2).eval()), str(path))
    return path


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``torch.jit.load`` made, recorded; a fresh runtime record; the env var restored."""
    made: list[str] = []
    real = torch.jit.load

    def spy(path: str, *a: object, **kw: object) -> object:
        made.append(path)
        return real(path, *a, **kw)

    monkeypatch.setattr(torch.jit, "load", spy)
    monkeypatch.delenv(ENV, raising=False)
    with nr.forgetting_runtime():
        yield made


def _want(model: Path, x: np.ndarray) -> np.ndarray:
    return torch.jit.load(str(model))(torch.from_numpy(x)).detach().numpy()


TARGETS = [("inf1", "torch_neuron"), ("inf2", "torch_neuronx"), ("trn1", "torch_neuronx")]


@pytest.mark.parametrize(("target", "package"), TARGETS)
def test_one_load_inside_the_core_context_with_the_variable_set_first(
    monkeypatch: pytest.MonkeyPatch, model: Path, loads: list[str], target: str, package: str
) -> None:
    pkg = _standin(package)
    monkeypatch.setitem(sys.modules, package, pkg)
    x = np.ones((3, 4), np.float32)
    with ReplicaRunner(model, 4, backend="neuron", target=target) as runner:
        got = runner.map([[x]] * 8)
        placement = runner.placement
    assert pkg.calls == [("enter", 0, 4, "TRUE"), ("exit",)]
    assert loads == [str(model)]  # one multi-instance load
    assert placement.api == "neuron_cores_context" and placement.cores == 4
    assert placement.shared_weights and os.environ[ENV] == "TRUE"
    for (y,) in got:
        np.testing.assert_allclose(y, _want(model, x), rtol=1e-6)


def test_separate_copies_set_the_variable_false(
    monkeypatch: pytest.MonkeyPatch, model: Path, loads: list[str]
) -> None:
    pkg = _standin("torch_neuron")
    monkeypatch.setitem(sys.modules, "torch_neuron", pkg)
    monkeypatch.setenv(ENV, "TRUE")
    nr.NeuronReplicas(model, 2, "inf1", shared_weights=False)
    assert pkg.calls[0] == ("enter", 0, 2, "FALSE")


def test_set_neuron_cores_after_the_load_where_there_is_no_context(
    monkeypatch: pytest.MonkeyPatch, model: Path, loads: list[str]
) -> None:
    pkg = _standin("torch_neuronx", context=False, set_cores=True)
    monkeypatch.setitem(sys.modules, "torch_neuronx", pkg)
    reps = nr.NeuronReplicas(model, 2, "inf2", start_core=2)
    assert pkg.calls == [("set_neuron_cores", 2, 2, "TRUE")]
    assert loads == [str(model)] and reps.placement.api == "set_neuron_cores"


def test_one_load_per_core_without_a_placement_api(
    monkeypatch: pytest.MonkeyPatch, model: Path, loads: list[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch_neuron", _standin("torch_neuron", context=False))
    reps = nr.NeuronReplicas(model, 3, "inf1")
    assert loads == [str(model)] * 3 and len(reps.modules) == 3
    assert reps.placement.api.startswith("default placement")
    out = [reps.call(i, [np.ones((1, 4), np.float32)])[0] for i in range(3)]
    assert all(np.array_equal(o, out[0]) for o in out)


def test_the_other_setting_is_refused_once_a_model_is_loaded(
    monkeypatch: pytest.MonkeyPatch, model: Path, loads: list[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch_neuron", _standin("torch_neuron"))
    nr.NeuronReplicas(model, 2, "inf1", shared_weights=True)
    assert nr.runtime_setting() is True
    with pytest.raises(BackendError, match=f"already loaded.*{ENV}=TRUE.*new process"):
        nr.NeuronReplicas(model, 2, "inf1", shared_weights=False)
    assert os.environ[ENV] == "TRUE" and len(loads) == 1
    nr.NeuronReplicas(model, 2, "inf1", shared_weights=True)  # the same setting is fine


def test_without_the_package_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, model: Path, loads: list[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)  # import fails
    with pytest.raises(BackendError, match=r"torch_neuronx package.*pip.repos.neuron.amazonaws.com "
                       r"torch-neuronx\) on an inf2 instance"):  # fmt: skip
        ReplicaRunner(model, 2, backend="neuron", target="inf2")
    assert loads == [] and ENV not in os.environ and nr.runtime_setting() is None


def test_trn2_and_unknown_targets_are_refused(model: Path, loads: list[str]) -> None:
    with pytest.raises(BackendError, match="trn2 models are compiled in process"):
        nr.NeuronReplicas(model, 2, "trn2")
    with pytest.raises(BackendError, match="unknown Neuron target 'inf3'"):
        nr.NeuronReplicas(model, 2, "inf3")


def test_the_archive_is_checked_before_anything_neuron_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, loads: list[str]
) -> None:
    pkg = _standin("torch_neuron")
    monkeypatch.setitem(sys.modules, "torch_neuron", pkg)
    bad = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, str(bad))
    with pytest.raises(FrontendError, match="torch.save checkpoint"):
        ReplicaRunner(bad, 2, backend="neuron", target="inf1")
    assert pkg.calls == [] and loads == [] and ENV not in os.environ
