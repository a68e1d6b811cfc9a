"""Fixtures of the ``neffkit`` command's tests."""

from __future__ import annotations

import pytest

from tests.helpers import save_model


@pytest.fixture
def model(tmp_path) -> str:
    """The path of :data:`tests.helpers.MODEL` saved as an .onnx file."""
    return save_model(tmp_path / "model.onnx")
