"""Fixtures every test folder shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from neffkit.passes import Pass, registry


@pytest.fixture
def registered_pass() -> Iterator[Callable[[type[Pass]], str]]:
    """Registers pass classes for one test (returns the name) and unregisters them after it."""
    names: list[str] = []

    def _register(cls: type[Pass]) -> str:
        registry.register(cls)
        names.append(cls.name)
        return cls.name

    yield _register
    for name in names:
        registry.unregister(name)
