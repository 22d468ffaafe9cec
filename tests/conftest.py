"""Shared fixtures. `STORE_FACTORIES` names every store backend the contract suite runs against."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopengt_core.store import Store
from loopengt_core.store.files import FileStore

# name -> factory(tmp_path) -> a fresh, empty store. Add "postgres" here when that backend exists.
STORE_FACTORIES: dict[str, Callable[[Path], Store]] = {
    "files": lambda tmp_path: FileStore(tmp_path / "store"),
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Opens more instances over the same storage (what a second server process would see)."""
    factory = STORE_FACTORIES[request.param]
    return lambda: factory(tmp_path)


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Iterator[Store]:
    opened = store_factory()
    yield opened
    opened.close()
