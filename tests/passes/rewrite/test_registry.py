"""Rule sets: the decorator's checks, discovery of rule modules without a list (and loud
failures), the order rules are tried in, and that every built-in rule is registered with its
``before -> after`` pattern."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import onnx.defs
import pytest

from neffkit.errors import NeffkitError
from neffkit.ir.core import Node
from neffkit.passes.rewrite.registry import BUILTIN_RULES, RuleSet
from neffkit.passes.rewrite.rewriter import Rewriter

RULES_PACKAGE = "neffkit.passes.rewrite.rules"


def test_every_builtin_rule_has_a_pattern_known_ops_and_its_module_in_the_rules_package() -> None:
    infos = BUILTIN_RULES.rules()
    assert len(infos) >= 39  # the rules simplify had when they moved here
    for r in infos:
        assert "->" in r.pattern and r.pattern == r.pattern.strip(), r.name
        assert r.ops and all(onnx.defs.has(op) for op in r.ops), r.name
        assert r.module.startswith(RULES_PACKAGE + "."), r.name
        assert r.fn.__name__ == r.name
    assert len({r.name for r in infos}) == len(infos)


def test_every_public_rule_function_of_the_rules_package_is_registered() -> None:
    registered = {r.fn for r in BUILTIN_RULES.rules()}
    modules = {r.module for r in BUILTIN_RULES.rules()}
    package = importlib.import_module(RULES_PACKAGE)
    found = {p.stem for p in Path(package.__path__[0]).glob("*.py") if p.stem != "__init__"}
    assert {m.rsplit(".", 1)[1] for m in modules} == found  # each module holds rules
    for name in modules:
        for fname, fn in vars(importlib.import_module(name)).items():
            if inspect.isfunction(fn) and fn.__module__ == name and fname[0] != "_":
                if list(inspect.signature(fn).parameters) == ["node", "rw"]:
                    assert fn in registered, fname


def test_rules_of_an_op_are_tried_in_module_name_then_definition_order() -> None:
    modules = sorted({r.module for r in BUILTIN_RULES.rules()})

    def key(fn: object) -> tuple[int, int]:
        return modules.index(fn.__module__), fn.__code__.co_firstlineno  # type: ignore[attr-defined]

    table = BUILTIN_RULES.table()
    for op, rules in table.items():
        assert rules == sorted(rules, key=key), op
    assert [r.__name__ for r in table["Mul"]][:2] == ["drop_mul_one", "fold_mul_into_conv"]
    assert [r.__name__ for r in table["MatMul"]] == [
        "fold_input_scale_into_weights",
        "flatten_row_region",
    ]


def test_disabled_rules_leave_the_table_and_unknown_names_are_refused() -> None:
    table = BUILTIN_RULES.table({"drop_identity", "fuse_transposes"})
    assert "Identity" not in table
    assert [r.__name__ for r in table["Transpose"]] == ["drop_identity_transpose"]
    with pytest.raises(NeffkitError, match=r"unknown rule\(s\) nope; known: .*drop_identity"):
        BUILTIN_RULES.table({"nope"})


def _rule(node: Node, rw: Rewriter) -> bool:
    """Relu(x) -> x"""
    return False


def test_the_decorator_refuses_a_rule_without_pattern_an_unknown_op_or_a_second_name() -> None:
    rs = RuleSet("t")
    with pytest.raises(NeffkitError, match="before -> after"):
        rs.rule("Relu")(lambda node, rw: False)
    with pytest.raises(NeffkitError, match="unknown ONNX op"):
        rs.rule("Rleu")
    with pytest.raises(NeffkitError, match="at least one op"):
        rs.rule()
    rs.rule("Relu")(_rule)
    with pytest.raises(NeffkitError, match="defined twice"):
        rs.rule("Relu", pattern="Relu(x) -> x")(_rule)
    (info,) = rs.rules()
    assert (info.name, info.ops, info.pattern) == ("_rule", ("Relu",), "Relu(x) -> x")


@pytest.fixture
def rules_package(tmp_path: Path) -> Iterator[tuple[Path, RuleSet]]:
    """A package ``tmp_rules_pkg`` on the path and a rule set that loads it; forgotten after."""
    pkg = tmp_path / "tmp_rules_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    rs = RuleSet("tmp", package="tmp_rules_pkg")
    sys.modules["tmp_rules_set"] = type(sys)("tmp_rules_set")
    sys.modules["tmp_rules_set"].RS = rs  # type: ignore[attr-defined]
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield pkg, rs
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith(("tmp_rules_pkg", "tmp_rules_set"))]:
            del sys.modules[name]


_MODULE = '''
from tmp_rules_set import RS

@RS.rule("Relu")
def {name}(node, rw):
    """Relu(Relu(x)) -> Relu(x)"""
    return False
'''


def test_rule_modules_are_found_without_a_list(rules_package: tuple[Path, RuleSet]) -> None:
    pkg, rs = rules_package
    (pkg / "b_second.py").write_text(_MODULE.format(name="second"))
    (pkg / "a_first.py").write_text(_MODULE.format(name="first"))
    assert [r.name for r in rs.rules()] == ["first", "second"]  # module names give the order
    assert [r.module for r in rs.rules()] == ["tmp_rules_pkg.a_first", "tmp_rules_pkg.b_second"]


def test_a_rule_module_that_does_not_import_fails_loudly(
    rules_package: tuple[Path, RuleSet],
) -> None:
    pkg, rs = rules_package
    (pkg / "good.py").write_text(_MODULE.format(name="good"))
    (pkg / "broken.py").write_text("from tmp_rules_set import NoSuchName\n")
    with pytest.raises(NeffkitError, match=r"cannot import tmp_rules_pkg\.broken"):
        rs.rules()


def test_a_rule_module_that_registers_no_rule_fails_loudly(
    rules_package: tuple[Path, RuleSet],
) -> None:
    pkg, rs = rules_package
    # a module whose rules went to another set (or lost their decorator) registers nothing
    (pkg / "lost.py").write_text("def drop_it(node, rw):\n    return False\n")
    with pytest.raises(NeffkitError, match=r"tmp_rules_pkg\.lost registers no rule"):
        rs.rules()


def test_a_missing_rules_package_fails_loudly() -> None:
    with pytest.raises(NeffkitError, match="cannot import no_such_rules_pkg"):
        RuleSet("x", package="no_such_rules_pkg").rules()
