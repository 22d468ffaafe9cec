"""Shared fixtures. `STORE_FACTORIES` names every store backend the contract suite runs against."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mcp_helpers import ERAS

from loopengt_core.store import Store
from loopengt_core.store.files import FileStore

POSTGRES_ENV = "LOOPENGT_TEST_POSTGRES"


def postgres_admin_dsn() -> str:
    """The server the Postgres tests use (a DSN in LOOPENGT_TEST_POSTGRES).

    Unset: skipped locally, but a failure on CI (CI=true), where a skipped Postgres suite would pass unseen.
    """
    dsn = os.environ.get(POSTGRES_ENV)
    if dsn:
        return dsn
    hint = f"{POSTGRES_ENV} is not set: run `.ci/postgres.sh && . .ci/postgres.env` to start a test server"
    if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
        pytest.fail(f"{hint} (on CI the Postgres store must be tested, not skipped)", pytrace=False)
    pytest.skip(hint)


def create_postgres_database() -> str:
    """A fresh, empty database `test_<hex>` on the test server; returns its DSN."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    admin = postgres_admin_dsn()
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    _POSTGRES_DATABASES.append(name)
    return make_conninfo(admin, dbname=name)


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(postgres_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


_POSTGRES_DATABASES: list[str] = []  # created by the running test, dropped after it
_POSTGRES_BY_TMP: dict[Path, str] = {}  # one database per test: every instance a test opens shares it


def _postgres_store(tmp_path: Path) -> Store:
    from loopengt_core.store.postgres import PostgresStore

    dsn = _POSTGRES_BY_TMP.get(tmp_path)
    if dsn is None:
        dsn = _POSTGRES_BY_TMP[tmp_path] = create_postgres_database()
    return PostgresStore(dsn)


# name -> factory(tmp_path) -> a fresh, empty store; calls with the same tmp_path share the storage.
STORE_FACTORIES: dict[str, Callable[[Path], Store]] = {
    "files": lambda tmp_path: FileStore(tmp_path / "store"),
    "postgres": _postgres_store,
}


@pytest.fixture(autouse=True)
def _drop_postgres_databases() -> Iterator[None]:
    """Drop the databases a test created, after its stores closed (autouse fixtures tear down last)."""
    yield
    _POSTGRES_BY_TMP.clear()
    while _POSTGRES_DATABASES:
        drop_postgres_database(_POSTGRES_DATABASES.pop())


@pytest.fixture
def postgres_dsn() -> str:
    """The DSN of a fresh database for this test, dropped after it."""
    return create_postgres_database()


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


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """The servers and the SDK client run on asyncio (module scope: module-scoped async fixtures)."""
    return "asyncio"


@pytest.fixture(scope="module", params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    """Each MCP test module runs once per protocol era (2026-07-28 and the 2025 handshake)."""
    return str(request.param)
