"""Torch lowerings of control flow (neffkit/backends/torch/ops/control_flow.py): the ONNX node
conformance cases of its ops and their variants (see ``harness``).
"""

from __future__ import annotations

import pytest

from tests.backends.torch.ops import harness

# the ops ops/control_flow.py lowers
OPS = ("If Loop Scan").split()


def test_the_module_lowers_exactly_these_ops() -> None:
    assert harness.ops_of("control_flow") == sorted(OPS)


@pytest.mark.parametrize(("case", "form"), harness.conformance_params(OPS))
def test_conformance(case: harness.Case, form: str, request: pytest.FixtureRequest) -> None:
    harness.check_conformance(case, form, request)


@pytest.mark.parametrize(("case", "form", "const"), harness.scripted_params(OPS))
def test_scripted_case(case: harness.Case, form: str, const: bool) -> None:
    harness.check_scripted(case, form, const)


ZERO_TRIPS = """<ir_version: 8, opset_import: ["" : 18]>
g (float[2] x, int64 m) => (float[2] y, int64[n, 2] s) {
  y, s = Loop(m, , x) <body = b (int64 i, bool c, float[2] v) => (bool co, float[2] vo,
                                                                 int64[2] so) {
     co = Identity(c)
     vo = Neg(v)
     so = Cast<to = 7>(v)
  }>
}"""


@pytest.mark.parametrize("scripted", [False, True])
def test_loop_that_runs_no_iteration_gives_empty_scan_outputs_of_the_row_type(
    scripted: bool,
) -> None:
    import numpy as np
    import torch

    from neffkit.backends import torch as tb
    from neffkit.ir.text import parse
    from neffkit.testing import check_backend

    graph = parse(ZERO_TRIPS)
    x = np.array([1.5, -2.0], np.float32)
    for trips in (0, 2):
        check_backend(graph, {"x": x, "m": np.array(trips, np.int64)})
    module = tb.compile(graph)
    if scripted:
        module = torch.jit.script(module)
    y, s = module(torch.tensor(x), torch.tensor(0))
    assert s.dtype == torch.int64 and tuple(s.shape) == (0, 2)
    assert torch.equal(y, torch.tensor(x))
