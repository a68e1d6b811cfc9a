"""The docs name only what exists: every ``neffkit.x.y`` name and every repository path they
mention resolves, no reviewer's ``<!-- check: ... -->`` note is left, and the README's layout
lists every part of the package."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

#: Names the docs use for things that do not exist on purpose: the example pass of
#: writing-a-pass.md and the backend a new-backend paragraph would add; and the metadata key
#: `split` writes (`neffkit.host_loop/<loop>`), which is a string, not a module.
_ILLUSTRATIONS = {
    "neffkit.backends.neuron",
    "neffkit.host_loop",
    "neffkit.passes.collapse_repeats",
    "neffkit/passes/collapse_repeats.py",
    "tests/passes/test_collapse_repeats.py",
}
_DOTTED = re.compile(r"\bneffkit(?:\.[A-Za-z_]\w*)+")
_PATH = re.compile(r"\b(?:neffkit|tests|bench|tools|docs)/[\w./-]*\w/?")


def _references(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """``(page:line, reference)`` for every match outside ``<placeholder>`` paths."""
    found = []
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for m in pattern.finditer(line):
                ref = m[0].rstrip(".")
                if line[m.end() : m.end() + 1] == "<" or ref in _ILLUSTRATIONS:
                    continue  # neffkit/passes/<what_it_does>.py
                found.append((f"{page.name}:{n}", ref))
    return found


def _resolves(dotted: str) -> bool:
    """True when a module prefix of ``dotted`` imports and the rest are its attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_dotted_name_resolves() -> None:
    refs = _references(_DOTTED)
    assert len(refs) > 50  # the pattern still finds what the pages name
    missing = sorted({f"{where} {ref}" for where, ref in refs if not _resolves(ref)})
    assert not missing, "names in the docs that the code does not have:\n" + "\n".join(missing)


def test_every_repository_path_exists() -> None:
    refs = _references(_PATH)
    assert len(refs) > 30
    missing = sorted({f"{where} {ref}" for where, ref in refs if not (ROOT / ref).exists()})
    assert not missing, "paths in the docs that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_review_note_is_left(page: Path) -> None:
    assert "<!-- check:" not in page.read_text()


def _readme_layout() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## Layout\n.*?```\n(.*?)\n```", text, re.S)
    assert m, "README.md has no layout block"
    return m[1]


def test_the_readme_layout_lists_every_part_of_the_package() -> None:
    layout = _readme_layout()
    package = ROOT / "neffkit"
    parts = [p.name + "/" for p in package.iterdir() if (p / "__init__.py").exists()]
    parts += [p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    parts += [p.name + "/" for p in package.rglob("*/") if (p / "__init__.py").exists()]
    missing = sorted({p for p in parts if not re.search(rf"(^|[\s/]){re.escape(p)}", layout, re.M)})
    assert not missing, f"README.md's layout does not list {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_example_imports_the_test_suite(page: Path) -> None:
    # tests/ is not installed with neffkit: examples import the shipped kit, neffkit.testing
    assert not re.search(r"^\s*(from|import) tests\b", page.read_text(), re.M)
