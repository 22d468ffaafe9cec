"""Can the store be used: a file store written to, a PostgreSQL store reached, a plugin store opened, no run
damaged. Read-only but for one temp file."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from loopengt_core.store import describe_location, is_database, is_directory, probe_database
from loopengt_server.doctor.check import Check

_CONNECT_TIMEOUT = 5


def check_postgres(dsn: str, name: str = "store") -> Check:
    """Connect and read the schema version; never migrates (the server does that on start)."""
    from loopengt_core.model.errors import LoopengtError

    try:
        found = probe_database(dsn, connect_timeout_seconds=_CONNECT_TIMEOUT)
    except LoopengtError as exc:
        return Check(
            "FAIL",
            name,
            exc.message,
            "start the server, or check host, port, user, password and database in the URL",
        )
    where, current, known = found.where, found.schema_version, found.known_version
    if current is None:
        return Check(
            "OK",
            name,
            f"{where}: {found.server_version}, reachable; no loopengt tables yet (created by the first start)",
        )
    if current > known:
        return Check(
            "FAIL",
            name,
            f"{where}: schema version {current} is newer than this loopengt knows ({known})",
            "upgrade loopengt to the version the other servers run",
        )
    if current < known:
        return Check(
            "WARN",
            name,
            f"{where}: schema version {current}, this loopengt migrates it to {known} on start",
            "nothing to do unless older loopengt servers still share this database: upgrade them together",
        )
    return Check("OK", name, f"{where}: {found.server_version}, schema version {current}")


def check_file_store(location: str) -> Check:
    """Create and remove a temp file in the store (or the folder that will hold it)."""
    root = Path(location)
    target = root
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        return Check(
            "FAIL", "store", f"{target} is not a directory", f"use --store with a directory, not {target}"
        )
    probe = target / f".tmp-doctor-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        return Check(
            "FAIL",
            "store",
            f"{target} is not writable ({exc.strerror or exc})",
            "fix the folder's permissions or pass --store DIR elsewhere",
        )
    if target != root:
        return Check(
            "OK", "store", f"{root.resolve()} does not exist yet; created on first use ({target} is writable)"
        )
    runs = root / "runs"
    count = sum(1 for p in runs.iterdir() if not p.name.startswith(".")) if runs.is_dir() else 0
    return Check("OK", "store", f"{root.resolve()} is writable ({count} run{'' if count == 1 else 's'})")


def check_store(location: str) -> Check:
    """Whether the store can be opened and read: a PostgreSQL database, a store plugin's location or a folder."""
    if is_database(location):
        return check_postgres(location)
    if not is_directory(location):
        return check_plugin_store(location)
    return check_file_store(location)


def check_plugin_store(location: str) -> Check:
    """Open a store plugin's location and list its runs (what a server does first)."""
    from loopengt_core.model.errors import LoopengtError
    from loopengt_core.store import open_store

    where = describe_location(location)
    try:
        store = open_store(location)
        try:
            count = len(store.list_runs())
        finally:
            store.close()
    except LoopengtError as exc:
        return Check("FAIL", "store", f"{where}: {exc.message}", "fix the location or the plugin it names")
    return Check("OK", "store", f"{where} ({type(store).__name__}, {count} run{'' if count == 1 else 's'})")


def check_corrupt_runs(location: str) -> Check | None:
    """Load every run of a file store (snapshot, prefix CRC and tail: cheap) and name the damaged ones.

    Only for a file store that exists: opening a PostgreSQL store would migrate its schema, and
    `loopengt check` reads those.
    """
    from loopengt_core.model.errors import LoopengtError
    from loopengt_core.service.check import damaged_runs
    from loopengt_core.store import open_store

    if not is_directory(location) or not (Path(location) / "runs").is_dir():
        return None
    try:
        store = open_store(location)
    except LoopengtError as exc:
        return Check("FAIL", "runs", f"cannot open the store: {exc.message}", "fix the setting it names")
    try:
        corrupt = damaged_runs(store)
    except LoopengtError as exc:
        return Check("FAIL", "runs", f"cannot list the runs: {exc.message}", "fix the store's permissions")
    finally:
        store.close()
    if not corrupt:
        return Check("OK", "runs", "no damaged run logs")
    shown = ", ".join(corrupt[:10]) + (f" and {len(corrupt) - 10} more" if len(corrupt) > 10 else "")
    return Check(
        "FAIL",
        "runs",
        f"{len(corrupt)} corrupt run{'' if len(corrupt) == 1 else 's'} (read-only): {shown}",
        f"`loopengt check` names the damaged lines; restore them from a backup, or keep the events "
        f"before the damage with `loopengt check --repair {corrupt[0]}`",
    )
