"""Torch lowerings of control flow (neffkit/backends/torch/ops/control_flow.py): the ops it lowers
(its node cases run through the models, sequences and other families that use it).
"""

from __future__ import annotations

from tests.backends.torch.ops import harness

# the ops ops/control_flow.py lowers
OPS = (
    "If Loop Scan"
).split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("control_flow") == sorted(OPS)
