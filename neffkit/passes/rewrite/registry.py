"""Rule sets: rewrite rules registered with a decorator keyed by op type, found without a list.

A rule is a function ``rule(node, rw) -> bool`` whose docstring's first line is its
``before -> after`` pattern::

    @rule("Neg")
    def cancel_neg_neg(node: Node, rw: Rewriter) -> bool:
        \"\"\"Neg(Neg(x)) -> x\"\"\"

``BUILTIN_RULES`` holds neffkit's rules, one module per concept under
``neffkit.passes.rewrite.rules``: every module of that package is imported the first time the
set is used (``pkgutil``, no hand-kept list), and one that does not import or registers no rule
is an error. A pass with rules of its own makes its own ``RuleSet`` and runs it with
:func:`neffkit.passes.rewrite.driver.run_rules`.

Within one op type, rules are tried in the order of their modules' names, then of their
definitions: the first that fires wins, and the node goes back on the worklist.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import onnx.defs

from neffkit.errors import NeffkitError
from neffkit.ir.core import Node
from neffkit.passes.rewrite.rewriter import Rewriter

Rule = Callable[[Node, Rewriter], bool]


@dataclass(frozen=True)
class RuleInfo:
    """A registered rule: its name (the function's), the ONNX op types it is tried on, its
    ``before -> after`` pattern and the module that defines it."""

    name: str
    ops: tuple[str, ...]
    pattern: str
    fn: Rule
    module: str


class RuleSet:
    """Named rules bucketed by op type; ``package``: a package whose every module holds rules of
    this set, imported on first use."""

    def __init__(self, name: str, package: str | None = None) -> None:
        self.name = name
        self.package = package
        self._rules: dict[str, RuleInfo] = {}
        self._seq: dict[str, int] = {}
        self._module_rank: dict[str, int] = {}
        self._loaded = package is None

    def rule(self, *ops: str, pattern: str | None = None) -> Callable[[Rule], Rule]:
        """Registers the decorated function as a rule tried on nodes of the ONNX ``ops``.

        ``pattern`` (``"before -> after"``) defaults to the first line of the docstring.
        """
        if not ops:
            raise NeffkitError(f"rule set {self.name}: a rule needs at least one op type")
        unknown = [op for op in ops if not onnx.defs.has(op)]
        if unknown:
            raise NeffkitError(f"rule set {self.name}: unknown ONNX op type(s) {unknown}")

        def register(fn: Rule) -> Rule:
            name = getattr(fn, "__name__", repr(fn))
            text = pattern
            if text is None:
                doc = (getattr(fn, "__doc__", None) or "").strip()
                text = doc.splitlines()[0].strip() if doc else ""
            if "->" not in text:
                raise NeffkitError(
                    f"rule {name}: give its 'before -> after' pattern (first docstring line "
                    "or pattern=)"
                )
            if name in self._rules:
                old = self._rules[name].module
                raise NeffkitError(f"rule set {self.name}: rule {name} is defined twice ({old})")
            module = getattr(fn, "__module__", "") or ""
            self._seq[name] = len(self._seq)
            self._rules[name] = RuleInfo(name, tuple(ops), text, fn, module)
            return fn

        return register

    def load(self) -> None:
        """Imports every rule module of ``package`` (once); a module that fails to import or
        registers no rule is an error."""
        if self._loaded or self.package is None:
            return
        try:
            pkg = importlib.import_module(self.package)
        except ImportError as e:
            raise NeffkitError(f"rule set {self.name}: cannot import {self.package}: {e}") from e
        names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
        modules = [f"{self.package}.{n}" for n in names if not n.startswith("_")]
        if not modules:
            raise NeffkitError(f"rule set {self.name}: no rule module in {self.package}")
        for full in modules:
            try:
                importlib.import_module(full)
            except Exception as e:  # any failure: say which module, keep the cause
                raise NeffkitError(f"rule set {self.name}: cannot import {full}: {e}") from e
            if not any(r.module == full for r in self._rules.values()):
                raise NeffkitError(f"rule set {self.name}: {full} registers no rule")
        self._module_rank = {m: i for i, m in enumerate(modules)}
        self._loaded = True

    def rules(self) -> list[RuleInfo]:
        """Every rule, in the order they are tried (module name, then definition order)."""
        self.load()
        last = len(self._module_rank)
        return sorted(
            self._rules.values(),
            key=lambda r: (self._module_rank.get(r.module, last), self._seq[r.name]),
        )

    def names(self) -> list[str]:
        """The rule names, sorted."""
        return sorted(r.name for r in self.rules())

    def table(self, disable: Iterable[str] = ()) -> dict[str, list[Rule]]:
        """Op type -> the rules tried on it, in order, without the ``disable``d ones (an unknown
        name is an error that lists the known ones)."""
        skip = set(disable)
        infos = self.rules()
        unknown = sorted(skip - {r.name for r in infos})
        if unknown:
            raise NeffkitError(
                f"{self.name}: unknown rule(s) {', '.join(unknown)}; "
                f"known: {', '.join(self.names())}"
            )
        out: dict[str, list[Rule]] = {}
        for r in infos:
            if r.name in skip:
                continue
            for op in r.ops:
                out.setdefault(op, []).append(r.fn)
        return out


#: neffkit's own rules (``neffkit/passes/rewrite/rules/``), run by the ``simplify`` pass.
BUILTIN_RULES = RuleSet("simplify", package="neffkit.passes.rewrite.rules")

#: Registers a rule in ``BUILTIN_RULES``: ``@rule("Add", "Sub")``.
rule = BUILTIN_RULES.rule
