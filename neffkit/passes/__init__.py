"""Passes: small registered transformations of the IR, run by the ``PassManager``.

``get_pass("cse")`` returns a pass class; ``PassManager("dedup,cse,(fold,simplify,dce)")``
runs a pipeline. Built-in passes are imported only when first used.
"""

from neffkit.passes.base import Pass, PassContext, PassResult, option
from neffkit.passes.manager import ManagerReport, PassManager, PassRecord
from neffkit.passes.pipeline import Group, PipelineSyntaxError, parse_pipeline
from neffkit.passes.registry import all_passes, available, get_pass, register

__all__ = [
    "Group",
    "ManagerReport",
    "Pass",
    "PassContext",
    "PassManager",
    "PassRecord",
    "PassResult",
    "PipelineSyntaxError",
    "all_passes",
    "available",
    "get_pass",
    "option",
    "parse_pipeline",
    "register",
]
