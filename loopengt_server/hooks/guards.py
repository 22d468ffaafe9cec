"""The loop guards' memory: finding the project's store, and the hook's own files under `<store>/hooks/`
that say which session drives which run and what the hook last answered in a stop chain."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from loopengt_server.hooks.payload import HookSkip
from loopengt_server.mcp.run_context import RunNow, live_runs

ADOPTION_IDLE_SECONDS = 15 * 60
STORE_DIRNAME = ".loopengt"
STATE_DIRNAME = "hooks"
STATE_MAX_AGE_SECONDS = 7 * 24 * 3600


def find_store(places: tuple[Path, ...], store: str | None) -> tuple[str, Path] | None:
    """The store to read and its base directory, or None when there is none (nothing to continue)."""
    base = next((p for p in places if p.is_dir()), Path.cwd())
    if store is not None and store.startswith(("postgresql://", "postgres://")):
        return store, base
    if store is not None:
        path = Path(store).expanduser()
        path = path if path.is_absolute() else base / path
        if not (path / "runs").is_dir():
            raise HookSkip(f"no loopengt store at {path}")
        return str(path), base
    for place in places:
        if not place.is_dir():
            continue
        for folder in (place.resolve(), *place.resolve().parents):
            if (folder / STORE_DIRNAME / "runs").is_dir():
                return str(folder / STORE_DIRNAME), folder
            if (folder / ".git").exists():
                break  # the repository's root: a store above it belongs to something else
    return None


def live_runs_in(location: str) -> list[RunNow]:
    """The live runs of the store at `location` (opened read-only, closed again)."""
    from loopengt_core.service.reading import RunReader
    from loopengt_core.store import open_store

    reader = RunReader(open_store(location))
    try:
        return live_runs(reader)
    finally:
        reader.close()


# --- the hook's own state files ---------------------------------------------------------------------------


def state_dir(location: str, base: Path) -> Path:
    """Where the hook keeps its files: `<store>/hooks/` (for a database, beside the project's `.loopengt`)."""
    root = (
        Path(location) if not location.startswith(("postgresql://", "postgres://")) else base / STORE_DIRNAME
    )
    return root / STATE_DIRNAME


def state_key(text: str) -> str:
    """`text` as a file-name part: itself when safe, else a hash of it."""
    return (
        text if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text) else hashlib.sha256(text.encode()).hexdigest()[:32]
    )


def read_state(path: Path) -> dict[str, Any] | None:
    """A state file's JSON object; None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(path: Path, data: dict[str, Any]) -> None:
    """Replace a state file atomically; forget the files nobody touched for STATE_MAX_AGE_SECONDS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temp, path)
    cutoff = time.time() - STATE_MAX_AGE_SECONDS
    for old in path.parent.glob("*.json"):  # forget sessions nobody has stopped in for a week
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass


def driven_elsewhere(folder: Path, run: RunNow, who: str, now: float) -> bool:
    """Another session adopted this run and stopped within ADOPTION_IDLE_SECONDS."""
    bound = read_state(folder / f"run-{state_key(run.state.run_id)}.json")
    if bound is None or bound.get("session") == who:
        return False
    seen = bound.get("seen")
    return isinstance(seen, (int, float)) and now - seen < ADOPTION_IDLE_SECONDS
