"""``SHAPE_OPERANDS`` names real ONNX ops and input positions their schemas have (a typo'd op or
position would silently check nothing)."""

from __future__ import annotations

import onnx.defs
import pytest

from neffkit.ir.shape_operands import SHAPE_OPERANDS


@pytest.mark.parametrize("op", sorted(SHAPE_OPERANDS))
def test_every_entry_is_an_onnx_op_input_that_exists(op: str) -> None:
    schema = onnx.defs.get_schema(op)
    for i in SHAPE_OPERANDS[op]:
        assert i < len(schema.inputs), f"{op} has no input {i} ({len(schema.inputs)} inputs)"
