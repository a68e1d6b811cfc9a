"""The rewrite framework: local rules on a worklist driver, keyed by op type.

- :mod:`~neffkit.passes.rewrite.registry`: ``RuleSet`` and the ``@rule("Op", ...)`` decorator
  (each rule carries its ``before -> after`` pattern); ``BUILTIN_RULES`` is neffkit's rule set.
- :mod:`~neffkit.passes.rewrite.rewriter`: the ``Rewriter`` a rule reads and edits through.
- :mod:`~neffkit.passes.rewrite.driver`: ``run_rules`` / ``drive``, the worklist.
- :mod:`~neffkit.passes.rewrite.patterns`: helpers for matching producers and reading operands.
- ``rules/``: the built-in rules, one module per concept, found without a list.

The ``simplify`` pass runs ``BUILTIN_RULES``; a pass with a rule set of its own runs it the
same way.
"""

from __future__ import annotations

from neffkit.passes.rewrite.driver import drive, run_rules
from neffkit.passes.rewrite.registry import BUILTIN_RULES, Rule, RuleInfo, RuleSet, rule
from neffkit.passes.rewrite.rewriter import Rewriter

__all__ = ["BUILTIN_RULES", "Rewriter", "Rule", "RuleInfo", "RuleSet", "drive", "rule", "run_rules"]
