"""The package's layers point only down, and no import circle exists anywhere in it.

Every ``import`` statement counts, at module level or inside a function or an
``if TYPE_CHECKING`` block, so a function-level import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "neffkit"

# bottom to top; a module may import its own layer or any layer below it, never one above
LAYERS: list[tuple[str, ...]] = [
    ("errors", "_gc", "files", "arguments"),
    ("ir",),
    ("frontends", "backends"),
    ("execution", "dims"),
    ("passes",),
    ("optimize", "verify", "report", "testing", "examples", "tune"),
    ("api", "cli", "__init__", "__main__"),
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.with_suffix("").relative_to(PACKAGE.parent).parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (statements anywhere in the file)."""
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [
                    f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module
                    for a in node.names
                ]
            for target in targets:
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != name:
                    found.add(target)
        edges[name] = found
    return edges


def _top(module: str) -> str:
    """The module's first part under the package (``__init__`` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    top = _top(module)
    assert top in RANK, f"{module} is in no layer; add {top!r} to LAYERS"
    return RANK[top]


EDGES = _imports(_modules())


def test_every_module_has_a_layer() -> None:
    for module in EDGES:
        _layer(module)


def test_no_import_points_up() -> None:
    upward = sorted(
        f"{a} -> {b}" for a, targets in EDGES.items() for b in targets if _layer(b) > _layer(a)
    )
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_import_circle() -> None:
    graph = nx.DiGraph((a, b) for a, targets in EDGES.items() for b in targets)
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not circles, f"import circles: {circles}"


def test_the_walk_sees_function_level_imports() -> None:
    # ir.text parses through the ONNX codec inside its functions; the walk must see such edges
    assert "neffkit.ir.core" in EDGES["neffkit.ir.text"]


def test_passes_reach_backends_only_through_interfaces() -> None:
    # passes run graphs through neffkit.execution and encode ONNX through neffkit.ir.serde
    reached = sorted(
        f"{a} -> {b}"
        for a, targets in EDGES.items()
        if a.startswith("neffkit.passes")
        for b in targets
        if b.startswith(("neffkit.backends", "neffkit.frontends"))
    )
    assert not reached, "passes importing a backend or frontend module:\n" + "\n".join(reached)


def test_frontends_and_backends_do_not_import_each_other() -> None:
    crossed = sorted(
        f"{a} -> {b}"
        for a, targets in EDGES.items()
        for b in targets
        if {_top(a), _top(b)} == {"frontends", "backends"}
    )
    assert not crossed, "\n".join(crossed)


def test_passes_and_frontends_use_no_private_slot_of_the_ir() -> None:
    # the IR's own modules may; passes and frontends go through the public views
    from neffkit.ir.core import Graph, Node, Value

    private = {
        slot
        for cls in (Graph, Node, Value)
        for slot in cls.__slots__
        if slot.startswith("_") and not slot.startswith("__")
    }
    reached = []
    for folder in ("passes", "frontends", "execution"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in private
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                ):
                    reached.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(node)}")
    assert not reached, "private IR slots read outside the IR:\n" + "\n".join(reached)
