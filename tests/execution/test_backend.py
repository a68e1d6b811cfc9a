"""The backend registry: built-in backends by name without importing them, plugins through
the ``neffkit.backends`` entry points, and clear refusals (unknown, clashing, broken)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx.parser
import pytest

import neffkit
from neffkit.errors import NeffkitError
from neffkit.execution import backend as registry
from neffkit.execution.backend import Backend, Prepared, backend_names, canonical_name, get_backend

MODEL = onnx.parser.parse_model(
    '<ir_version: 8, opset_import: ["" : 18]> g (float[2] x) => (float[2] y) { y = Neg(x) }'
)

# A backend in a third-party package: doubles what onnxruntime computes, so a test can tell
# that it ran.
PLUGIN = """
from neffkit.execution import get_backend


class {cls}:
    name = "{name}"

    def version(self):
        return "9.9"

    def prepare(self, graph, *, device=None, source=None):
        inner = get_backend("onnxruntime").prepare(graph, source=source)
        return Doubled(inner)


class Doubled:
    device = "plugin-device"

    def __init__(self, inner):
        self.inner = inner

    def run(self, feeds):
        return [2 * o for o in self.inner.run(feeds)]
"""


@pytest.fixture
def install(tmp_path, monkeypatch):
    """Installs fake distributions declaring ``neffkit.backends`` entry points."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def _install(package: str, entry: str, target: str, source: str) -> None:
        (site / f"{package}.py").write_text(source)
        info = site / f"{package}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[neffkit.backends]\n{entry} = {target}\n")
        modules.append(package)
        registry.reset_entry_points()

    yield _install
    for m in modules:
        sys.modules.pop(m, None)
    registry.reset_entry_points()


def test_builtin_backends_are_listed_and_found_by_name_and_alias() -> None:
    assert backend_names()[:2] == ("torch", "onnxruntime")
    assert canonical_name("ort") == "onnxruntime"
    ort = get_backend("ort")
    assert ort is get_backend("onnxruntime")  # made once
    assert ort.name == "onnxruntime"
    assert isinstance(ort, Backend)
    assert ort.version().split(".")[0].isdigit()
    prepared = ort.prepare(neffkit.load(MODEL))
    assert isinstance(prepared, Prepared) and prepared.device == "cpu"
    (y,) = prepared.run({"x": np.array([1, -2], np.float32)})
    np.testing.assert_array_equal(y, [-1, 2])


def test_the_torch_backend_reports_its_device_and_version() -> None:
    import torch

    tb = get_backend("torch")
    assert tb.version() == torch.__version__
    prepared = tb.prepare(neffkit.load(MODEL), device="cpu")
    assert prepared.device == "cpu"
    (y,) = prepared.run({"x": np.array([3, 0], np.float32)})
    np.testing.assert_array_equal(y, [-3, 0])


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(
        NeffkitError, match="unknown backend 'tpu'; choose one of torch, onnxruntime"
    ):
        get_backend("tpu")
    with pytest.raises(NeffkitError, match="unknown backend '3'"):
        canonical_name(3)


def test_listing_backends_imports_none_of_them() -> None:
    code = (
        "import sys, neffkit.execution as e; e.backend_names(); e.canonical_name('torch'); "
        "print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_plugin_backend_runs_through_the_registry(install) -> None:
    install(
        "neffkit_double",
        "double",
        "neffkit_double:Double",
        PLUGIN.format(cls="Double", name="double"),
    )
    assert "double" in backend_names()
    assert get_backend("double").version() == "9.9"
    (y,) = neffkit.run(MODEL, [np.array([1, 2], np.float32)], backend="double")
    np.testing.assert_array_equal(y, [-2, -4])
    report = neffkit.verify(MODEL, MODEL, backend="double", reference_backend="onnxruntime")
    assert not report.ok and report.backend == "double"


def test_a_plugin_named_like_a_builtin_backend_is_refused(install) -> None:
    install(
        "neffkit_fake_ort", "ort", "neffkit_fake_ort:Fake", PLUGIN.format(cls="Fake", name="ort")
    )
    says = (
        r"plugin backend 'ort' = neffkit_fake_ort:Fake \(package neffkit_fake_ort\) is named "
        r"like the built-in backend 'onnxruntime'"
    )
    with pytest.raises(NeffkitError, match=says):
        get_backend("onnxruntime")


def test_a_broken_plugin_names_itself(install) -> None:
    install("neffkit_broken", "broken", "neffkit_broken:Nope", "raise ImportError('no chip')\n")
    says = (
        r"plugin backend 'broken' = neffkit_broken:Nope \(package neffkit_broken\) could not be "
        r"loaded: ImportError: no chip"
    )
    with pytest.raises(NeffkitError, match=says):
        get_backend("broken")
    # the built-in backends are not affected
    assert get_backend("onnxruntime").name == "onnxruntime"


def test_a_plugin_that_is_not_a_backend_or_misnamed_is_refused(install) -> None:
    install("neffkit_notone", "notone", "neffkit_notone:X", "class X:\n    name = 'notone'\n")
    with pytest.raises(NeffkitError, match="is not a neffkit backend: it lacks version, prepare"):
        get_backend("notone")
    install("neffkit_other", "other", "neffkit_other:O", PLUGIN.format(cls="O", name="else"))
    with pytest.raises(NeffkitError, match="calls itself 'else'; the two names must agree"):
        get_backend("other")
