"""docs/architecture.md and the layer picture of docs/ir.md stay true to the layers that
tests/test_layers.py enforces, and the pages link to each other."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE_MD = ROOT / "docs" / "architecture.md"
IR_MD = ROOT / "docs" / "ir.md"


def _layers() -> list[tuple[str, ...]]:
    """``LAYERS`` of tests/test_layers.py (tests/ is not a package: loaded from its path)."""
    spec = importlib.util.spec_from_file_location(
        "_layers_of_test_layers", ROOT / "tests" / "test_layers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LAYERS


def _first_text_block(text: str, after: str) -> str:
    m = re.search(re.escape(after) + r".*?```text\n(.*?)\n```", text, re.S)
    assert m, f"no text block after {after!r}"
    return m[1]


def architecture_picture() -> dict[int, set[str]]:
    """Rank -> the parts named in architecture.md's layer picture.

    A row is ``"  N   name   what it owns"``; a following ``"      name   ..."`` line adds a
    name to the same rank; lines indented further continue a description.
    """
    picture: dict[int, set[str]] = {}
    rank = -1
    for line in _first_text_block(ARCHITECTURE_MD.read_text(), "## Layers").splitlines():
        m = re.match(r"^  (\d| )   (\S.*?)(\s{2,}|$)", line)
        if not m:
            continue
        if m[1] != " ":
            rank = int(m[1])
        picture.setdefault(rank, set()).update(n.strip().rstrip("/") for n in m[2].split(","))
    return picture


def ir_md_picture() -> dict[int, set[str]]:
    """Rank -> the parts named in the "Where the IR sits" picture of ir.md."""
    picture: dict[int, set[str]] = {}
    for line in _first_text_block(IR_MD.read_text(), "## Where the IR sits").splitlines():
        m = re.match(r"^\s+(\d)\s+(.*?)(\s{2,}|$)", line)
        if m:
            picture[int(m[1])] = set(re.findall(r"[A-Za-z_]+", m[2]))
    return picture


def test_the_architecture_picture_is_the_enforced_layering() -> None:
    want = {rank: set(parts) for rank, parts in enumerate(_layers())}
    assert architecture_picture() == want


def test_the_ir_md_picture_puts_each_part_in_its_layer() -> None:
    layers = _layers()
    picture = ir_md_picture()
    assert sorted(picture) == list(range(len(layers)))
    for rank, names in picture.items():
        assert names and names <= set(layers[rank]), (rank, names)
    assert "ir" in picture[1]


def test_the_pages_link_to_each_other() -> None:
    assert "(architecture.md)" in IR_MD.read_text()
    assert "(ir.md)" in ARCHITECTURE_MD.read_text()
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()


def test_the_path_through_optimize_names_every_step() -> None:
    text = ARCHITECTURE_MD.read_text()
    steps = re.findall(r"^\d\. \*\*(.+?)\.\*\*", text.split("## One model through")[1], re.M)
    assert steps == [
        "CLI parse",
        "Load",
        "Dims",
        "Pass pipeline",
        "Export once",
        "Verification",
        "Atomic write",
    ]


def test_where_a_new_thing_goes_covers_each_kind() -> None:
    section = ARCHITECTURE_MD.read_text().split("## Where a new thing goes")[1]
    for kind in ("A pass", "A rewrite rule", "A torch op lowering", "A frontend", "A backend"):
        assert f"**{kind}.**" in section, kind
    assert '"neffkit.passes"' in section and "`neffkit.backends`" in section
