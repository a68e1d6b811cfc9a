"""The pass docs stay true: the example pass and the example rewrite rule of
docs/writing-a-pass.md and their tests run as written, its entry-point snippet works, and
docs/passes.md covers every built-in pass and simplify rule, with examples whose printed
output is what the passes really produce."""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import re
import sys
import tomllib
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from neffkit.ir.text import parse, print_body
from neffkit.optimize import DEFAULT_PIPELINES
from neffkit.passes import PassContext, available, get_pass, parse_pipeline, registry
from neffkit.passes.rewrite.registry import BUILTIN_RULES

DOCS = Path(__file__).resolve().parent.parent / "docs"
PASSES_MD = DOCS / "passes.md"
WRITING_MD = DOCS / "writing-a-pass.md"

#: ``<!-- test_docs: KIND -->`` right before a fenced code block marks what to do with it.
_MARKED = re.compile(
    r"<!-- test_docs: (?P<kind>[^>]+?) -->\s*```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)
_EXAMPLE = re.compile(
    r"<!-- example: (?P<spec>.+?) -->\s*```onnx\n(?P<before>.*?)\n```.*?"
    r"```text\n(?P<after>.*?)\n```\s*"
    r"Result: `changed=(?P<changed>True|False)`, stats `(?P<stats>\{.*?\})`\.",
    re.S,
)
_PASS_NAME = "collapse-repeats"


def marked_blocks(path: Path, kind: str) -> list[str]:
    """The code of every block marked ``<!-- test_docs: kind -->`` in ``path``."""
    return [m["code"] for m in _MARKED.finditer(path.read_text()) if m["kind"] == kind]


def one_block(path: Path, kind: str) -> str:
    blocks = marked_blocks(path, kind)
    assert len(blocks) == 1, f"{path.name}: expected one block marked '{kind}', got {len(blocks)}"
    return blocks[0]


def load_module(name: str, code: str) -> types.ModuleType:
    """Executes ``code`` as module ``name`` (dataclasses need it in ``sys.modules``)."""
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    sys.modules[name] = module
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own docs
    return module


def collect_tests(module: types.ModuleType) -> Iterator[tuple[str, Callable[..., Any], dict]]:
    """``(id, function, kwargs)`` for every test in ``module``, parametrize marks expanded."""
    for name, f in vars(module).items():
        if not name.startswith("test_") or not inspect.isfunction(f):
            continue
        marks = [m for m in getattr(f, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            yield name, f, {}
            continue
        (mark,) = marks
        argnames = mark.args[0]
        names = [a.strip() for a in argnames.split(",")] if isinstance(argnames, str) else argnames
        for i, values in enumerate(mark.args[1]):
            kwargs = {names[0]: values} if len(names) == 1 else dict(zip(names, values))
            yield f"{name}[{i}]", f, kwargs


@contextlib.contextmanager
def example_pass_registered() -> Iterator[None]:
    """Runs the doc's pass module; unregisters the pass and forgets the module afterwards."""
    had = registry._REGISTERED.get(_PASS_NAME)
    assert had is None, f"a pass named '{_PASS_NAME}' exists already: rename the doc's example"
    try:
        load_module("docs_example_collapse_repeats", one_block(WRITING_MD, "pass"))
        yield
    finally:
        registry.unregister(_PASS_NAME)
        for name in ("docs_example_collapse_repeats", "docs_example_test_collapse_repeats"):
            sys.modules.pop(name, None)


def test_the_example_pass_and_its_tests_run_as_written() -> None:
    with example_pass_registered():
        cls = get_pass(_PASS_NAME)
        assert cls.__module__ == "docs_example_collapse_repeats"
        assert cls.description and cls.__doc__
        tests = load_module("docs_example_test_collapse_repeats", one_block(WRITING_MD, "test"))
        ran = []
        for test_id, f, kwargs in collect_tests(tests):
            f(**kwargs)
            ran.append(test_id)
        assert len(ran) >= 5, ran
    assert _PASS_NAME not in registry._REGISTERED


def _passes_listing(example_pass: bool) -> list[str]:
    """What ``neffkit passes`` prints, the doc's example pass registered or not."""
    from neffkit.cli import main

    out = io.StringIO()
    with contextlib.ExitStack() as stack:
        if example_pass:
            stack.enter_context(example_pass_registered())
        stack.enter_context(contextlib.redirect_stdout(out))
        assert main(["passes"]) == 0
    return _lines(out.getvalue())


def _shown_listing(path: Path) -> tuple[list[str], list[str]]:
    """The ``$ neffkit passes`` block of a page: its lines before and after the ``...`` line."""
    m = re.search(r"```console\n\$ neffkit passes\n(.*?)\n```", path.read_text(), re.S)
    assert m, f"{path.name}: no `$ neffkit passes` listing"
    lines = _lines(m[1])
    cut = next(i for i, line in enumerate(lines) if line.strip() == "...")
    return lines[:cut], lines[cut + 1 :]


@pytest.mark.parametrize(("page", "example_pass"), [(WRITING_MD, True), (PASSES_MD, False)])
def test_the_neffkit_passes_listing_shown_is_real_output(page: Path, example_pass: bool) -> None:
    real = _passes_listing(example_pass)
    head, tail = _shown_listing(page)
    assert head and real[: len(head)] == head
    if tail:
        assert real[-len(tail) :] == tail


_RULE_PASS = "abs-cleanup"


def test_the_example_rewrite_rule_and_its_tests_run_as_written() -> None:
    assert _RULE_PASS not in registry._REGISTERED, f"rename the doc's '{_RULE_PASS}' example"
    modules = ("docs_example_abs_cleanup", "docs_example_test_abs_cleanup")
    try:
        module = load_module(modules[0], one_block(WRITING_MD, "rule"))
        (info,) = module.ABS_RULES.rules()
        assert (info.name, info.ops, info.pattern) == (
            "drop_neg_under_abs",
            ("Abs",),
            "Abs(Neg(x)) -> Abs(x)",
        )
        tests = load_module(modules[1], one_block(WRITING_MD, "rule test"))
        assert "from neffkit.testing import check_rewrite" in one_block(WRITING_MD, "rule test")
        ran = []
        for test_id, f, kwargs in collect_tests(tests):
            f(**kwargs)
            ran.append(test_id)
        assert len(ran) >= 4, ran
    finally:
        registry.unregister(_RULE_PASS)
        for name in modules:
            sys.modules.pop(name, None)


def test_the_check_rewrite_signature_shown_is_the_real_one() -> None:
    from neffkit.testing import check_rewrite, rewrite

    shown = one_block(WRITING_MD, "signature of neffkit.testing.check_rewrite")
    source = inspect.getsource(check_rewrite)
    assert source.startswith(shown + "\n"), "update the check_rewrite block in writing-a-pass.md"
    assert check_rewrite is rewrite.check_rewrite


def test_the_example_tests_use_the_shipped_helper() -> None:
    # tests/ is not installed with neffkit: a plugin author's tests can only import neffkit.
    tests = one_block(WRITING_MD, "test")
    assert "from neffkit.testing import check_rewrite" in tests
    assert "from tests" not in tests


def test_the_entry_point_snippet_makes_the_pass_available(tmp_path: Path) -> None:
    """Installs the doc's pass as a package the way pip would lay it out (a dist-info folder
    with the entry points of the doc's pyproject.toml), without running pip."""
    project = tomllib.loads(one_block(WRITING_MD, "entry points"))["project"]
    entry_points = project["entry-points"]["neffkit.passes"]
    assert list(entry_points) == [_PASS_NAME]
    target = entry_points[_PASS_NAME]
    module_name, _, class_name = target.partition(":")
    package, _, leaf = module_name.partition(".")
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / f"{leaf}.py").write_text(one_block(WRITING_MD, "pass") + "\n")
    dist = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    (dist / "entry_points.txt").write_text(f"[neffkit.passes]\n{_PASS_NAME} = {target}\n")
    assert _PASS_NAME not in registry._REGISTERED
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    registry.reset_entry_points()
    try:
        assert _PASS_NAME in available()
        cls = get_pass(_PASS_NAME)
        assert (cls.__module__, cls.__name__) == (module_name, class_name)
        assert parse_pipeline(f"{_PASS_NAME}{{ops=Abs}},dce").spec() == (
            f"{_PASS_NAME}{{ops=Abs}},dce"
        )
    finally:
        sys.path.remove(str(tmp_path))
        registry.unregister(_PASS_NAME)
        registry.reset_entry_points()
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]


def builtin_passes() -> list[str]:
    """Names of the passes neffkit itself defines (not test passes, not plugins)."""
    return [n for n in available() if get_pass(n).__module__.startswith("neffkit.")]


def test_every_builtin_pass_has_a_section_in_passes_md() -> None:
    text = PASSES_MD.read_text()
    names = builtin_passes()
    assert {"dce", "cse", "fold", "simplify", "dedup", "shape-infer"} <= set(names)
    for name in names:
        heading = re.compile(rf"^#{{2,4}} .*`{re.escape(name)}`", re.M)
        assert heading.search(text), f"docs/passes.md has no section for pass '{name}'"
        assert get_pass(name).description in text, f"update '{name}' in `neffkit passes` output"


def test_every_simplify_rule_is_in_the_rule_table() -> None:
    text = PASSES_MD.read_text()
    rules = set(BUILTIN_RULES.names())
    missing = [r for r in sorted(rules) if not re.search(rf"^\| `{r}` \|", text, re.M)]
    assert not missing, f"docs/passes.md: simplify rules missing from the rule table: {missing}"
    table = text.split("#### Simplify rules")[1]
    gone = sorted(set(re.findall(r"^\| `(\w+)` \|", table, re.M)) - rules)
    assert not gone, f"docs/passes.md: the rule table lists rules that do not exist: {gone}"


def test_every_rules_module_is_named_where_rules_go() -> None:
    import pkgutil

    import neffkit.passes.rewrite.rules as rules_package

    modules = [m.name for m in pkgutil.iter_modules(rules_package.__path__)]
    assert modules
    passes_md = PASSES_MD.read_text().split("#### Simplify rules")[1]
    where = (DOCS / "architecture.md").read_text().split("## Where a new thing goes")[1]
    for name in modules:
        assert f"`{name}.py`" in passes_md, f"docs/passes.md: name rules/{name}.py"
        assert re.search(rf"\b{name}\b", where.split("\n| a torch op")[0]), name


def test_the_default_pipelines_shown_are_current() -> None:
    text = PASSES_MD.read_text()
    for target, pipeline in DEFAULT_PIPELINES.items():
        assert f"  {target:<12}{pipeline}" in text, f"update the '{target}' pipeline"


_OUTPUT_BLOCK = re.compile(
    r"<!-- test_docs: output -->\s*```python\n(.*?)\n```\s*```text\n(.*?)\n```", re.S
)


def _output_blocks() -> list[Any]:
    out = []
    for doc in (PASSES_MD, DOCS / "ir.md"):
        for i, m in enumerate(_OUTPUT_BLOCK.finditer(doc.read_text())):
            out.append(pytest.param(doc.name, m, id=f"{doc.name}-{i}"))
    return out


@pytest.mark.parametrize(("doc", "block"), _output_blocks())
def test_the_python_examples_print_what_is_shown(doc: str, block: re.Match) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block[1], f"<{doc}>", "exec"), {"__name__": "docs_example"})  # noqa: S102
    assert _lines(out.getvalue()) == _lines(block[2])


def test_ir_md_examples_are_checked() -> None:
    # every Python block of ir.md runs, and prints what the page shows after it
    checked = sum(p.values[0] == "ir.md" for p in _output_blocks())
    assert checked >= 4
    assert checked == (DOCS / "ir.md").read_text().count("```python\n")


def _examples() -> list[Any]:
    found = list(_EXAMPLE.finditer(PASSES_MD.read_text()))
    return [pytest.param(m, id=f"{i}-{m['spec']}") for i, m in enumerate(found)]


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


@pytest.mark.parametrize("example", _examples())
def test_passes_md_examples_are_real_output(example: re.Match) -> None:
    (p,) = parse_pipeline(example["spec"]).items
    graph = parse(example["before"])
    result = p.run(graph, PassContext())
    assert _lines(print_body(graph)) == _lines(example["after"])
    assert str(result.changed) == example["changed"]
    assert result.stats == ast.literal_eval(example["stats"])


def test_every_pass_section_has_an_example() -> None:
    specs = {m["spec"] for m in _EXAMPLE.finditer(PASSES_MD.read_text())}
    names = {parse_pipeline(s).items[0].name for s in specs}
    missing = sorted(set(builtin_passes()) - names)
    assert not missing, f"docs/passes.md: no before/after example for {missing}"
