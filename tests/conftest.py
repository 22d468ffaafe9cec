"""Shared fixtures. `STORE_FACTORIES` names every store backend the contract suite runs against.

The suite is hermetic: no test reads or writes the user's home or the directory pytest was started in
(a `.loopengt` store there, left by `loopengt run`, must not change what a test sees). `pytest_configure`
drops the environment variables that point loopengt, git or an editor at the user's own setup; every test
(and, for module-scoped servers, the whole session) runs with HOME and XDG_* in a temporary folder and its
working directory in another; `pytest_sessionfinish` fails the run if the repository gained or changed a
`.loopengt` store or a top-level file while it ran.
"""

from __future__ import annotations

import os
import site
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mcp_helpers import ERAS

from loopengt_core.store import Store
from loopengt_core.store.files import FileStore

POSTGRES_ENV = "LOOPENGT_TEST_POSTGRES"
REPO = Path(__file__).resolve().parents[1]


# --- a hermetic suite: the user's home, settings and working directory are out of reach -------------------

# Settings of the test run itself, kept: the Postgres server, the durability suites' seed and scale.
_TEST_SETTINGS = ("LOOPENGT_TEST_", "LOOPENGT_DURABILITY_", "LOOPENGT_PG_")
# What points loopengt (its knobs, Codex's home, the Claude Code project a stop hook looks in), git (a
# repository, a global config) or OpenTelemetry at the user's own setup.
_USER_SETTINGS = ("LOOPENGT_", "OTEL_", "GIT_", "CODEX_", "CLAUDE_", "CURSOR_")
# Runner caches pytest and Hypothesis keep in the directory pytest starts in (gitignored).
_RUNNER_CACHES = {".pytest_cache", ".hypothesis", "__pycache__"}


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module is imported (loopengt reads some variables at import): drop the user's settings."""
    for name in list(os.environ):
        if name.startswith(_USER_SETTINGS) and not name.startswith(_TEST_SETTINGS):
            del os.environ[name]
    # Python finds `pip install --user` packages under HOME; keep finding them once HOME moves
    os.environ.setdefault("PYTHONUSERBASE", site.getuserbase())


def _isolate(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """HOME (and the XDG folders under it) in `folder/home`; the working directory `folder/cwd`."""
    home, cwd = folder / "home", folder / "cwd"
    home.mkdir(parents=True)
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in [n for n in os.environ if n.startswith("XDG_")]:
        monkeypatch.delenv(name)
    for name, sub in (
        ("CONFIG", ".config"),
        ("DATA", ".local/share"),
        ("STATE", ".local/state"),
        ("CACHE", ".cache"),
    ):
        monkeypatch.setenv(f"XDG_{name}_HOME", str(home / sub))
    monkeypatch.chdir(cwd)


@pytest.fixture(scope="session", autouse=True)
def _hermetic_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """For what starts before a test's own fixtures (module-scoped servers): a home and cwd of the session."""
    base = tmp_path_factory.mktemp("hermetic")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _isolate(monkeypatch, base / "session")
        yield base


@pytest.fixture(autouse=True)
def _hermetic(_hermetic_session: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test: a fresh, empty HOME and working directory (not its tmp_path, which tests list and compare)."""
    _isolate(monkeypatch, Path(tempfile.mkdtemp(prefix="test-", dir=_hermetic_session)))


Footprint = dict[str, tuple[int, int] | None]
_FOOTPRINT = pytest.StashKey[Footprint]()


def _footprint(start: Path) -> Footprint:
    """The repository's top-level entries and every file of a `.loopengt` store in it or in `start`."""
    seen: Footprint = {name: None for name in os.listdir(REPO) if name not in _RUNNER_CACHES}
    for root in dict.fromkeys((REPO, start)):
        for path in sorted((root / ".loopengt").rglob("*")):
            if path.is_file():
                stat = path.stat()
                seen[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return seen


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_FOOTPRINT] = _footprint(session.config.invocation_params.dir)


def pytest_sessionfinish(session: pytest.Session) -> None:
    before = session.config.stash.get(_FOOTPRINT, None)
    if before is None:
        return
    after = _footprint(session.config.invocation_params.dir)
    changed = sorted(
        name for name in before.keys() | after.keys() if before.get(name, 0) != after.get(name, 0)
    )
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "the test run wrote outside its temporary folders: " + ", ".join(changed)
        if reporter is not None:
            reporter.write_line(f"ERROR {message}", red=True, bold=True)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


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

# Another backend to run the contract against: a `--store` location in LOOPENGT_TEST_STORE, where `{tmp}`
# stands for the test's temporary folder (`mystore://{tmp}/store` for a store plugin's backend), tested
# as the backend "location"; LOOPENGT_TEST_STORE_CAPABILITIES names its capabilities (comma-separated,
# e.g. `LocalLocking,Sweepable`; none when unset).
STORE_LOCATION_ENV = "LOOPENGT_TEST_STORE"
STORE_CAPABILITIES_ENV = "LOOPENGT_TEST_STORE_CAPABILITIES"


def _location_store(tmp_path: Path) -> Store:
    from loopengt_core.store import open_store

    return open_store(os.environ[STORE_LOCATION_ENV].replace("{tmp}", str(tmp_path)))


if os.environ.get(STORE_LOCATION_ENV):
    STORE_FACTORIES["location"] = _location_store


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
