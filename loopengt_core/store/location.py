"""`--store` locations: what kind of store one names, how it is shown to a person, and opening it (the
backends are imported only when a location asks for them)."""

from __future__ import annotations

import os

from loopengt_core.model.errors import InvalidArgument
from loopengt_core.store.protocol import Store
from loopengt_core.store.values import DatabaseProbe


def is_database(location: str) -> bool:
    """Whether a `--store` location names a PostgreSQL database rather than a directory."""
    return location.startswith(("postgresql://", "postgres://"))


def is_directory(location: str) -> bool:
    """Whether a `--store` location names a directory (the file store), not a URL (PostgreSQL, a plugin)."""
    from loopengt_core.store.plugins import scheme_of

    return scheme_of(location) is None


def describe_location(location: str) -> str:
    """A `--store` location as shown to a person: a URL without its password, a directory as given."""
    if is_directory(location):
        return location
    if not is_database(location):
        from urllib.parse import urlsplit

        parts = urlsplit(location)
        if parts.password is None:
            return location
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=f"{parts.username}@{host}").geturl()
    from loopengt_core.store.postgres import describe_dsn

    return describe_dsn(location)


def probe_database(dsn: str, *, connect_timeout_seconds: int = 5) -> DatabaseProbe:
    """Connect to a PostgreSQL store (a postgresql:// URL or libpq DSN) and read its schema version,
    creating or migrating nothing.

    Raises:
        StoreIOError: the server cannot be reached or refuses, or the DSN does not parse (the message
            names the server, never the password).
    """
    from loopengt_core.store.postgres import probe

    return probe(dsn, connect_timeout_seconds=connect_timeout_seconds)


def open_store(location: str | None) -> Store:
    """The store named by `--store`: a directory (default `.loopengt`), a postgresql:// URL, or a URL whose
    scheme a store plugin names (the `loopengt.stores` entry point group, `loopengt_core.store.plugins`).

    Raises:
        InvalidArgument: a URL whose scheme no usable plugin names (the message says which are installed,
            or why the plugin of that name is broken).

    Environment: `LOOPENGT_SNAPSHOT_EVERY` (a positive integer, default 100) is the snapshot interval of
    either backend: a run's state is saved once every that many events, so loading replays at most that
    many. Crash tests set it small to exercise snapshot replacement often. Any other value is refused
    with InvalidArgument.
    """
    target = location or ".loopengt"
    raw = os.environ.get("LOOPENGT_SNAPSHOT_EVERY", "").strip() or "100"
    if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
        raise InvalidArgument(
            f"LOOPENGT_SNAPSHOT_EVERY={raw!r}: use a positive integer (events between snapshots)"
        )
    every = int(raw)
    if is_database(target):
        from loopengt_core.store.postgres import PostgresStore  # imports psycopg only when asked for

        return PostgresStore(target, snapshot_every=every)
    from loopengt_core.store.plugins import open_plugin_store, scheme_of

    scheme = scheme_of(target)
    if scheme is not None:
        return open_plugin_store(target, scheme, snapshot_every=every)
    from loopengt_core.store.files import FileStore

    return FileStore(target, snapshot_every=every)
