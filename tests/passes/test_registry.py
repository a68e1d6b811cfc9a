"""The registry refuses a pass name that is taken: by a built-in pass, or by another class,
whether the pass comes from ``@register`` or from an installed package's entry point."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest

from neffkit.errors import NeffkitError
from neffkit.ir.core import Graph
from neffkit.passes import Pass, PassContext, PassResult, register, registry

PLUGIN = '''
from dataclasses import dataclass
from typing import ClassVar

from neffkit.passes import Pass, PassResult


@dataclass(frozen=True)
class {cls}(Pass):
    """Does nothing."""

    name: ClassVar[str] = "{name}"

    def run(self, graph, ctx):
        return PassResult(False)
'''


@pytest.fixture
def install(tmp_path, monkeypatch):
    """Installs fake distributions declaring ``neffkit.passes`` entry points."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def _install(package: str, entry: str, cls: str, name: str = "") -> None:
        (site / f"{package}.py").write_text(PLUGIN.format(cls=cls, name=name))
        info = site / f"{package}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[neffkit.passes]\n{entry} = {package}:{cls}\n")
        modules.append(package)
        registry.reset_entry_points()

    yield _install
    for m in modules:
        sys.modules.pop(m, None)
        for name, cls in list(registry._REGISTERED.items()):
            if cls.__module__ == m:
                registry.unregister(name)
    registry.reset_entry_points()


def test_a_plugin_named_like_a_builtin_pass_is_refused_even_when_asking_for_the_builtin(install):
    install("nk_clash_dce", "dce", "MyDce")
    # get_pass("dce") never loads plugins, yet it must not silently run the built-in instead.
    with pytest.raises(NeffkitError) as e:
        registry.get_pass("dce")
    msg = str(e.value)
    assert "'dce'" in msg and "nk_clash_dce:MyDce" in msg
    assert "neffkit.passes.eliminate_dead_code" in msg
    with pytest.raises(NeffkitError, match="nk_clash_dce:MyDce"):
        registry.available()


def test_a_plugin_whose_class_name_is_a_builtin_name_is_refused(install):
    install("nk_clash_fold", "my-fold", "MyFold", name="fold")
    with pytest.raises(NeffkitError) as e:
        registry.available()
    msg = str(e.value)
    assert "'fold'" in msg and "nk_clash_fold:MyFold" in msg
    assert "neffkit.passes.fold_constants" in msg
    assert registry.get_pass("fold").__module__ == "neffkit.passes.fold_constants"


def test_two_plugins_with_one_name_are_refused_naming_both(install):
    install("nk_twin_a", "twin-pass", "Twin")
    install("nk_twin_b", "twin-pass", "Twin")  # same __qualname__, other module
    with pytest.raises(NeffkitError) as e:
        registry.available()
    assert "nk_twin_a.Twin" in str(e.value) and "nk_twin_b.Twin" in str(e.value)


def test_a_plugin_with_a_free_name_loads(install):
    install("nk_free", "free-pass", "Free")
    assert "free-pass" in registry.available()
    assert registry.get_pass("free-pass").__module__ == "nk_free"


def test_register_refuses_a_builtin_name() -> None:
    @dataclass(frozen=True)
    class Cse(Pass):
        name: ClassVar[str] = "cse"

        def run(self, graph: Graph, ctx: PassContext) -> PassResult:
            return PassResult(False)

    with pytest.raises(NeffkitError) as e:
        register(Cse)
    assert "'cse'" in str(e.value) and "neffkit.passes.eliminate_common_subexpressions" in str(
        e.value
    )
    assert "test_registry" in str(e.value)
    assert registry.get_pass("cse") is not Cse


def test_unregister_removes_a_registered_pass_and_keeps_the_builtins() -> None:
    @dataclass(frozen=True)
    class Transient(Pass):
        name: ClassVar[str] = "test-transient"

        def run(self, graph: Graph, ctx: PassContext) -> PassResult:
            return PassResult(False)

    register(Transient)
    assert registry.get_pass("test-transient") is Transient
    assert registry.unregister("test-transient") is Transient
    assert "test-transient" not in registry.available()
    assert registry.unregister("test-transient") is None  # gone already: nothing to remove
    with pytest.raises(NeffkitError, match="built in"):
        registry.unregister("dce")
    assert registry.get_pass("dce").name == "dce"


@pytest.mark.parametrize("name", sorted(registry.BUILTIN))
def test_every_builtin_name_imports_and_registers_a_pass_of_that_name(name: str) -> None:
    # a name reserved for a module that does not exist would make `neffkit passes` and the
    # docs disagree with BUILTIN; the module must exist and define that very pass
    module = importlib.import_module(registry.BUILTIN[name])
    cls = registry.get_pass(name)
    assert cls.name == name
    assert cls.__module__ == module.__name__
    assert name in registry.available()


def test_neffkit_passes_lists_every_builtin_name(capsys: pytest.CaptureFixture) -> None:
    from neffkit.cli import main

    assert main(["passes"]) == 0
    listed = {
        line.split()[0] for line in capsys.readouterr().out.splitlines() if line[:1].isalnum()
    }
    assert set(registry.BUILTIN) <= listed
