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


@pytest.fixture(autouse=True, scope="session")
def _measurement_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Passes that cache measurements (``dwconv``'s auto) write into a temporary folder, never
    into the user's cache folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NEFFKIT_CACHE_DIR", str(tmp_path_factory.mktemp("neffkit-cache")))
    yield
    mp.undo()
